"""A local fake of WeChat's message API, for tests and ``make run`` (dev mode without
a 公众号): ``cgi-bin/stable_token``, ``cgi-bin/message/template/send`` and
``cgi-bin/message/subscribe/bizsend``, checking the access token as WeChat does.

It records what would have been sent (``sent``), and can be told to fail: ``fail_next``
(errcodes answered to the next sends, in order), ``hang_next`` (how many next sends get
no answer until the client gives up), ``followers`` (None: everyone follows the 公众号;
else the openids that do, template messages to others are 43004) and
:meth:`expire_tokens` (every token issued so far becomes invalid: 40001).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import tornado.httpclient
import tornado.web

from plugins.wechat_notify.events import signature
from plugins.wechat_pay.fake import serve_locally

APPID = "wxfakenotify0000001"
ACCOUNT = "gh_fake0000001"
SECRET = "fake-notify-app-secret"


class FakeWeChatMessages:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.fail_next: list[int] = []
        self.hang_next = 0
        self.hang_seconds = 30.0
        self.followers: set[str] | None = None
        self.tokens: set[str] = set()
        self._stable: str | None = None
        self._server: Any = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def settings(self, **more: Any) -> dict[str, Any]:
        """The ``[wechat_notify]`` keys pointing the plugin here (plus ``more``)."""
        return {"appid": APPID, "app_secret": SECRET, "api_base_url": self.base_url,
                "http_timeout_seconds": 1.0, **more}

    def expire_tokens(self) -> None:
        self.tokens.clear()
        self._stable = None

    async def start(self, port: int = 0) -> None:
        self._server, self.port = serve_locally([
            (r"/cgi-bin/stable_token", TokenHandler, {"fake": self}),
            (r"/cgi-bin/message/(template/send|subscribe/bizsend)", SendHandler,
             {"fake": self}),
        ], port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()


class FakeHandler(tornado.web.RequestHandler):
    def initialize(self, fake: FakeWeChatMessages) -> None:
        self.fake = fake

    def check_xsrf_cookie(self) -> None:
        pass

    def answer(self, **body: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body, ensure_ascii=False))

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}


class TokenHandler(FakeHandler):
    def post(self) -> None:
        fake, body = self.fake, self.json_body()
        fake.calls["stable_token"] += 1
        if body.get("appid") != APPID or body.get("secret") != SECRET:
            return self.answer(errcode=40125, errmsg="invalid appsecret")
        if body.get("force_refresh") or fake._stable is None:
            fake._stable = secrets.token_urlsafe(24)
            fake.tokens.add(fake._stable)
        self.answer(access_token=fake._stable, expires_in=7200)


class SendHandler(FakeHandler):
    async def post(self, endpoint: str) -> None:
        fake, body = self.fake, self.json_body()
        mode = "template" if endpoint == "template/send" else "subscribe"
        fake.calls[mode] += 1
        if self.get_query_argument("access_token", "") not in fake.tokens:
            return self.answer(errcode=40001, errmsg="invalid credential")
        if fake.hang_next > 0:
            fake.hang_next -= 1
            # WeChat got it (and records it) but the answer never comes back in time.
            fake.sent.append({"mode": mode, **body, "answered": False})
            await asyncio.sleep(fake.hang_seconds)
            return self.answer(errcode=0, errmsg="ok", msgid=0)
        if fake.fail_next:
            errcode = fake.fail_next.pop(0)
            return self.answer(errcode=errcode, errmsg="fake failure")
        data = body.get("data")
        if (not body.get("touser") or not body.get("template_id") or not isinstance(data, dict)
                or not all(isinstance(v, dict) and isinstance(v.get("value"), str)
                           for v in data.values())):
            return self.answer(errcode=47003, errmsg="argument invalid! data.value empty")
        if mode == "template" and fake.followers is not None \
                and body["touser"] not in fake.followers:
            return self.answer(errcode=43004, errmsg="require subscribe")
        fake.sent.append({"mode": mode, **body})
        self.answer(errcode=0, errmsg="ok", msgid=len(fake.sent))


def subscription_event(openid: str, answers: dict[str, str], created_at: int,
                       event: str = "subscribe_msg_popup_event") -> str:
    """The XML WeChat pushes when ``openid`` answered a subscription dialog
    (``answers``: template id -> "accept" or "reject"), or changed one later
    (``event="subscribe_msg_change_event"``)."""
    block = {"subscribe_msg_popup_event": "SubscribeMsgPopupEvent",
             "subscribe_msg_change_event": "SubscribeMsgChangeEvent"}[event]
    items = "".join(
        f"<List><TemplateId><![CDATA[{template}]]></TemplateId>"
        f"<SubscribeStatusString><![CDATA[{status}]]></SubscribeStatusString>"
        "<PopupScene>1</PopupScene></List>" for template, status in answers.items())
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created_at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event><{block}>{items}</{block}></xml>")


async def push(url: str, token: str, body: str, timestamp: int,
               method: str = "POST", nonce: str | None = None, **query: str
               ) -> tuple[int, str]:
    """Send a message push (or, ``method="GET"``, the URL check) to ``url`` as WeChat
    does: ``signature``, ``timestamp`` and ``nonce`` (a new one unless given: the same
    one again is the same signed URL) in the query, signed with ``token``. Returns the
    status and body of the answer."""
    nonce = nonce or secrets.token_hex(5)
    signed = {"signature": signature(token, str(timestamp), nonce),
              "timestamp": str(timestamp), "nonce": nonce, **query}
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"{url}?{urlencode(signed)}", method=method,
        body=body.encode() if method == "POST" else None, raise_error=False,
        headers={"Content-Type": "text/xml"} if method == "POST" else None)
    return response.code, (response.body or b"").decode()
