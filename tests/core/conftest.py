"""Fixtures shared by the core tests."""

import pytest


@pytest.fixture
def dev_off_overrides() -> dict:
    """Settings for production mode (dev off). The wechat_pay plugin then needs a complete
    merchant; these placeholders pass its start-up check and are never used to call out."""
    return {
        "dev": {"enabled": False},
        "wechat_pay": {"appid": "wx0000000000000000", "mch_id": "1000000000",
                       # Random-looking: outside dev mode a weak api_key is refused.
                       "api_key": "f3Kq8ZtW1mRx6VbN0cYe4HsJ9gLd2PaU",
                       "mch_cert": "unused-cert.pem", "mch_key": "unused-key.pem",
                       "api_base_url": "http://127.0.0.1:9/"},
    }
