"""The Redis broker's cluster view: every node's per-channel socket tallies in Redis.

Keys (under the broker's prefix; docs/websocket.md "Presence across nodes"):

- ``members``: a set of the processes that reported (``<node_id>#<random>``, a fresh
  name per process, so a restarted node never inherits what its last life left);
- ``alive:<member>``: set with a ttl of ``presence_ttl`` by the member's heartbeat,
  every third of it;
- ``tally:<member>:<channel>``: a hash user -> that member's sockets of the user on
  the channel, with the same ttl, refreshed by the heartbeat.

Reads count only members whose ``alive`` key exists, so a node that dies without
cleaning up drops out of presence within ``presence_ttl``; its keys expire by
themselves and the next heartbeat of any node takes it out of ``members``.

Writes are the node's latest tallies, not deltas: ``tally`` only records the count and
one task writes what changed, batched in one pipeline, so their order never matters
and a burst of joins costs one round trip. A read first waits for that write, so a
node always sees its own changes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as redis

log = logging.getLogger("kpay.broker")


class RedisTallies:
    def __init__(self, prefix: str, ttl: float) -> None:
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl * 1000))
        self.redis: redis.Redis | None = None
        self.member = ""
        # What this member has: channel -> user -> sockets (the heartbeat refreshes it).
        self.mine: dict[str, dict[str, int]] = {}
        self._changed: set[tuple[str, str]] = set()
        self._writing: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        # Set when a write failed: the next heartbeat writes everything again.
        self._stale = False

    def _alive(self, member: str) -> str:
        return f"{self.prefix}alive:{member}"

    def _key(self, member: str, channel: str) -> str:
        return f"{self.prefix}tally:{member}:{channel}"

    async def start(self, client: redis.Redis, member: str) -> None:
        self.redis, self.member = client, member
        await self._beat()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_periodically())

    async def stop(self, clean: bool = True) -> None:
        """Stop the heartbeat; ``clean``: take this member out of Redis at once."""
        for task in (self._heartbeat, self._writing):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._heartbeat = self._writing = None
        if clean and self.redis is not None:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.srem(f"{self.prefix}members", self.member)
                    pipe.delete(self._alive(self.member),
                                *(self._key(self.member, c) for c in self.mine))
                    await pipe.execute()
            except (redis.RedisError, OSError) as e:
                log.warning("could not take this node out of presence (%s); it drops "
                            "out by itself", e)
        # Sockets closing after this are not written (the member is gone anyway).
        self.redis = None

    # -- writing -------------------------------------------------------------------

    def tally(self, channel: str, user_id: str, count: int) -> None:
        users = self.mine.setdefault(channel, {})
        if count > 0:
            users[user_id] = count
        else:
            users.pop(user_id, None)
            if not users:
                del self.mine[channel]
        self._changed.add((channel, user_id))
        if self._writing is None and self.redis is not None:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        assert self.redis is not None
        try:
            while self._changed:
                changed, self._changed = self._changed, set()
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, user_id in changed:
                        key = self._key(self.member, channel)
                        count = self.mine.get(channel, {}).get(user_id, 0)
                        if count:
                            pipe.hset(key, user_id, count)
                            pipe.pexpire(key, self.ttl_ms)
                        else:
                            pipe.hdel(key, user_id)
                    await pipe.execute()
        except (redis.RedisError, OSError) as e:
            log.warning("could not write presence to redis (%s); the heartbeat retries", e)
            self._stale = True
        finally:
            self._writing = None

    async def settled(self) -> None:
        """Wait until this node's own changes are in Redis."""
        writing = self._writing
        if writing is not None:
            await asyncio.shield(writing)

    async def _beat_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("presence heartbeat failed (%s); trying again", e)

    async def _beat(self) -> None:
        """Say this member is alive and keep its tallies; write them all again when
        Redis lost them (its alive key was gone: a restart of Redis, or a pause longer
        than the ttl), and take members that are gone out of ``members``."""
        assert self.redis is not None
        members_key = f"{self.prefix}members"
        was = await self.redis.set(self._alive(self.member), 1, px=self.ttl_ms, get=True)
        rewrite, self._stale = was is None or self._stale, False
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(members_key, self.member)
            for channel, users in self.mine.items():
                key = self._key(self.member, channel)
                if rewrite:
                    pipe.delete(key)
                    pipe.hset(key, mapping=users)
                pipe.pexpire(key, self.ttl_ms)
            pipe.smembers(members_key)
            *_, members = await pipe.execute()
        flags = await self._alive_flags(members)
        gone = [m for m, alive in zip(members, flags, strict=True) if not alive]
        if gone:
            await self.redis.srem(members_key, *gone)

    async def _alive_flags(self, members: list[bytes]) -> list[bool]:
        assert self.redis is not None
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.exists(self._alive(member.decode()))
            return [bool(flag) for flag in await pipe.execute()]

    # -- reading -------------------------------------------------------------------

    async def counts(self, channel: str, user_id: str | None = None) -> list[Any]:
        """Per live member: its hash for ``channel`` (or the count of ``user_id``)."""
        assert self.redis is not None, "broker not started"
        await self.settled()
        members = [m.decode() for m in await self.redis.smembers(f"{self.prefix}members")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.exists(self._alive(member))
                key = self._key(member, channel)
                if user_id is None:
                    pipe.hgetall(key)
                else:
                    pipe.hget(key, user_id)
            replies = await pipe.execute()
        return [value for alive, value in zip(replies[::2], replies[1::2], strict=True) if alive]

    async def presence(self, channel: str) -> int:
        users: set[bytes] = set()
        for tally in await self.counts(channel):
            users.update(tally)
        return len(users)

    async def is_present(self, channel: str, user_id: str) -> bool:
        return any(int(count or 0) > 0 for count in await self.counts(channel, user_id))

    async def total(self, channel: str, user_id: str) -> int:
        return sum(int(count or 0) for count in await self.counts(channel, user_id))
