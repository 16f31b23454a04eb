"""Shared set-up for the wechat_pay tests: kpay pointed at the local fake WeChat."""

from __future__ import annotations

import pytest


@pytest.fixture
def kpay_overrides(fake_wechat):
    return {"wechat_pay": fake_wechat.settings()}
