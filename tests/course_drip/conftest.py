"""Fixtures for course_drip: only this plugin is loaded, a recorder of user
notifications, and a `drip` helper that drives the real server."""

from __future__ import annotations

from typing import Any

import pytest
from drip_helpers import Drip, NotificationRecorder

from kpay.core.app import KPay
from kpay.testing import ApiClient


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["course_drip"]}}


@pytest.fixture
def recorder() -> NotificationRecorder:
    return NotificationRecorder()


@pytest.fixture
def kpay_extra_plugins(recorder: NotificationRecorder) -> list[tuple[str, Any]]:
    return [("notification_recorder", recorder)]


@pytest.fixture
def drip(api: ApiClient, kpay_app: KPay) -> Drip:
    return Drip(api, kpay_app)
