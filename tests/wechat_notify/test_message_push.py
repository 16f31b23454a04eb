"""WeChat's message push tells kpay what users chose in subscription dialogs
(docs/wechat_notify.md "Consents from WeChat"): signed pushes are kept, newest wins,
anything unsigned, stale, encrypted or hostile changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.wechat_notify.events import signature
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


@pytest.mark.gen_test
async def test_a_signed_url_is_good_for_one_push(kpay_app, pusher, caplog):
    """The signature covers the query, not the body: a signed URL copied from a log and
    sent again within the 5 minutes its timestamp is accepted, with a body of the
    sender's choosing, is answered as WeChat expects and read no further."""
    user = (await kpay_app.users.sign_in_wechat("o_fay"))["_id"]
    at = pusher.now()
    genuine = subscription_event("o_fay", {"SUB_ROOM": "accept"}, at)
    status, body = await push(pusher.url, TOKEN, genuine, at, nonce="n0nce42")
    assert (status, body) == (200, "success")
    assert await pusher.consents(user) == {"SUB_ROOM": True}

    forged = subscription_event("o_fay", {"SUB_ROOM": "reject"}, at + 1,
                                "subscribe_msg_change_event")
    for replayed in (forged, genuine):
        status, body = await push(pusher.url, TOKEN, replayed, at, nonce="n0nce42")
        assert (status, body) == (200, "success")
    assert await pusher.consents(user) == {"SUB_ROOM": True}
    # Said without the token, and without what would sign the URL again.
    said = [r.getMessage() for r in caplog.records if "used again" in r.getMessage()]
    assert len(said) == 2, caplog.text
    assert not any(TOKEN in line or "n0nce42" in line or signature(TOKEN, str(at), "n0nce42")
                   in line for line in said), said
    # WeChat's next push is signed anew (another nonce): read as before.
    status, _ = await push(pusher.url, TOKEN, forged, at)
    assert status == 200 and await pusher.consents(user) == {"SUB_ROOM": False}


@pytest.mark.gen_test
async def test_signatures_are_kept_for_the_whole_window(kpay_app):
    from plugins.wechat_notify.events import MAX_SKEW_SECONDS, PUSHES, STORED_AT

    indexes = await kpay_app.store[PUSHES].index_information()
    kept = [index["expireAfterSeconds"] for index in indexes.values()
            if index["key"] == [(STORED_AT, 1)]]
    # A timestamp is good from 5 minutes before our clock to 5 minutes after.
    assert len(kept) == 1 and kept[0] >= 2 * MAX_SKEW_SECONDS, indexes


@pytest.mark.gen_test
async def test_a_push_that_failed_to_be_read_may_come_again_on_its_url(kpay_app, pusher,
                                                                      monkeypatch):
    """WeChat resends a push it got no good answer to: if reading it failed, the same
    signed URL is not taken for a replay."""
    from plugins.wechat_notify import sends

    user = (await kpay_app.users.sign_in_wechat("o_gus"))["_id"]
    record = sends.record_wechat_answer
    failures = []

    async def fails_once(*args: Any) -> bool:
        if not failures:
            failures.append(args)
            raise RuntimeError("the database went away")
        return await record(*args)

    monkeypatch.setattr(sends, "record_wechat_answer", fails_once)
    at = pusher.now()
    answer = subscription_event("o_gus", {"SUB_ROOM": "accept"}, at)
    status, _ = await push(pusher.url, TOKEN, answer, at, nonce="again1")
    assert status == 500 and await pusher.consents(user) == {}
    status, body = await push(pusher.url, TOKEN, answer, at, nonce="again1")
    assert (status, body) == (200, "success")
    assert await pusher.consents(user) == {"SUB_ROOM": True}


@pytest.mark.gen_test
async def test_a_push_being_read_is_not_answered_success_and_an_abandoned_one_is_read(
        kpay_app, pusher):
    """A repeat of a push another request is still reading is told to come again (503),
    not "success": if that read fails or its node stops, WeChat's resend must be read.
    A claim older than WeChat's 5 s wait was left by a stopped node: the resend reads."""
    from plugins.wechat_notify.events import claim

    user = (await kpay_app.users.sign_in_wechat("o_hal"))["_id"]
    at = pusher.now()
    answer = subscription_event("o_hal", {"SUB_ROOM": "accept"}, at)
    # The first request claimed it, then its node stopped before reading.
    assert await claim(kpay_app, signature(TOKEN, str(at), "half1"), str(at)) == "ours"
    status, body = await push(pusher.url, TOKEN, answer, at, nonce="half1")
    assert (status, body) == (503, "being read")
    assert await pusher.consents(user) == {}
    kpay_app.clock.advance(6)  # WeChat's resend, after its 5 s wait
    status, body = await push(pusher.url, TOKEN, answer, at, nonce="half1")
    assert (status, body) == (200, "success")
    assert await pusher.consents(user) == {"SUB_ROOM": True}
    # Read now: a replay is answered and ignored.
    status, body = await push(pusher.url, TOKEN, answer, at, nonce="half1")
    assert (status, body) == (200, "success")
