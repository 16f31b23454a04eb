"""Every coupons test runs with the plugins a deployment selling with coupons has, and
WeChat Pay pointed at kpay's local fake (for unpaid native orders)."""

from __future__ import annotations

import pytest
from coupon_helpers import PLUGINS

# The fake WeChat Pay servers ship with the wechat_pay plugin (docs/wechat_pay.md).
pytest_plugins = ["plugins.wechat_pay.testing"]


@pytest.fixture
def coupon_settings() -> dict:
    """Override for other [coupons] settings."""
    return {}


@pytest.fixture
def kpay_overrides(fake_wechat, coupon_settings):
    return {"plugins": {"enabled": PLUGINS}, "wechat_pay": fake_wechat.settings(),
            "coupons": coupon_settings}
