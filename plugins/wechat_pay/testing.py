"""The wechat_pay plugin's pytest plugin: the ``fake_wechat`` fixture.

Load it where the tests need WeChat (kpay's own tests do in tests/conftest.py):

    pytest_plugins = ["plugins.wechat_pay.testing"]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plugins.wechat_pay.fake import FakeWeChat


@pytest.fixture
def fake_wechat(io_loop: Any) -> Iterator[FakeWeChat]:
    """A local fake of WeChat's servers (``plugins/wechat_pay/fake.py``) on a free port,
    with notify retries 1000x faster. Point the app at it in a test module:

        @pytest.fixture
        def kpay_overrides(fake_wechat):
            return {"wechat_pay": fake_wechat.settings()}
    """
    fake = FakeWeChat(retry_scale=0.001)
    io_loop.run_sync(fake.start)
    try:
        yield fake
    finally:
        io_loop.run_sync(fake.stop)
