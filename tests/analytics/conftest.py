"""Analytics tests run with the core and the money tests' throwaway plugin (a
server-priced gadget paid to ``seller1``); the books must balance after each."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "money"))

from money_fakes import MoneyTestPlugin


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": []}, "money": {"topup_max": 100_000}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("money_test", MoneyTestPlugin())]
