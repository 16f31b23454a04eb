"""wechat_notify forwards each configured kind with its template and data, skips users
without an openid or consent, and never sends marketing as a template message
(docs/wechat_notify.md)."""

from __future__ import annotations

import pytest

CASES = [
    ("lesson_unlocked", {"course_id": "c1", "lesson_id": "l2", "course_title": "写作课",
                         "lesson_title": "第二讲 结构", "lesson_number": 2},
     "template", "TPL_LESSON", {"thing1": "写作课", "thing2": "第二讲 结构",
                                "time3": "2026-03-02 10:00"}),
    ("consult_request", {"consultation_id": "cs1", "student_id": "s1"},
     "template", "TPL_CONSULT_REQ", {"character_string1": "cs1"}),
    ("consult_accepted", {"consultation_id": "cs2", "consultant_id": "carol"},
     "template", "TPL_CONSULT_OK", {"character_string1": "cs2"}),
    ("order_refunded", {"order_id": "o1", "refund_id": "r1", "title": "面试课",
                        "amount": 990, "to": "wallet", "status": "succeeded"},
     "template", "TPL_REFUND", {"thing1": "面试课", "amount2": "990"}),
    ("payout_waiting_confirmation", {"payout_id": "p1", "amount": 12000,
                                     "status": "waiting_confirmation"},
     "template", "TPL_PAYOUT", {"thing1": "提现 ¥120.00 待确认收款"}),
]


@pytest.mark.kpay_now("2026-03-02T10:00:00+08:00")
@pytest.mark.parametrize(("kind", "data", "mode", "template_id", "values"), CASES)
@pytest.mark.gen_test
async def test_each_kind_goes_with_its_template_and_data(notify, fake_wechat_notify, kind,
                                                         data, mode, template_id, values):
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, kind, data)
    [record] = await notify.settled()
    assert record["state"] == "sent", record
    [sent] = fake_wechat_notify.sent
    assert sent["mode"] == mode
    assert sent["touser"] == "o_alice"
    assert sent["template_id"] == template_id
    assert sent["data"] == {k: {"value": v} for k, v in values.items()}


@pytest.mark.gen_test
async def test_the_link_of_the_wording_becomes_the_message_url(notify, fake_wechat_notify,
                                                               kpay_app):
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "order_refunded", {"order_id": "o1", "title": "面试课",
                                               "amount": 990, "to": "wallet"})
    await notify.settled()
    assert fake_wechat_notify.sent[0]["url"] == (
        f"http://127.0.0.1:{kpay_app.port}/static/wallet.html")


@pytest.mark.gen_test
async def test_a_user_without_openid_is_skipped(notify, fake_wechat_notify, api):
    await api.login("bob", "student")
    await notify.tell("bob", "consult_accepted", {"consultation_id": "cs1"})
    [record] = await notify.records()
    assert (record["state"], record["reason"]) == ("skipped", "no_openid")
    assert fake_wechat_notify.calls["template"] == 0


@pytest.mark.gen_test
async def test_unknown_and_unconfigured_kinds_are_not_forwarded(notify, fake_wechat_notify):
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "question_answered", {"room_id": "r1", "text": "问"})
    await notify.tell(user, "flower_delivered", {"order_id": "o1"})
    assert await notify.records() == []
    assert fake_wechat_notify.calls == {}


@pytest.mark.gen_test
async def test_subscribe_needs_consent_to_the_template(notify, fake_wechat_notify, api):
    user = await notify.wechat_user("o_alice")
    message = {"title": "本周直播预告", "body": "周六晚八点见"}
    await notify.tell(user, "audience_message", message)
    [record] = await notify.records()
    assert (record["state"], record["reason"]) == ("skipped", "no_consent")
    assert fake_wechat_notify.calls["subscribe"] == 0

    token = await api.login(user, "student")
    status, body = await api.post("/api/v1/wechat-notify/consents",
                                  {"template_id": "SUB_MSG", "accepted": True}, token)
    assert status == 200, body
    consent = {"kind": "audience_message", "template_id": "SUB_MSG", "accepted": True}
    assert consent in body["consents"]
    await notify.tell(user, "audience_message", {**message, "title": "下周直播预告"})
    await notify.settled(2)
    [sent] = fake_wechat_notify.sent
    assert sent["mode"] == "subscribe"
    assert sent["data"] == {"thing1": {"value": "下周直播预告"},
                            "thing2": {"value": "周六晚八点见"}}


@pytest.mark.gen_test
async def test_consent_only_to_templates_kpay_sends(api):
    token = await api.login("alice", "student")
    status, body = await api.post("/api/v1/wechat-notify/consents",
                                  {"template_id": "TPL_REFUND", "accepted": True}, token)
    assert status == 400 and body["error"]["code"] == "unknown_template", body
    status, body = await api.post("/api/v1/wechat-notify/consents",
                                  {"template_id": "x" * 129, "accepted": True}, token)
    assert status == 400, body


@pytest.mark.gen_test
async def test_a_refused_subscription_withdraws_the_consent(notify, fake_wechat_notify, api):
    user = await notify.wechat_user("o_alice")
    token = await api.login(user, "student")
    await api.post("/api/v1/wechat-notify/consents",
                   {"template_id": "SUB_MSG", "accepted": True}, token)
    fake_wechat_notify.fail_next = [43101]
    await notify.tell(user, "audience_message", {"title": "预告"})
    [record] = await notify.settled()
    assert record["state"] == "refused"
    _, body = await api.get("/api/v1/wechat-notify/consents", token)
    withdrawn = {"kind": "audience_message", "template_id": "SUB_MSG", "accepted": False}
    assert withdrawn in body["consents"]


def test_message_is_refused_as_a_template_message_in_the_config():
    from pydantic import ValidationError

    from plugins.wechat_notify.settings import WeChatNotifySettings

    with pytest.raises(ValidationError, match="only as a subscription message"):
        WeChatNotifySettings(kinds={"audience_message": {"mode": "template", "template_id": "T"}})
    with pytest.raises(ValidationError, match="not a kind wechat_notify forwards"):
        WeChatNotifySettings(kinds={"course_sold": {"template_id": "T"}})


@pytest.mark.gen_test
async def test_not_following_the_account_is_recorded_and_not_retried(notify, clock,
                                                                     fake_wechat_notify):
    fake_wechat_notify.followers = {"o_someone_else"}
    user = await notify.wechat_user("o_alice")
    await notify.tell(user, "consult_accepted", {"consultation_id": "cs1"})
    [record] = await notify.settled()
    assert (record["state"], record["errcode"]) == ("not_following", 43004)
    await clock.advance(3600)
    assert fake_wechat_notify.calls["template"] == 1
    assert fake_wechat_notify.sent == []
