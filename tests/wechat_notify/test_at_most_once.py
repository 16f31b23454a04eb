"""At most once: a send is recorded before WeChat is called; only errors that prove
WeChat did not take it are retried (by the wechat_notify.retry job, with backoff and a
bound); a timeout is "unknown" and never resent (docs/wechat_notify.md)."""

from __future__ import annotations

import asyncio

import pytest

REFUND = {"order_id": "o1", "title": "面试课", "amount": 990, "to": "wallet"}


@pytest.mark.gen_test
async def test_system_busy_is_retried_later_and_sent_once(notify, clock, fake_wechat_notify):
    fake_wechat_notify.fail_next = [-1]
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "order_refunded", REFUND)
    [record] = await notify.settled()
    assert (record["state"], record["errcode"]) == ("retry", -1)
    assert fake_wechat_notify.sent == []
    await clock.advance(5)  # before the backoff: not yet
    assert fake_wechat_notify.calls["template"] == 1
    await clock.advance(10)
    [record] = await notify.records()
    assert (record["state"], record["attempts"]) == ("sent", 2)
    await clock.advance(3600)
    assert len(fake_wechat_notify.sent) == 1
    assert fake_wechat_notify.calls["template"] == 2


@pytest.mark.gen_test
async def test_retries_are_bounded(notify, clock, fake_wechat_notify):
    fake_wechat_notify.fail_next = [45009] * 10
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "order_refunded", REFUND)
    await notify.settled()
    for _ in range(8):
        await clock.advance(3600)
    [record] = await notify.records()
    assert (record["state"], record["reason"], record["attempts"]) == ("failed", "gave_up", 5)
    assert fake_wechat_notify.calls["template"] == 5


@pytest.mark.gen_test
async def test_a_timeout_is_unknown_and_never_resent(notify, clock, fake_wechat_notify):
    fake_wechat_notify.hang_next = 1
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "order_refunded", REFUND)
    [record] = await notify.settled()
    assert record["state"] == "unknown"
    for _ in range(3):
        await clock.advance(3600)
    await notify.tell(user, "order_refunded", REFUND)  # told again: the same notification
    assert fake_wechat_notify.calls["template"] == 1
    assert len(await notify.records()) == 1


@pytest.mark.gen_test
async def test_an_expired_token_is_refreshed_once_and_the_message_sent(notify,
                                                                       fake_wechat_notify):
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "order_refunded", REFUND)
    await notify.settled()
    fake_wechat_notify.expire_tokens()
    await notify.tell(user, "order_refunded", {**REFUND, "order_id": "o2"})
    records = await notify.settled(2)
    assert [r["state"] for r in records] == ["sent", "sent"]
    assert len(fake_wechat_notify.sent) == 2
    assert fake_wechat_notify.calls["stable_token"] == 2  # cached, then refreshed once


@pytest.mark.gen_test
async def test_a_refused_connection_is_retried(notify, clock, fake_wechat_notify, kpay_app):
    from plugins.wechat_notify import runtime_of

    messenger = runtime_of(kpay_app).messenger
    real_base = messenger.base_url
    messenger.base_url = "http://127.0.0.1:9/"  # the discard port: nothing listens
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "order_refunded", REFUND)
    [record] = await notify.settled()
    assert record["state"] == "retry"
    messenger.base_url = real_base
    await clock.advance(15)
    [record] = await notify.records()
    assert record["state"] == "sent"
    assert len(fake_wechat_notify.sent) == 1


@pytest.mark.gen_test
async def test_forty_concurrent_tellings_send_once(notify, fake_wechat_notify):
    user = await notify.wechat_user("o_alice")
    data = {"course_id": "c1", "lesson_id": "l1", "course_title": "写作课",
            "lesson_title": "第一讲", "lesson_number": 1}
    await asyncio.gather(*(notify.tell(user, "lesson_unlocked", dict(data))
                           for _ in range(40)))
    await notify.settled()
    await asyncio.sleep(0.3)  # any second send would have reached the fake by now
    assert len(fake_wechat_notify.sent) == 1
    assert fake_wechat_notify.calls["template"] == 1
    assert len(await notify.records()) == 1


@pytest.mark.gen_test
async def test_the_dev_list_shows_sends_to_admins_only(notify, api, fake_wechat_notify):
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "order_refunded", REFUND)
    await notify.settled()
    status, body = await api.get("/api/v1/wechat-notify/sent",
                                 await api.login("root", "admin"))
    assert status == 200, body
    [sent] = body["sends"]
    assert (sent["kind"], sent["state"], sent["template_id"]) == (
        "order_refunded", "sent", "TPL_REFUND")
    assert "o_alice" not in str(body)  # the openid stays in the record
    status, body = await api.get("/api/v1/wechat-notify/sent",
                                 await api.login("alice", "student"))
    assert status == 403, body




@pytest.mark.gen_test
async def test_neither_the_token_nor_the_secret_is_logged(notify, clock, fake_wechat_notify,
                                                          caplog):
    from plugins.wechat_notify.fake import SECRET

    caplog.set_level("DEBUG")
    user = await notify.wechat_user("o_alice")
    fake_wechat_notify.fail_next = [47003]
    await notify.tell(user, "order_refunded", REFUND)
    fake_wechat_notify.hang_next = 1
    await notify.tell(user, "order_refunded", {**REFUND, "order_id": "o2"})
    records = await notify.settled(2)
    assert sorted(r["state"] for r in records) == ["failed", "unknown"]
    assert "wechat_notify" in caplog.text  # the failures were logged...
    for secret in (*fake_wechat_notify.tokens, SECRET):
        assert secret not in caplog.text  # ...without what opens the account
