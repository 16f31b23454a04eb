"""In dev mode with kinds configured but no 公众号, the plugin starts its local fake
WeChat and admins see what would have been sent (docs/wechat_notify.md)."""

from __future__ import annotations

from typing import Any

import pytest

from kpay.testing import wait_until
from tests.wechat_notify.conftest import KINDS


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": ["wechat_notify"]}, "wechat_notify": {"kinds": KINDS}}


@pytest.mark.gen_test
async def test_dev_mode_without_an_account_records_in_the_local_fake(kpay_app, api):
    from plugins.wechat_notify import runtime_of

    fake = runtime_of(kpay_app).fake
    assert fake is not None
    user = (await kpay_app.users.sign_in_wechat("o_alice"))["_id"]
    await kpay_app.tell_user(user, "order_refunded", {
        "order_id": "o1", "title": "面试课", "amount": 990, "to": "wallet"})
    admin = await api.login("root", "admin")

    async def listed() -> dict | None:
        status, body = await api.get("/api/v1/wechat-notify/sent", admin)
        assert status == 200, body
        return body if body["sends"] and body["sends"][0]["state"] != "sending" else None

    body = await wait_until(listed, message="the send is listed as done")
    assert len(fake.sent) == 1
    assert [(s["kind"], s["state"]) for s in body["sends"]] == [("order_refunded", "sent")]
    assert body["sends"][0]["data"]["thing1"] == {"value": "面试课"}


@pytest.mark.gen_test
async def test_without_a_message_token_the_push_url_is_not_served(kpay_app, api):
    status, _ = await api.get("/api/v1/wechat-notify/message-push?signature=x&timestamp=1&nonce=n")
    assert status == 404
