"""A redis-server that restarts under running nodes (an operator's restart, a crash):
each node subscribes again to the channels it has sockets on and writes its presence
again (docs/websocket.md "Presence across nodes")."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time

import pytest

from kpay.core.realtime.redis_broker import RedisBroker
from kpay.testing import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed")


class RestartableRedis:
    """A redis-server of this test's own on a fixed port, so it can come back there."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "FAKETIME")}
        self.process = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None


@pytest.fixture
def restartable_redis():
    server = RestartableRedis()
    server.start()
    yield server
    if server.process is not None:
        server.kill()


async def eventually(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


@pytest.mark.gen_test(timeout=40)
async def test_a_node_hears_its_channels_and_commands_again_after_redis_restarts(
        restartable_redis):
    a = RedisBroker(restartable_redis.url, 100, 3600, presence_ttl=1.5)
    b = RedisBroker(restartable_redis.url, 100, 3600, presence_ttl=1.5)
    a.member, b.member = "a", "b"
    await a.start()
    await b.start()
    try:
        heard: list[str] = []
        commands: list[str] = []
        a.on_publication(lambda p: heard.append(p.channel))
        a.on_command(lambda name, args, origin: commands.append(name))
        await a.listen("room:1")
        a.tally("room:1", "alice", 1)
        await a.tallies.settled()
        assert await b.presence("room:1") == 1

        restartable_redis.kill()
        await asyncio.sleep(3.5)  # longer than a heartbeat and a reconnect pause
        restartable_redis.start()

        async def heard_again() -> bool:
            try:
                await b.publish("room:1", "m", {})
                await b.command("ping", {})
            except Exception:
                return False  # b's own connection is still coming back
            await asyncio.sleep(0.1)
            return bool(heard) and bool(commands)

        await eventually(heard_again)
        # The heartbeat found its alive key gone and wrote its tallies again.
        await eventually(lambda: _presence_is(b, "room:1", 1))
    finally:
        await a.stop()
        await b.stop()


async def _presence_is(broker: RedisBroker, channel: str, count: int) -> bool:
    try:
        return await broker.presence(channel) == count
    except Exception:
        return False


@pytest.mark.gen_test(timeout=30)
async def test_a_user_who_left_while_redis_refused_writes_is_not_present_forever(
        restartable_redis):
    a = RedisBroker(restartable_redis.url, 100, 3600, presence_ttl=3.0)
    a.member = "a"
    await a.start()
    try:
        a.tally("room:1", "alice", 1)
        a.tally("room:1", "bob", 1)
        await a.tallies.settled()
        assert await a.presence("room:1") == 2
        # Redis refuses writes for a moment (here: no replica; a failover, a full disk,
        # a dropped connection do the same), shorter than the presence ttl...
        await a.redis.config_set("min-replicas-to-write", 1)
        a.tally("room:1", "alice", 0)  # ...while alice's socket closes
        await a.tallies.settled()
        await a.redis.config_set("min-replicas-to-write", 0)
        # The next heartbeat writes what failed: alice is gone, bob stays.
        await eventually(lambda: _presence_is(a, "room:1", 1))
        assert not await a.is_present("room:1", "alice")
        assert await a.is_present("room:1", "bob")
    finally:
        await a.stop()


@pytest.mark.gen_test(timeout=30)
async def test_a_process_forgets_the_channels_it_has_no_socket_on_any_more(
        restartable_redis):
    """``channels:<member>`` lists what burial must take out: a channel every socket
    left is dropped from it, so it does not grow with every user channel a long-lived
    process ever served (and burial stays one short script)."""
    a = RedisBroker(restartable_redis.url, 100, 3600)
    a.member = "a"
    await a.start()
    try:
        for i in range(50):
            a.tally(f"user:u{i}", f"u{i}", 1)
        a.tally("room:1", "bob", 1)
        await a.tallies.settled()
        for i in range(50):
            a.tally(f"user:u{i}", f"u{i}", 0)
        await a.tallies.settled()
        listed = await a.redis.smembers(f"{a.prefix}channels:{a.member}")
        assert sorted(listed) == [b"room:1"]
    finally:
        await a.stop()
