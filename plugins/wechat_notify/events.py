"""The 公众号's message push (服务器配置): WeChat's own, signed word on what a user chose
in a subscription dialog (docs/wechat_notify.md "Consents from WeChat").

A page's ``wx-open-subscribe`` success event is only what the browser says, and on
phones its ``detail`` is often empty. WeChat also pushes the choice to the 公众号's
message URL: ``subscribe_msg_popup_event`` when the user answers the dialog and
``subscribe_msg_change_event`` when they later turn a template off in WeChat. kpay keeps
those for the users it knows (by openid) and the templates it sends; every other push
(a user's text message, a follow) is answered ``success`` and left alone.

Only 明文模式 is read: a push in 安全模式 carries nothing but ``Encrypt`` and is
logged and dropped.

A signed URL is good for one push: its signature is kept in ``wechat_notify_pushes``
for as long as its timestamp is accepted, so the URL copied from a log and sent again
within those minutes (with any body: the body is not signed) is answered ``success``
and read no further.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree.ElementTree import Element

import tornado.web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from pymongo.errors import DuplicateKeyError

from kpay.core.digits import parse_digits
from kpay.core.store import IndexSpec
from kpay.core.web import Route, api
from plugins.wechat_notify import sends
from plugins.wechat_notify.settings import settings_of, subscribe_templates

log = logging.getLogger("kpay.wechat_notify")

#: A push is at most this big (a popup event of many templates is ~2 KB).
MAX_BODY_BYTES = 64 * 1024
#: Templates read from one push at most (WeChat's dialog shows a few).
MAX_TEMPLATES = 20
#: How far a push's signed timestamp may be from our clock, in seconds.
MAX_SKEW_SECONDS = 300
#: Pushes taken, by signature (SHA-1 of token, timestamp and nonce: one per signed URL).
PUSHES = "wechat_notify_pushes"
#: When the database stored one ($currentDate, its own clock: a test or dev clock of
#: the app's may be months away): the TTL index's field.
STORED_AT = "stored_at"
#: A timestamp is accepted from MAX_SKEW_SECONDS before our clock to as long after, so
#: a signature must be kept that long after it was first seen; and a minute more, for a
#: database clock a little ahead of ours.
PUSH_KEPT_SECONDS = 2 * MAX_SKEW_SECONDS + 60
INDEXES = [IndexSpec.of(PUSHES, STORED_AT, expireAfterSeconds=PUSH_KEPT_SECONDS)]
#: A push's record while a request reads it, and once it was read.
READING, READ = "reading", "read"
#: WeChat waits 5 s for an answer, then resends: a claim that old was abandoned.
ABANDONED_AFTER_SECONDS = 5
ANSWERS = {"accept": True, "reject": False}
EVENTS = {"subscribe_msg_popup_event": "SubscribeMsgPopupEvent",
          "subscribe_msg_change_event": "SubscribeMsgChangeEvent"}


def signature(token: str, timestamp: str, nonce: str) -> str:
    """WeChat's message-push signature: SHA-1 of the token, timestamp and nonce, sorted
    and joined."""
    return hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()


def text(element: Element, tag: str, limit: int = 128) -> str:
    found = element.find(tag)
    value = (found.text or "").strip() if found is not None else ""
    return value if len(value) <= limit else ""


def answers_in(root: Element) -> list[tuple[str, bool]]:
    """(template id, accepted) of each template a popup or change event names."""
    block = root.find(EVENTS.get(text(root, "Event"), ""))
    if block is None:
        return []
    found = []
    for item in block.findall("List")[:MAX_TEMPLATES]:
        template_id, status = text(item, "TemplateId"), text(item, "SubscribeStatusString")
        if template_id and status in ANSWERS:
            found.append((template_id, ANSWERS[status]))
    return found


async def receive(app: Any, body: bytes) -> int:
    """Keep the answers of one push; returns how many were kept."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError):
        log.warning("message push: not readable XML (%d bytes); ignored", len(body))
        return 0
    if root.find("Encrypt") is not None and root.find("FromUserName") is None:
        log.warning("message push in 安全模式 (encrypted): not read; set 明文模式 or "
                    "兼容模式 (docs/wechat_notify.md)")
        return 0
    if text(root, "MsgType") != "event":
        return 0
    answers = answers_in(root)
    openid = text(root, "FromUserName")
    try:
        answered_at = datetime.fromtimestamp(int(text(root, "CreateTime")), UTC)
    except (ValueError, OverflowError, OSError):
        return 0
    # The body is not signed (only the query is): a date far from now is no push of
    # WeChat's (it resends within seconds), and one ahead would outrank every later
    # genuine answer (newest wins).
    if abs((answered_at - app.clock.now()).total_seconds()) > MAX_SKEW_SECONDS:
        log.warning("message push dated %s, too far from now; ignored",
                    answered_at.isoformat())
        return 0
    user_id = await app.users.by_openid(openid) if answers and openid else None
    if user_id is None:
        return 0
    ours = subscribe_templates(app)
    kept = 0
    for template_id, accepted in answers:
        if template_id in ours and await sends.record_wechat_answer(
                app, user_id, template_id, accepted, answered_at):
            kept += 1
    if kept:
        log.info("message push: %d subscription answer(s) kept for user %s", kept, user_id)
    return kept


async def claim(app: Any, signed: str, timestamp: str) -> str:
    """Take the push signed ``signed`` for reading: ``"ours"`` (read it), ``"read"`` (a
    replay of one read already) or ``"reading"`` (another request reads it now). Two at
    once: the unique ``_id`` lets one in. A claim older than WeChat's own 5 s wait was
    left by a node that stopped mid-read; WeChat's resend takes it over."""
    pushes = app.store[PUSHES]
    now = app.clock.now()
    try:
        taken = await pushes.update_one(
            {"_id": signed}, {"$setOnInsert": {"timestamp": timestamp, "state": READING,
                                               "claimed_at": now},
                              "$currentDate": {STORED_AT: True}}, upsert=True)
        if taken.upserted_id is not None:
            return "ours"
    except DuplicateKeyError:  # the other upsert inserted it first
        pass
    abandoned = await pushes.update_one(
        {"_id": signed, "state": READING,
         "claimed_at": {"$lt": now - timedelta(seconds=ABANDONED_AFTER_SECONDS)}},
        {"$set": {"claimed_at": now}})
    if abandoned.modified_count:
        return "ours"
    found = await pushes.find_one({"_id": signed}, {"state": 1})
    return found["state"] if found else "reading"


class MessagePushHandler(tornado.web.RequestHandler):
    """WeChat's GET (the URL check when the operator saves 服务器配置) and POST (a push).
    Not a BaseHandler: no JSON envelope, no rate limit, no login; the signature is the
    check."""

    def initialize(self, route_path: str = "") -> None:
        self.kpay = self.application.settings["kpay"]

    def check_xsrf_cookie(self) -> None:
        pass

    def signed(self) -> bool:
        token = settings_of(self.kpay).message_token
        timestamp = self.get_query_argument("timestamp", "")[:20]
        nonce = self.get_query_argument("nonce", "")[:64]
        given = self.get_query_argument("signature", "")[:64]
        stamp = parse_digits(timestamp)
        if not (token and stamp is not None and nonce and given):
            return False
        if abs(self.kpay.clock.now().timestamp() - stamp) > MAX_SKEW_SECONDS:
            return False
        return hmac.compare_digest(signature(token, timestamp, nonce), given)

    def answer(self, status: int, body: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    @api("WeChat checks the message-push URL (echoes echostr when the signature is right)",
         auth=False, query=("signature", "timestamp", "nonce", "echostr"),
         media_type="text/plain", error_media_type="text/plain")
    async def get(self) -> None:
        echostr = self.get_query_argument("echostr", "")
        if not self.signed() or not echostr.isalnum() or len(echostr) > 128:
            return self.answer(403, "bad signature")
        self.answer(200, echostr)

    @api("WeChat pushes a 公众号 event; subscription answers are kept (明文模式)",
         auth=False, query=("signature", "timestamp", "nonce"), media_type="text/plain",
         error_media_type="text/plain", body_media_type="text/xml")
    async def post(self) -> None:
        if not self.signed():
            return self.answer(403, "bad signature")
        if len(self.request.body) > MAX_BODY_BYTES:
            return self.answer(413, "too large")
        signed, timestamp = self.get_query_argument("signature"), self.get_query_argument(
            "timestamp")
        claimed = await claim(self.kpay, signed, timestamp)
        if claimed == READING:
            # Not "success": if that read fails or its node stops, WeChat's retry of
            # this push must still be read.
            return self.answer(503, "being read")
        if claimed != "ours":
            # "success": a replay is not worth WeChat's retries (nor an attacker's).
            log.warning("message push: a signed URL used again (timestamp %s, from %s); "
                        "ignored", timestamp, self.request.remote_ip)
            return self.answer(200, "success")
        pushes = self.kpay.store[PUSHES]
        try:
            await receive(self.kpay, self.request.body)
        except Exception:
            # Not read: WeChat resends a push it got no answer to, maybe on this URL.
            await pushes.delete_one({"_id": signed})
            raise
        await pushes.update_one({"_id": signed}, {"$set": {"state": READ}})
        # "success": WeChat neither retries nor shows the user an error.
        self.answer(200, "success")


def routes(app: Any) -> list[Route]:
    if not settings_of(app).message_token:
        return []
    return [Route("/api/v1/wechat-notify/message-push", MessagePushHandler,
                  tags=("wechat_notify",))]
