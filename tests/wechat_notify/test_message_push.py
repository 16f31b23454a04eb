"""WeChat's message push tells kpay what users chose in subscription dialogs
(docs/wechat_notify.md "Consents from WeChat"): signed pushes are kept, newest wins,
anything unsigned, stale, encrypted or hostile changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.wechat_notify.fake import push, subscription_event
from tests.wechat_notify.conftest import KINDS

TOKEN = "kpayPushToken2026"
PATH = "/api/v1/wechat-notify/message-push"


@pytest.fixture
def kpay_overrides(fake_wechat_notify: Any) -> dict[str, Any]:
    return {"plugins": {"enabled": ["wechat_notify"]},
            "wechat_notify": fake_wechat_notify.settings(kinds=KINDS, message_token=TOKEN)}


class Pusher:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{app.port}{PATH}"

    def now(self) -> int:
        return int(self.app.clock.now().timestamp())

    async def answers(self, openid: str, answers: dict[str, str], created_at: int | None = None,
                      event: str = "subscribe_msg_popup_event",
                      token: str = TOKEN) -> tuple[int, str]:
        at = self.now() if created_at is None else created_at
        return await push(self.url, token, subscription_event(openid, answers, at, event),
                          self.now())

    async def consents(self, user_id: str) -> dict[str, bool]:
        docs = await self.app.store["wechat_notify_consents"].find(
            {"user_id": user_id}).to_list(None)
        return {d["template_id"]: d["accepted"] for d in docs}


@pytest.fixture
def pusher(kpay_app: Any) -> Pusher:
    return Pusher(kpay_app)


@pytest.mark.gen_test
async def test_the_url_check_echoes_only_a_signed_request(pusher):
    status, body = await push(pusher.url, TOKEN, "", pusher.now(), "GET", echostr="abc123")
    assert (status, body) == (200, "abc123")
    status, _ = await push(pusher.url, "wrongToken", "", pusher.now(), "GET", echostr="abc123")
    assert status == 403
    stale = pusher.now() - 3600
    status, _ = await push(pusher.url, TOKEN, "", stale, "GET", echostr="abc123")
    assert status == 403


@pytest.mark.gen_test
async def test_a_signed_popup_answer_is_kept_for_the_users_own_templates(kpay_app, api, pusher):
    token = await api.login("bob", "student", "小波")
    await kpay_app.users.collection.update_one({"_id": "bob"}, {"$set": {"openid": "o_bob"}})
    status, body = await pusher.answers("o_bob", {"SUB_ROOM": "accept", "SUB_MSG": "reject",
                                                  "SOMEONE_ELSES": "accept"})
    assert (status, body) == (200, "success")
    assert await pusher.consents("bob") == {"SUB_ROOM": True, "SUB_MSG": False}
    # What the page reads.
    status, listed = await api.get("/api/v1/wechat-notify/consents", token)
    assert status == 200, listed
    assert {c["template_id"]: c["accepted"] for c in listed["consents"]} == {
        "SUB_ROOM": True, "SUB_MSG": False}


@pytest.mark.gen_test
async def test_the_newest_push_wins_and_a_resent_push_changes_nothing(kpay_app, pusher):
    user = (await kpay_app.users.sign_in_wechat("o_carl"))["_id"]
    at = pusher.now()
    await pusher.answers("o_carl", {"SUB_ROOM": "accept"}, at)
    await pusher.answers("o_carl", {"SUB_ROOM": "reject"}, at + 60,
                         event="subscribe_msg_change_event")
    assert await pusher.consents(user) == {"SUB_ROOM": False}
    # The first push again (WeChat resends what got no answer), late: still off.
    await pusher.answers("o_carl", {"SUB_ROOM": "accept"}, at)
    assert await pusher.consents(user) == {"SUB_ROOM": False}
    await pusher.answers("o_carl", {"SUB_ROOM": "accept"}, at + 120)
    assert await pusher.consents(user) == {"SUB_ROOM": True}


@pytest.mark.gen_test
async def test_unsigned_stale_unknown_and_hostile_pushes_change_nothing(kpay_app, pusher):
    user = (await kpay_app.users.sign_in_wechat("o_dan"))["_id"]
    status, _ = await pusher.answers("o_dan", {"SUB_ROOM": "accept"}, token="forgedToken")
    assert status == 403
    # A stranger's openid makes no user.
    status, body = await pusher.answers("o_stranger", {"SUB_ROOM": "accept"})
    assert (status, body) == (200, "success")
    assert await kpay_app.users.by_openid("o_stranger") is None
    hostile = [
        '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml>&x;</xml>',
        "<xml><Encrypt><![CDATA[c2VjcmV0]]></Encrypt></xml>",
        "not xml at all",
        subscription_event("o_dan", {"SUB_ROOM": "maybe"}, pusher.now()),
        subscription_event("o_dan", {"SUB_ROOM": "accept"}, 10**20),
    ]
    for body_xml in hostile:
        status, body = await push(pusher.url, TOKEN, body_xml, pusher.now())
        assert (status, body) == (200, "success"), body_xml
    too_big = "<xml>" + "x" * 70_000 + "</xml>"
    status, _ = await push(pusher.url, TOKEN, too_big, pusher.now())
    assert status == 413
    assert await pusher.consents(user) == {}


@pytest.mark.gen_test
async def test_a_push_dated_far_from_now_cannot_pin_a_consent(kpay_app, pusher):
    """``CreateTime`` is in the body, which the signature does not cover (only token,
    timestamp and nonce are signed): a push dated years ahead, replayed on a signed URL
    taken from a log, would outrank every later genuine push if it were kept."""
    user = (await kpay_app.users.sign_in_wechat("o_eve"))["_id"]
    ahead = pusher.now() + 10 * 365 * 86400
    status, body = await pusher.answers("o_eve", {"SUB_ROOM": "accept"}, ahead)
    assert (status, body) == (200, "success")
    assert await pusher.consents(user) == {}
    await pusher.answers("o_eve", {"SUB_ROOM": "reject"}, pusher.now() + 60)
    assert await pusher.consents(user) == {"SUB_ROOM": False}


@pytest.mark.gen_test
async def test_a_timestamp_of_other_digits_is_refused_not_a_server_error(pusher, caplog):
    """``"²".isdigit()`` is true but ``int("²")`` fails: such a timestamp must be a 403,
    not a 500 with a traceback in the log for anyone who sends it."""
    from urllib.parse import urlencode

    import tornado.httpclient

    for timestamp in ("²", "١٢٣"):
        query = urlencode({"signature": "0" * 40, "timestamp": timestamp, "nonce": "n",
                           "echostr": "abc"})
        for method in ("GET", "POST"):
            response = await tornado.httpclient.AsyncHTTPClient().fetch(
                f"{pusher.url}?{query}", method=method, raise_error=False,
                body=b"<xml/>" if method == "POST" else None)
            assert response.code == 403, (timestamp, method, response.code)
    assert "Traceback" not in caplog.text
