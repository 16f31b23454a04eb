"""The Redis broker's cluster view: every node's per-channel socket tallies in Redis.

Keys (under the broker's prefix; docs/websocket.md "Presence across nodes"):

- ``presence:<channel>``: a hash user -> sockets on the channel, summed over every
  live process: what ``presence`` (HLEN), ``is_present`` and ``sockets_of`` (HGET) read,
  one command each;
- ``tally:<member>:<channel>``: one process's part of it, and ``channels:<member>``
  the channels it has a part in, so its part can be taken out when it is gone;
- ``members``: the processes (``<node_id>#<random>``, a fresh name per process, so a
  restarted node never inherits what its last life left), and ``alive:<member>``,
  set with a ttl of ``presence_ttl`` by the member's heartbeat every third of it.

A member whose ``alive`` key expired (the process died without cleaning up) is
*buried* by the next heartbeat of any node: one script subtracts its tallies from the
sums and deletes them, unless the member came back meanwhile. So a dead node drops out
of presence within ``presence_ttl`` and one heartbeat. A member that finds its own
``alive`` key gone (a pause longer than the ttl, or Redis lost its data) writes all its
tallies again; the write script adds only the difference to what Redis has of it, so
writing again never counts twice.

``tally`` only records the node's latest count; one task writes what changed, a burst
of joins in one pipeline. A read first waits for that write, so a node always sees its
own changes. The scripts name keys they compute (a member's channels): run them on
one Redis, not a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as redis

log = logging.getLogger("kpay.broker")

# KEYS: the member's tally hash for the channel, the channel's sum, the member's
# channel set. ARGV: user, the member's sockets of the user there now, channel.
# A channel the member has no socket on leaves its set, which would otherwise grow
# with every user channel the process ever served.
WRITE_SCRIPT = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], new)
  redis.call('SADD', KEYS[3], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
end
if new ~= old then
  if redis.call('HINCRBY', KEYS[2], ARGV[1], new - old) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[1])
  end
end
"""

# KEYS: the member's alive key, its channel set, the members set. ARGV: key prefix,
# member. Takes a gone member's tallies out of the sums; nothing if it is alive.
BURY_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local tally = ARGV[1] .. 'tally:' .. ARGV[2] .. ':' .. channel
  local sum = ARGV[1] .. 'presence:' .. channel
  local entries = redis.call('HGETALL', tally)
  for i = 1, #entries, 2 do
    if redis.call('HINCRBY', sum, entries[i], -tonumber(entries[i + 1])) <= 0 then
      redis.call('HDEL', sum, entries[i])
    end
  end
  redis.call('DEL', tally)
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"""


class RedisTallies:
    def __init__(self, prefix: str, ttl: float) -> None:
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl * 1000))
        self.redis: redis.Redis | None = None
        self.member = ""
        # What this member has: channel -> user -> sockets (written again if lost).
        self.mine: dict[str, dict[str, int]] = {}
        self._changed: set[tuple[str, str]] = set()
        self._writing: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._write_script: Any = None
        self._bury_script: Any = None
        # Set when a write failed: the next heartbeat writes everything again.
        self._stale = False

    def _alive(self, member: str) -> str:
        return f"{self.prefix}alive:{member}"

    def _channels(self, member: str) -> str:
        return f"{self.prefix}channels:{member}"

    def _sum(self, channel: str) -> str:
        return f"{self.prefix}presence:{channel}"

    async def start(self, client: redis.Redis, member: str) -> None:
        self.redis, self.member = client, member
        self._write_script = client.register_script(WRITE_SCRIPT)
        self._bury_script = client.register_script(BURY_SCRIPT)
        await self._beat()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_periodically())

    async def stop(self, clean: bool = True) -> None:
        """Stop the heartbeat; ``clean``: take this member out of the sums at once."""
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
                await self.redis.delete(self._alive(self.member))
                await self._bury(self.member)
            except (redis.RedisError, OSError) as e:
                log.warning("could not take this node out of presence (%s); the other "
                            "nodes do it after [realtime] presence_ttl_seconds", e)
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
        try:
            while self._changed:
                changed, self._changed = self._changed, set()
                await self._write_counts(changed)
        except (redis.RedisError, OSError) as e:
            log.warning("could not write presence to redis (%s); the heartbeat retries", e)
            # Kept for the retry: a count that fell to 0 is no longer in ``mine``, and
            # writing everything in ``mine`` again would leave the user present.
            self._changed |= changed
            self._stale = True
        finally:
            self._writing = None

    async def _write_counts(self, changed: set[tuple[str, str]]) -> None:
        assert self.redis is not None
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, user_id in changed:
                count = self.mine.get(channel, {}).get(user_id, 0)
                await self._write_script(
                    keys=[f"{self.prefix}tally:{self.member}:{channel}", self._sum(channel),
                          self._channels(self.member)],
                    args=[user_id, count, channel], client=pipe)
            await pipe.execute()

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
        """Say this member is alive (writing its tallies again if Redis had lost it),
        and bury the members that are gone."""
        assert self.redis is not None
        members_key = f"{self.prefix}members"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._alive(self.member), 1, px=self.ttl_ms, get=True)
            pipe.sadd(members_key, self.member)
            pipe.smembers(members_key)
            was, _, members = await pipe.execute()
        if was is None or self._stale:
            # Counts are absolute: writing one twice is harmless. ``_changed`` holds
            # what a failed write left (users gone meanwhile among them).
            await self._write_counts({(c, u) for c, users in self.mine.items()
                                      for u in users} | self._changed)
            self._stale = False
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.exists(self._alive(member.decode()))
            alive = await pipe.execute()
        for member, flag in zip(members, alive, strict=True):
            if not flag:
                await self._bury(member.decode())

    async def _bury(self, member: str) -> None:
        assert self.redis is not None
        await self._bury_script(
            keys=[self._alive(member), self._channels(member), f"{self.prefix}members"],
            args=[self.prefix, member])

    # -- reading -------------------------------------------------------------------

    async def presence(self, channel: str) -> int:
        assert self.redis is not None, "broker not started"
        await self.settled()
        return await self.redis.hlen(self._sum(channel))

    async def total(self, channel: str, user_id: str) -> int:
        """The user's sockets on ``channel`` summed over every live member."""
        assert self.redis is not None, "broker not started"
        await self.settled()
        return int(await self.redis.hget(self._sum(channel), user_id) or 0)

    async def is_present(self, channel: str, user_id: str) -> bool:
        return await self.total(channel, user_id) > 0
