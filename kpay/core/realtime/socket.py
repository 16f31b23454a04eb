"""The /ws handler: auth, frames, subscriptions, rate limit and backpressure."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import tornado.iostream
import tornado.websocket

from kpay.core import metrics
from kpay.core.auth import User
from kpay.core.errors import ApiError
from kpay.core.realtime.protocol import (
    dumps,
    error_reply,
    reply,
    split_channel,
    websocket_text_frame,
)

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.socket")

CLOSE_BAD_FRAME = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_RATE_LIMITED = 4429


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SocketHandler(tornado.websocket.WebSocketHandler):
    """One client socket. Frames are JSON objects ``{"op", "ref", ...}``."""

    def initialize(self) -> None:
        self.kpay: KPay = self.application.settings["kpay"]
        settings = self.kpay.settings.realtime
        self.user: User | None = None
        self.user_id: str | None = None
        self.channels: set[str] = set()
        self.bucket = TokenBucket(settings.rate_per_second, settings.rate_burst)
        self.violations = 0
        self.auth_timer: asyncio.TimerHandle | None = None
        self.stream: tornado.iostream.IOStream | None = None

    # -- connection lifecycle ------------------------------------------------

    def check_origin(self, origin: str) -> bool:
        allowed = self.kpay.settings.server.allowed_origins
        if origin in allowed or "*" in allowed:
            return True
        return urlparse(origin).netloc == self.request.host

    def open(self) -> None:
        metrics.SOCKETS_OPEN.inc()
        self.stream = self.ws_connection.stream  # type: ignore[union-attr]
        # Bounded outbound buffer: a client that stops reading is dropped, not buffered.
        self.stream.max_write_buffer_size = self.kpay.settings.realtime.outbound_buffer_bytes
        self.kpay.sockets.add(self)
        token = self.get_query_argument("token", None)
        if token:
            self.authenticate(token)
        else:
            timeout = self.kpay.settings.realtime.auth_timeout_seconds
            self.auth_timer = asyncio.get_running_loop().call_later(
                timeout, self.close, CLOSE_UNAUTHORIZED, "auth timeout")

    def authenticate(self, token: Any) -> bool:
        try:
            if not isinstance(token, str):
                raise ApiError("token must be a string")
            self.user = self.kpay.tokens.verify(token)
        except ApiError as e:
            self.close(CLOSE_UNAUTHORIZED, e.code)
            return False
        self.user_id = self.user.id
        if self.auth_timer is not None:
            self.auth_timer.cancel()
            self.auth_timer = None
        return True

    def on_close(self) -> None:
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        self.kpay.sockets.discard(self)
        metrics.SOCKETS_OPEN.dec()
        metrics.SOCKETS_CLOSED.labels(str(self.close_code or "gone")).inc()
        for channel in tuple(self.channels):
            self._leave(channel)

    def get_compression_options(self) -> None:
        # Frames are written pre-built to every socket: no per-socket compression.
        return None

    # -- outbound --------------------------------------------------------------

    def send_frame(self, frame: bytes) -> bool:
        stream = self.stream
        if stream is None or stream.closed():
            return False
        try:
            stream.write(frame)
        except tornado.iostream.StreamBufferFullError:
            log.info("socket of %s dropped: outbound buffer full", self.user_id)
            metrics.SOCKETS_CLOSED.labels("slow_consumer").inc()
            stream.close()
            return False
        except tornado.iostream.StreamClosedError:
            return False
        return True

    def send(self, message: dict[str, Any]) -> None:
        self.send_frame(websocket_text_frame(dumps(message).encode()))

    def end_subscription(self, channel: str, reason: str) -> None:
        if channel in self.channels:
            self._leave(channel)
            self.send({"op": "unsubscribed", "ch": channel, "reason": reason})

    # -- inbound ---------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        if not self.bucket.take():
            self.violations += 1
            if self.violations >= self.kpay.settings.realtime.rate_violations_before_close:
                self.close(CLOSE_RATE_LIMITED, "rate limited")
            else:
                self.send(error_reply(None, "rate_limited", "too many frames; slow down"))
            return
        frame = parse_frame(message)
        if isinstance(frame, str):
            self.send(error_reply(None, "bad_frame", frame))
            return
        op, ref = frame.get("op"), frame.get("ref")
        metrics.MESSAGES_IN.labels(op if op in OPS else "unknown").inc()
        if op not in OPS:
            self.send(error_reply(ref, "unknown_op", f"unknown op {op!r}; ops: {', '.join(OPS)}"))
            return
        if op == "auth":
            if self.user is not None:
                self.send(error_reply(ref, "already_authenticated", "already authenticated"))
            elif self.authenticate(frame.get("token")):
                self.send(reply(ref, user={"id": self.user.id, "role": self.user.role}))
            return
        if self.user is None:
            self.send(error_reply(ref, "auth_required", "send {\"op\":\"auth\"} first"))
            return
        try:
            await getattr(self, f"op_{op}")(ref, frame)
        except ApiError as e:
            self.send(error_reply(ref, e.code, e.message, **e.details))

    async def op_ping(self, ref: Any, frame: dict[str, Any]) -> None:
        self.send(reply(ref, time=self.kpay.clock.now().isoformat()))

    async def op_sub(self, ref: Any, frame: dict[str, Any]) -> None:
        channel, ident, rule = self._channel(frame)
        assert self.user is not None
        since = frame.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
            raise ApiError("since must be an integer seq", code="bad_frame")
        allowed = await self.kpay.call(rule.can_subscribe, self.kpay, self.user, ident)
        if not allowed:
            raise ApiError(f"not allowed to subscribe to {channel}", code="forbidden")
        if self.ws_connection is None:
            return
        first_socket = self._join(channel)
        if since is None:
            self.send(reply(ref))
        else:
            # No await between joining and reading history: nothing can slip between.
            history = await self.kpay.broker.history(channel, since)
            self.send(reply(ref, recovered=history.recovered))
            for publication in history.publications:
                self.send_frame(publication.frame)
        if first_socket:
            await self.kpay.notify("on_presence", channel=channel, user_id=self.user.id,
                                   present=True)

    async def op_unsub(self, ref: Any, frame: dict[str, Any]) -> None:
        channel = frame.get("ch")
        if not isinstance(channel, str) or channel not in self.channels:
            raise ApiError(f"not subscribed to {channel!r}", code="not_subscribed")
        self._leave(channel)
        self.send(reply(ref))

    async def op_pub(self, ref: Any, frame: dict[str, Any]) -> None:
        channel, ident, rule = self._channel(frame)
        assert self.user is not None
        kind, data = frame.get("type"), frame.get("data", {})
        if not isinstance(kind, str) or not kind or len(kind) > 64:
            raise ApiError("type must be a short string", code="bad_frame")
        if rule.on_publish is None:
            raise ApiError(f"clients may not publish on {channel}", code="forbidden")
        await self.kpay.call(rule.on_publish, self.kpay, self.user, ident, kind, data)
        self.send(reply(ref))

    def _channel(self, frame: dict[str, Any]) -> tuple[str, str, Any]:
        channel = frame.get("ch")
        parts = split_channel(channel)
        if parts is None:
            raise ApiError("ch must be '<prefix>:<id>'", code="bad_frame")
        return channel, parts[1], self.kpay.channels.rule(parts[0])

    def _join(self, channel: str) -> bool:
        self.channels.add(channel)
        return self.kpay.hub.subscribe(channel, self)

    def _leave(self, channel: str) -> None:
        self.channels.discard(channel)
        if self.kpay.hub.unsubscribe(channel, self) and self.user_id is not None:
            self.kpay.spawn(self.kpay.notify("on_presence", channel=channel,
                                             user_id=self.user_id, present=False))


OPS = ("auth", "sub", "unsub", "pub", "ping")


def parse_frame(message: str | bytes) -> dict[str, Any] | str:
    """The frame as a dict, or a message saying what is wrong with it."""
    if isinstance(message, bytes):
        return "binary frames are not accepted; send JSON text"
    try:
        frame = json.loads(message)
    except ValueError:
        return "frame is not valid JSON"
    if not isinstance(frame, dict):
        return "frame must be a JSON object"
    return frame
