"""The room reminder reaches WeChat as a subscription message for holders who consented
to its template, once; and with the plugin disabled nothing is sent or recorded."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.kpay_now("2026-03-02T10:00:00+08:00")
@pytest.mark.gen_test
async def test_ticket_holders_who_consented_get_the_reminder_once(api, notify, clock,
                                                                  fake_wechat_notify):
    host = await api.login("host", "consultant")
    status, created = await api.post("/api/v1/rooms", {
        "title": "如何准备面试", "ticket_price": 0, "question_min_price": 500,
        "starts_at": "2026-03-02T10:10:00+08:00"}, host)
    assert status == 201, created
    room = created["room"]
    holders = {}
    for openid in ("o_alice", "o_bob"):
        user = await notify.wechat_user(openid)
        token = await api.login(user, "student")
        status, body = await api.post("/api/v1/orders", {
            "item": {"kind": "live_ticket", "room_id": room["id"]}, "channel": "wallet"},
            token)
        assert status == 201, body
        holders[openid] = token
    await api.post("/api/v1/wechat-notify/consents",
                   {"template_id": "SUB_ROOM", "accepted": True}, holders["o_alice"])

    for _ in range(3):
        await clock.advance(60)
    records = await notify.settled(2)
    states = sorted((r["state"], r.get("reason")) for r in records)
    assert states == [("sent", None), ("skipped", "no_consent")]
    [sent] = fake_wechat_notify.sent
    assert (sent["mode"], sent["touser"], sent["template_id"]) == (
        "subscribe", "o_alice", "SUB_ROOM")
    # A key of the data wins over the wording: thing1 is the room's title.
    body = "「如何准备面试」将于 10:10 开始，记得准时进入直播间。"
    assert sent["data"] == {"thing1": {"value": "如何准备面试"}, "thing2": {"value": body}}
    assert sent["page"].endswith(f"/static/room.html?id={room['id']}")


class TestDisabled:
    @pytest.fixture
    def kpay_overrides(self, fake_wechat_notify: Any) -> dict[str, Any]:
        return {"plugins": {"enabled": ["live_qa"]}}

    @pytest.mark.gen_test
    async def test_nothing_happens(self, kpay_app, fake_wechat_notify, api):
        user = (await kpay_app.users.sign_in_wechat("o_alice"))["_id"]
        await kpay_app.tell_user(user, "order_refunded", {
            "order_id": "o1", "title": "面试课", "amount": 990, "to": "wallet"})
        assert fake_wechat_notify.calls == {}
        assert "wechat_notify_sends" not in await kpay_app.store.db.list_collection_names()
        status, _ = await api.post("/api/v1/wechat-notify/consents",
                                   {"template_id": "SUB_MSG", "accepted": True},
                                   await api.login("alice", "student"))
        assert status == 404
