"""consult_billing tests run with only this plugin loaded."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["consult_billing"]}}
