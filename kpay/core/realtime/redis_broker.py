"""The Redis broker: seq, history and fan-out shared by every node on one Redis.

One Lua script per publish increments the channel's seq, adds the event to the
channel's history (a sorted set scored by seq, trimmed to ``history_size``) and
PUBLISHes it on the channel's own Redis pub/sub channel (``<prefix>ch:<channel>``).
Redis runs a script alone, so seq, history and the order of pub/sub messages agree
per channel.

A node SUBSCRIBEs to a channel's pub/sub channel when its hub gets the first socket on
it (``listen``, which returns once Redis confirmed the subscription) and UNSUBSCRIBEs
when the hub no longer wants it, so a node receives only the events of channels it has
sockets on (docs/websocket.md "Brokers"). Control messages (``command``) go on one
pub/sub channel every node listens to; presence is in redis_presence.py.

The event JSON is encoded once by the publishing node (seq spliced in by the script);
the other nodes frame those bytes as they are, without decoding or re-encoding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis

from kpay.core import metrics
from kpay.core.realtime.broker import (
    SOCKETS,
    Broker,
    HistoryResult,
    history_result,
    initial_seq,
)
from kpay.core.realtime.protocol import Publication, dumps, event_parts
from kpay.core.realtime.redis_presence import RedisTallies

log = logging.getLogger("kpay.broker")

# KEYS: seq key, history key. ARGV: event head, event tail, time, initial seq,
# history size, history ttl (s), seq ttl (s), pub/sub channel, channel name as JSON.
# INCR then GET: the seq as a string (Lua numbers would print large seqs as 1.7e+15).
PUBLISH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[4]) end
redis.call('INCR', KEYS[1])
local seq = redis.call('GET', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[7])
local event = ARGV[1] .. seq .. ARGV[2]
local size = tonumber(ARGV[5])
if size > 0 then
  redis.call('ZADD', KEYS[2], seq, ARGV[3] .. ' ' .. event)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -size - 1)
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
redis.call('PUBLISH', ARGV[8], seq .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[9] .. '\\n' .. event)
return seq
"""

# How long a quiet channel's seq counter is kept. When it expires the channel starts
# again from a time-based seq (above the old one), and resuming clients are told
# ``recovered: false``.
SEQ_TTL_SECONDS = 7 * 24 * 3600

#: How long a socket waits for Redis to confirm a channel subscription.
LISTEN_TIMEOUT_SECONDS = 10.0
#: Control messages larger than this are not taken (they are a few hundred bytes).
MAX_COMMAND_BYTES = 65_536


class RedisBroker(Broker):
    """Many nodes on one Redis: a node's hub gets the publications of the channels it
    listens to."""

    def __init__(self, url: str, history_size: int, history_ttl: float,
                 clock: Callable[[], float] = time.time, prefix: str = "kpay:", *,
                 presence_ttl: float = 15.0,
                 listening: Callable[[str], bool] = lambda channel: False) -> None:
        super().__init__(history_size, history_ttl, clock)
        self.url = url
        self.prefix = prefix
        self.control_channel = f"{prefix}control"
        self._control_raw = self.control_channel.encode()
        self.seq_ttl = max(SEQ_TTL_SECONDS, int(history_ttl))
        self.history_expiry = int(history_ttl) or self.seq_ttl
        self.redis: redis.Redis | None = None
        self._pubsub: Any = None
        self._script: Any = None
        self._listener: asyncio.Task | None = None
        self.tallies = RedisTallies(prefix, presence_ttl)
        #: Whether this node's hub still wants a channel (sockets on it, or one resuming).
        self.listening = listening
        # Channels SUBSCRIBEd (and not UNSUBSCRIBEd since), each with the future that
        # Redis's confirmation resolves; one lock keeps SUBSCRIBE and UNSUBSCRIBE of a
        # channel in the order they were decided.
        self._routes: dict[str, asyncio.Future[None]] = {}
        self._waiting: dict[str, int] = {}
        self._route_lock = asyncio.Lock()

    def route(self, channel: str) -> str:
        """The Redis pub/sub channel of a kpay channel."""
        return f"{self.prefix}ch:{channel}"

    async def start(self) -> None:
        self.redis = redis.from_url(self.url)
        try:
            await self.redis.ping()
        except (redis.ConnectionError, OSError) as e:
            await self.redis.aclose()
            raise RuntimeError(f"[realtime] broker = redis: cannot reach "
                               f"{without_password(self.url)}: {e}") from e
        self._script = self.redis.register_script(PUBLISH_SCRIPT)
        self._pubsub = self.redis.pubsub()
        self.member = f"{self.member or 'node'}#{secrets.token_hex(4)}"
        # Confirmed before start() returns: no control message sent after it is missed.
        self._routes[self.control_channel] = asyncio.get_running_loop().create_future()
        await self._pubsub.subscribe(self.control_channel)
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        await asyncio.wait_for(self._routes[self.control_channel], LISTEN_TIMEOUT_SECONDS)
        await self.tallies.start(self.redis, self.member)

    async def stop(self, clean: bool = True) -> None:
        """Disconnect; ``clean=False`` leaves this node's presence to expire (tests
        use it to play a node that died)."""
        await self.tallies.stop(clean)
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    def _keys(self, channel: str) -> list[str]:
        return [f"{self.prefix}seq:{channel}", f"{self.prefix}history:{channel}"]

    async def publish(self, channel: str, type: str, data: Any) -> Publication:
        head, tail = event_parts(channel, type, data)
        now = self.clock()
        seq = int(await self._script(keys=self._keys(channel), args=[
            head, tail, repr(now), initial_seq(), self.history_size, self.history_expiry,
            self.seq_ttl, self.route(channel), dumps(channel),
        ]))
        metrics.EVENTS_PUBLISHED.inc()
        return Publication(channel, seq, type, data, now, f"{head}{seq}{tail}".encode())

    async def history(self, channel: str, since: int) -> HistoryResult:
        assert self.redis is not None, "broker not started"
        seq_key, history_key = self._keys(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(seq_key)
            pipe.zrangebyscore(history_key, f"({since}", "+inf", withscores=True)
            top_raw, entries = await pipe.execute()
        if top_raw is None:
            # Never published, or forgotten: what came before ``since`` is unknown.
            return HistoryResult([], False, 0)
        oldest_allowed = self.oldest_kept()
        kept = []
        for member, score in entries:
            when, payload = member.split(b" ", 1)
            if float(when) >= oldest_allowed:
                kept.append(Publication.encoded(channel, int(score), float(when), payload))
        return history_result(kept, since, int(top_raw))

    # -- routing ---------------------------------------------------------------------

    async def listen(self, channel: str) -> None:
        route = self.route(channel)
        confirmed = self._routes.get(route)
        if confirmed is not None and confirmed.done() and confirmed.exception() is None:
            return  # already routed here: the caller joins before anything can run
        self._waiting[route] = self._waiting.get(route, 0) + 1
        try:
            async with self._route_lock:
                confirmed = self._routes.get(route)
                if confirmed is None:
                    assert self._pubsub is not None, "broker not started"
                    confirmed = self._routes[route] = asyncio.get_running_loop().create_future()
                    try:
                        await self._pubsub.subscribe(route)
                    except BaseException:
                        del self._routes[route]  # the next socket tries again
                        raise
            await asyncio.wait_for(asyncio.shield(confirmed), LISTEN_TIMEOUT_SECONDS)
        finally:
            # Counted until here: no UNSUBSCRIBE between the confirmation and the
            # caller joining the hub (nothing awaits between that and our return).
            self._waiting[route] -= 1
            if not self._waiting[route]:
                del self._waiting[route]

    def unlisten(self, channel: str) -> None:
        if self._pubsub is not None and self.route(channel) in self._routes:
            asyncio.get_running_loop().create_task(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: str) -> None:
        route = self.route(channel)
        async with self._route_lock:
            # Decided under the lock: a socket that joined (or is joining) meanwhile
            # keeps the subscription.
            if route not in self._routes or route in self._waiting or self.listening(channel):
                return
            del self._routes[route]
            try:
                await self._pubsub.unsubscribe(route)
            except (redis.RedisError, OSError) as e:
                log.warning("could not unsubscribe from %s (%s)", route, e)

    @property
    def routes(self) -> int:
        """The channels this node is subscribed to in Redis (control channel included)."""
        return len(self._routes)

    # -- the cluster view ------------------------------------------------------------

    def tally(self, channel: str, user_id: str, count: int) -> None:
        self.tallies.tally(channel, user_id, count)

    async def presence(self, channel: str) -> int:
        return await self.tallies.presence(channel)

    async def is_present(self, channel: str, user_id: str) -> bool:
        return await self.tallies.is_present(channel, user_id)

    async def sockets_of(self, user_id: str) -> int:
        return await self.tallies.total(SOCKETS, user_id)

    async def command(self, name: str, args: dict[str, Any]) -> None:
        assert self.redis is not None, "broker not started"
        await self.redis.publish(self.control_channel, command_message(name, args, self.member))

    def _control(self, raw: bytes) -> None:
        if len(raw) > MAX_COMMAND_BYTES:
            log.warning("control message of %d bytes ignored", len(raw))
            return
        message = json.loads(raw)
        name, args, origin = message.get("name"), message.get("args"), message.get("from")
        if isinstance(name, str) and isinstance(args, dict) and isinstance(origin, str):
            self._command(name, args, origin)

    async def _listen(self) -> None:
        """Hand every pub/sub message to the hub; reconnect after Redis goes away."""
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except (redis.ConnectionError, OSError) as e:
                # Publications sent meanwhile are lost to this node (at most once);
                # clients catch up with ``sub`` + ``since`` when they notice.
                log.warning("redis pub/sub connection lost (%s); reconnecting", e)
                await asyncio.sleep(1.0)
                continue
            if message is None:
                continue
            kind = message.get("type")
            if kind == "subscribe":
                confirmed = self._routes.get(message["channel"].decode())
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                continue
            if kind != "message":
                continue
            try:
                if message["channel"] == self._control_raw:
                    self._control(message["data"])
                else:
                    self._deliver(decode_message(message["data"]))
            except Exception:
                log.exception("could not handle a message from redis on %s", message["channel"])


def without_password(url: str) -> str:
    """``url`` fit for a log or an error message: its password (``redis://:pw@host``,
    ``[realtime] redis_url``) replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}[redacted]@{host}"))


def command_message(name: str, args: dict[str, Any], origin: str) -> str:
    return json.dumps({"name": name, "args": args, "from": origin})


async def send_command(url: str, prefix: str, name: str, args: dict[str, Any],
                       origin: str) -> None:
    """Send one control message from outside a node (the ``kpay`` command line)."""
    client = redis.from_url(url)
    try:
        await client.publish(f"{prefix}control", command_message(name, args, origin))
    finally:
        await client.aclose()


def decode_message(raw: bytes) -> Publication:
    seq, when, channel, payload = raw.split(b"\n", 3)
    return Publication.encoded(json.loads(channel), int(seq), float(when), payload)
