"""The wechat_pay plugin's pytest plugin: the ``fake_wechat`` and ``fake_wechat_v3``
fixtures.

Load it where the tests need WeChat (kpay's own tests do in tests/conftest.py):

    pytest_plugins = ["plugins.wechat_pay.testing"]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plugins.wechat_pay.fake import FakeWeChat
from plugins.wechat_pay.v3_fake import FakeWeChatV3


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


@pytest.fixture
def fake_wechat_v3(io_loop: Any, request: pytest.FixtureRequest) -> Iterator[FakeWeChatV3]:
    """A local fake of WeChat Pay API v3 (``plugins/wechat_pay/v3_fake.py``) on a free
    port, callbacks retried 1000x faster, signing in public-key mode (set ``.mode =
    "certificate"`` to sign with its 平台证书; its time, for its bills, is the test's
    ``kpay_app`` clock). Point the app at it in a test module:

        @pytest.fixture
        def kpay_overrides(fake_wechat_v3, tmp_path):
            return {"wechat_pay": fake_wechat_v3.settings(tmp_path / "keys")}
    """
    fake = FakeWeChatV3(retry_scale=0.001)
    if "kpay_app" in request.fixturenames:
        # WeChat's time is the app's (pinned, advanced) clock, so that the trade bills
        # the fake serves fall on the days kpay booked (the daily bill check).
        fake.now = lambda: request.getfixturevalue("kpay_app").clock.now()
    io_loop.run_sync(fake.start)
    try:
        yield fake
    finally:
        io_loop.run_sync(fake.stop)
