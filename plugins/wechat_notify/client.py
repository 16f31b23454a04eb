"""Talking to WeChat's message API: the access token (``cgi-bin/stable_token``, cached
until shortly before it expires and refreshed once when WeChat calls it invalid) and
one send, classified by what it proves (docs/wechat_notify.md "At most once").

The token is part of the request URL: neither the URL nor the token is ever logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import tornado.httpclient

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.wechat_notify")

PATHS = {"template": "cgi-bin/message/template/send",
         "subscribe": "cgi-bin/message/subscribe/bizsend"}
# Refresh this long before WeChat's expiry, so a cached token is never used stale.
MARGIN = timedelta(minutes=5)
TOKEN_INVALID = (40001, 40014, 42001)  # invalid, malformed, expired access_token
NOT_ACCEPTED = (-1, 45009)  # system busy, rate limit: nothing was sent, try later
NOT_FOLLOWING, REFUSED = 43004, 43101
# Connection errors raised before any byte of the request left: WeChat saw nothing.
NOT_SENT_ERRORS = (ConnectionRefusedError, socket.gaierror)


@dataclass(frozen=True)
class Outcome:
    """What one send proves: ``state`` is sent, retry (WeChat provably did not take
    it), not_following, refused (the user withdrew consent), failed (WeChat refused
    it for good) or unknown (it may have arrived: never resent)."""

    state: str
    errcode: int | None = None
    msgid: Any = None


class NotSent(Exception):
    """The request provably did not reach WeChat (or WeChat refused to take it)."""


class Ambiguous(Exception):
    """The request may have reached WeChat: a timeout, a dropped connection, a reply
    that is not WeChat's JSON."""


class Messenger:
    def __init__(self, app: KPay, base_url: str, appid: str, secret: str,
                 timeout: float) -> None:
        self.app = app
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.appid = appid
        self.secret = secret
        self.timeout = timeout
        self.http = tornado.httpclient.AsyncHTTPClient()
        self._token: str | None = None
        self._expires_at: Any = None
        self._lock = asyncio.Lock()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = tornado.httpclient.HTTPRequest(
            self.base_url + path, method="POST",
            body=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
            connect_timeout=self.timeout, request_timeout=self.timeout)
        try:
            response = await self.http.fetch(request, raise_error=False)
        except NOT_SENT_ERRORS as e:
            raise NotSent(type(e).__name__) from None
        except Exception as e:  # timeouts, resets: the request may have arrived
            raise Ambiguous(type(e).__name__) from None
        if response.code == 599:
            raise Ambiguous(f"no answer ({type(response.error).__name__})")
        try:
            answer = json.loads(response.body or b"")
        except ValueError:
            raise Ambiguous(f"HTTP {response.code} without JSON") from None
        if not isinstance(answer, dict):
            raise Ambiguous(f"HTTP {response.code} with unexpected JSON")
        return answer

    async def token(self, force: bool = False) -> str:
        """The cached access token; a fresh one when ``force`` (WeChat said invalid).
        stable_token, unlike cgi-bin/token, does not invalidate the token other parts
        of kpay (the JS-SDK) hold. Raises NotSent when none can be had."""
        async with self._lock:
            now = self.app.clock.now()
            if not force and self._token and self._expires_at > now:
                return self._token
            try:
                answer = await self._post("cgi-bin/stable_token", {
                    "grant_type": "client_credential", "appid": self.appid,
                    "secret": self.secret, "force_refresh": force})
            except Ambiguous as e:
                raise NotSent(f"no access token: {e}") from None  # no message went
            if not answer.get("access_token"):
                raise NotSent(f"no access token: errcode {answer.get('errcode')}")
            self._token = str(answer["access_token"])
            self._expires_at = now + timedelta(seconds=int(answer.get("expires_in", 7200))
                                               ) - MARGIN
            return self._token

    async def send(self, mode: str, payload: dict[str, Any]) -> Outcome:
        """Send one message (``payload`` as WeChat takes it) and say what happened."""
        refreshed = False
        while True:
            try:
                token = await self.token(force=refreshed)
                answer = await self._post(f"{PATHS[mode]}?access_token={token}", payload)
            except NotSent as e:
                log.warning("wechat_notify: not sent (%s); will retry", e)
                return Outcome("retry")
            except Ambiguous as e:
                log.warning("wechat_notify: %s message may or may not have arrived (%s); "
                            "not resent", mode, e)
                return Outcome("unknown")
            errcode = int(answer.get("errcode", 0) or 0)
            if errcode in TOKEN_INVALID and not refreshed:
                refreshed = True  # WeChat refused the token, not the message: once more
                continue
            return outcome_of(errcode, answer.get("msgid"))


def outcome_of(errcode: int, msgid: Any = None) -> Outcome:
    if errcode == 0:
        return Outcome("sent", 0, msgid)
    if errcode in NOT_ACCEPTED or errcode in TOKEN_INVALID:
        return Outcome("retry", errcode)
    if errcode == NOT_FOLLOWING:
        return Outcome("not_following", errcode)
    if errcode == REFUSED:
        return Outcome("refused", errcode)
    return Outcome("failed", errcode)
