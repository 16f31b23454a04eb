"""The /ws handler: auth, frames, subscriptions and rate limit; writing frames out
(coalescing, backpressure) is kpay/core/realtime/writer.py."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import tornado.httputil
import tornado.iostream
import tornado.websocket

from kpay.core import metrics
from kpay.core.auth import TokenClaims, User
from kpay.core.errors import ApiError
from kpay.core.realtime.broker import SOCKETS
from kpay.core.realtime.protocol import (
    dumps,
    error_reply,
    parse_frame,
    reply,
    split_channel,
    websocket_text_frame,
)
from kpay.core.realtime.writer import FrameWriter
from kpay.core.users import authenticate

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.socket")

CLOSE_UNAUTHORIZED = 4401
CLOSE_RATE_LIMITED = 4429
#: Same code, reason "too_many_sockets": the user has [realtime] max_sockets_per_user.
CLOSE_TOO_MANY_SOCKETS = 4429


class TokenBucket:
    __slots__ = ("burst", "rate", "tokens", "updated")

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


def origin_allowed(origin: str, allowed: list[str], host: str) -> bool:
    """Browsers send Origin: same host, an allow-listed origin, or ``"*"`` in the list."""
    origin = origin.lower().rstrip("/")
    if "*" in allowed or origin in (a.lower().rstrip("/") for a in allowed):
        return True
    return urlparse(origin).netloc == host.lower()


class SocketState:
    """A socket's own bookkeeping, in slots: at thousands of sockets per node, every
    attribute on the handler itself costs (its __dict__ outgrows Python's shared-key
    dicts past 30 attributes, about 1.3 KB more per socket)."""

    __slots__ = ("auth_timer", "awaiting_pong", "bucket", "channels", "claims", "direct_send",
                 "opened", "pending", "user", "violations")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.channels: set[str] = set()
        self.user: User | None = None
        #: The token the socket authenticated with (kpay/core/sessions.py checks it
        #: again when the user's standing changes).
        self.claims: TokenClaims | None = None
        self.violations = 0
        self.auth_timer: asyncio.TimerHandle | None = None
        self.direct_send = False
        self.awaiting_pong = False
        #: ``open()`` returned: Tornado reads the socket's frames (its pongs too) only
        #: from then on, so the keep-alive leaves it alone until then.
        self.opened = False
        #: Frames that arrived while a write to the stream was in flight (None: no
        #: write is), sent together with one write when it completes (docs/performance.md,
        #: "Hub fan-out").
        self.pending: bytearray | None = None


class SocketHandler(FrameWriter, tornado.websocket.WebSocketHandler):
    """One client socket. Frames are JSON objects ``{"op", "ref", ...}``; ``send_frame``
    and ``close`` come from ``FrameWriter``."""

    def initialize(self) -> None:
        realtime = self.kpay.settings.realtime
        self.state = SocketState(TokenBucket(realtime.rate_per_second, realtime.rate_burst))
        # Set while the socket can take frames; None once it is closing or gone.
        self.stream: tornado.iostream.IOStream | None = None

    @property
    def kpay(self) -> KPay:
        return self.application.settings["kpay"]

    @property
    def user(self) -> User | None:
        return self.state.user

    @property
    def user_id(self) -> str | None:
        user = self.state.user
        return user.id if user is not None else None

    @property
    def channels(self) -> set[str]:
        return self.state.channels

    # -- connection lifecycle ------------------------------------------------

    def check_origin(self, origin: str) -> bool:
        return origin_allowed(origin, self.kpay.settings.server.allowed_origins,
                              self.request.host)

    async def open(self) -> None:
        metrics.SOCKETS_OPEN.inc()
        self.start_writing(self.ws_connection.stream,  # type: ignore[union-attr]
                           self.kpay.settings.realtime.outbound_buffer_bytes)
        self.kpay.sockets.add(self)
        token = self.get_query_argument("token", None)
        self.forget_handshake()
        try:
            if token:
                await self.authenticate(token)
            else:
                timeout = self.kpay.settings.realtime.auth_timeout_seconds
                self.state.auth_timer = asyncio.get_running_loop().call_later(
                    timeout, self.close, CLOSE_UNAUTHORIZED, "auth timeout")
        finally:
            self.state.opened = True

    def forget_handshake(self) -> None:
        """Drop the upgrade request's headers and query, needed only for the handshake.

        They are the largest part of an idle socket (about 1.5 KB of its ~15 KB), and
        the query holds the token, which should not linger in memory or in logs.
        """
        request = self.request
        request.headers = tornado.httputil.HTTPHeaders()
        request.uri = request.path
        request.query = ""
        request.arguments = {}
        request.query_arguments = {}

    async def authenticate(self, token: Any) -> bool:
        """Accept a valid token of a user who may still act (stored role, not blocked,
        not revoked); otherwise close with 4401 and the error code as the reason."""
        try:
            if not isinstance(token, str):
                raise ApiError("token must be a string", code="invalid_token")
            claims = await authenticate(self.kpay.tokens, self.kpay.users, token)
        except ApiError as e:
            self.close(CLOSE_UNAUTHORIZED, e.code)
            return False
        if self.stream is None:
            return False  # closed while the standing was read
        # The user's authenticated sockets on this node, counted up here and down in
        # on_close, checked and taken with no await in between: two sockets
        # authenticating at once cannot both take the last place.
        counts = self.kpay.sockets_per_user
        held = counts.get(claims.user.id, 0)
        cap = self.kpay.settings.realtime.max_sockets_per_user
        if cap and held >= cap:
            metrics.SOCKETS_CLOSED.labels("too_many_sockets").inc()
            self.close(CLOSE_TOO_MANY_SOCKETS, "too_many_sockets")
            return False
        counts[claims.user.id] = held + 1
        self.kpay.broker.tally(SOCKETS, claims.user.id, held + 1)
        self.state.claims, self.state.user = claims, claims.user
        if self.state.auth_timer is not None:
            self.state.auth_timer.cancel()
            self.state.auth_timer = None
        if cap and not await self._within_cluster_cap(claims.user.id, cap):
            metrics.SOCKETS_CLOSED.labels("too_many_sockets").inc()
            self.close(CLOSE_TOO_MANY_SOCKETS, "too_many_sockets")
            return False
        return True

    async def _within_cluster_cap(self, user_id: str, cap: int) -> bool:
        """The user's sockets on every node, this one counted in, are within the cap.
        Two sockets arriving on two nodes at the same instant for the last place may
        both be refused, never both let in. If the broker cannot tell, the socket is let
        in (the cap bounds abuse; it is not worth refusing everyone while Redis is away).
        """
        try:
            return await self.kpay.broker.sockets_of(user_id) <= cap
        except Exception as e:
            log.warning("could not count the sockets of %s across nodes (%s)", user_id, e)
            return True

    def on_close(self) -> None:
        self.stream = None
        self.state.pending = None
        if self.state.auth_timer is not None:
            self.state.auth_timer.cancel()
        self.kpay.sockets.discard(self)
        user = self.state.user
        if user is not None:
            left = self.kpay.sockets_per_user.get(user.id, 0) - 1
            if left > 0:
                self.kpay.sockets_per_user[user.id] = left
            else:
                self.kpay.sockets_per_user.pop(user.id, None)
            self.kpay.broker.tally(SOCKETS, user.id, max(left, 0))
        metrics.SOCKETS_OPEN.dec()
        metrics.SOCKETS_CLOSED.labels(str(self.close_code or "gone")).inc()
        for channel in tuple(self.channels):
            self._leave(channel)

    def on_pong(self, data: bytes) -> None:
        self.state.awaiting_pong = False

    def get_compression_options(self) -> None:
        # Frames are written pre-built to every socket: no per-socket compression.
        return None

    # -- outbound --------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        self.send_frame(websocket_text_frame(dumps(message).encode()))

    def end_subscription(self, channel: str, reason: str) -> None:
        if channel in self.channels:
            self._leave(channel)
            self.send({"op": "unsubscribed", "ch": channel, "reason": reason})

    # -- inbound ---------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        state = self.state
        if not state.bucket.take():
            state.violations += 1
            self.send(error_reply(None, "rate_limited", "too many frames; slow down"))
            if state.violations >= self.kpay.settings.realtime.rate_violations_before_close:
                self.close(CLOSE_RATE_LIMITED, "rate limited")
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
            elif await self.authenticate(frame.get("token")):
                self.send(reply(ref, user={"id": self.user.id, "role": self.user.role}))
            return
        if self.user is None:
            self.send(error_reply(ref, "auth_required", "send {\"op\":\"auth\"} first"))
            return
        try:
            await getattr(self, f"op_{op}")(ref, frame)
        except ApiError as e:
            self.send(error_reply(ref, e.code, e.message, **e.details))
        except Exception:
            # A plugin's rule failed: this frame gets an error, the socket lives on.
            log.exception("socket op %r failed", op)
            self.send(error_reply(ref, "internal_error", "the server failed on this frame"))

    async def op_ping(self, ref: Any, frame: dict[str, Any]) -> None:
        self.send(reply(ref, time=self.kpay.clock.now().isoformat()))

    async def op_sub(self, ref: Any, frame: dict[str, Any]) -> None:
        channel, ident, rule = self._channel(frame)
        assert self.user is not None
        since = frame.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
            raise ApiError("since must be an integer seq", code="bad_frame")
        if channel in self.channels:
            raise ApiError(f"already subscribed to {channel}", code="already_subscribed")
        allowed = await self.kpay.call(rule.can_subscribe, self.kpay, self.user, ident)
        if not allowed:
            raise ApiError(f"not allowed to subscribe to {channel}", code="forbidden")
        if self.stream is None:
            return  # closed while the rule was deciding
        # This node receives the channel's events from here on (with Redis: once the
        # SUBSCRIBE is confirmed), before the reply and before history is read, so
        # nothing published after either is missed.
        await self.kpay.broker.listen(channel)
        if self.stream is None:
            self.kpay.hub.drop_if_idle(channel)
            return
        if since is None:
            first_socket = self._join(channel)
            self.send(reply(ref))
        else:
            first_socket = await self._resume(ref, channel, since)
            if first_socket is None:
                return
        if first_socket:
            await self.kpay.notify("on_presence", channel=channel, user_id=self.user.id,
                                   present=True)

    async def _resume(self, ref: Any, channel: str, since: int) -> bool | None:
        """Join and replay history after ``since``, then what arrived meanwhile, in order.

        Returns whether this is the user's first socket on the channel (None: closed).
        """
        hub = self.kpay.hub
        held = hub.hold(channel)
        try:
            history = await self.kpay.broker.history(channel, since)
        finally:
            hub.release(channel, held)
        if self.stream is None:
            return None
        # From here to the end nothing awaits: no publication can slip in between.
        first_socket = self._join(channel)
        self.send(reply(ref, recovered=history.recovered))
        for publication in history.publications:
            self.send_frame(publication.frame)
        for publication in held:
            if publication.seq > history.top:
                self.send_frame(publication.frame)
        return first_socket

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
