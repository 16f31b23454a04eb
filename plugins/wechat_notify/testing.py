"""The wechat_notify plugin's pytest plugin: the ``fake_wechat_notify`` fixture.

    pytest_plugins = ["plugins.wechat_notify.testing"]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plugins.wechat_notify.fake import FakeWeChatMessages


@pytest.fixture
def fake_wechat_notify(io_loop: Any) -> Iterator[FakeWeChatMessages]:
    """A local fake of WeChat's message API on a free port. Point the app at it:

        @pytest.fixture
        def kpay_overrides(fake_wechat_notify):
            return {"wechat_notify": fake_wechat_notify.settings(kinds={...})}
    """
    fake = FakeWeChatMessages()
    fake.hang_seconds = 2.0  # longer than the settings' 1 s client timeout
    io_loop.run_sync(fake.start)
    try:
        yield fake
    finally:
        io_loop.run_sync(fake.stop)
