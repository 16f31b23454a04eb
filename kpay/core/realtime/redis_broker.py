"""The Redis broker: seq, history and fan-out shared by every node on one Redis.

One Lua script per publish increments the channel's seq, adds the event to the
channel's history (a sorted set scored by seq, trimmed to ``history_size``) and
PUBLISHes it on one Redis pub/sub channel that every node listens to. Redis runs a
script alone, so seq, history and the order of pub/sub messages agree per channel.

The event JSON is encoded once by the publishing node (seq spliced in by the script);
the other nodes frame those bytes as they are, without decoding or re-encoding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from kpay.core import metrics
from kpay.core.realtime.broker import Broker, HistoryResult, history_result, initial_seq
from kpay.core.realtime.protocol import Publication, dumps, event_parts

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


class RedisBroker(Broker):
    """Many nodes on one Redis: every node's hub gets every publication."""

    def __init__(self, url: str, history_size: int, history_ttl: float,
                 clock: Callable[[], float] = time.time, prefix: str = "kpay:") -> None:
        super().__init__(history_size, history_ttl, clock)
        self.url = url
        self.prefix = prefix
        self.events_channel = f"{prefix}events"
        self.seq_ttl = max(SEQ_TTL_SECONDS, int(history_ttl))
        self.history_expiry = int(history_ttl) or self.seq_ttl
        self.redis: redis.Redis | None = None
        self._pubsub: Any = None
        self._script: Any = None
        self._listener: asyncio.Task | None = None

    async def start(self) -> None:
        self.redis = redis.from_url(self.url)
        try:
            await self.redis.ping()
        except (redis.ConnectionError, OSError) as e:
            await self.redis.aclose()
            raise RuntimeError(f"[realtime] broker = redis: cannot reach {self.url}: {e}") from e
        self._script = self.redis.register_script(PUBLISH_SCRIPT)
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        # Subscribed before start() returns: nothing published after it is missed.
        await self._pubsub.subscribe(self.events_channel)
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
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
            self.seq_ttl, self.events_channel, dumps(channel),
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
            if message is None or message.get("type") != "message":
                continue
            try:
                self._deliver(decode_message(message["data"]))
            except Exception:
                log.exception("could not deliver a publication from redis")


def decode_message(raw: bytes) -> Publication:
    seq, when, channel, payload = raw.split(b"\n", 3)
    return Publication.encoded(json.loads(channel), int(seq), float(when), payload)
