"""The cluster view with two nodes on one redis-server: presence and sockets per user
counted across nodes, a node that dies drops out, removal and standing checks sent from
the other node, and a node hears only the channels it has sockets on
(docs/websocket.md "Presence across nodes")."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kpay.core.realtime import cluster
from kpay.core.realtime.broker import SOCKETS
from kpay.core.realtime.protocol import Publication
from kpay.core.realtime.redis_broker import RedisBroker
from kpay.testing import ApiClient, run_kpay


@pytest.fixture
def prefix():
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def nodes(io_loop, redis_url, prefix):
    """``make(name, presence_ttl=)`` -> a started Redis broker of the deployment."""
    started: list[RedisBroker] = []

    async def make(name, presence_ttl=15.0):
        broker = RedisBroker(redis_url, 100, 3600, prefix=prefix, presence_ttl=presence_ttl)
        broker.member = name
        await broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        io_loop.run_sync(broker.stop)


async def settled(*nodes):
    for node in nodes:
        await node.tallies.settled()


async def eventually(check, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


@pytest.mark.gen_test
async def test_presence_and_sockets_are_counted_across_nodes(nodes):
    a, b = await nodes("a"), await nodes("b")
    a.tally("room:x", "alice", 1)
    b.tally("room:x", "alice", 2)
    b.tally("room:x", "bob", 1)
    a.tally(SOCKETS, "alice", 2)
    b.tally(SOCKETS, "alice", 3)
    # A node's read waits for its own writes; another node's arrive a moment later.
    await settled(a, b)
    for node in (a, b):
        # Distinct users, whichever node asks; sockets summed.
        assert await node.presence("room:x") == 2
        assert await node.sockets_of("alice") == 5
    b.tally("room:x", "alice", 0)
    await settled(b)
    assert await a.is_present("room:x", "alice")  # still on node a
    a.tally("room:x", "alice", 0)
    await settled(a)
    assert not await b.is_present("room:x", "alice")
    assert await a.presence("room:x") == 1


@pytest.mark.gen_test(timeout=20)
async def test_a_node_that_dies_drops_out_of_presence_after_its_ttl(nodes):
    a = await nodes("a", presence_ttl=1.0)
    dying = await nodes("dying", presence_ttl=1.0)
    leaving = await nodes("leaving", presence_ttl=1.0)
    dying.tally("room:y", "bob", 1)
    leaving.tally("room:y", "carol", 1)
    await settled(dying, leaving)
    await asyncio.sleep(1.5)  # past one ttl: the heartbeats keep both present
    assert await a.presence("room:y") == 2
    await leaving.stop()  # clean: out at once
    assert await a.presence("room:y") == 1
    await dying.stop(clean=False)  # no goodbye, no heartbeat: out within the ttl
    assert await a.is_present("room:y", "bob")
    await eventually(lambda: _absent(a, "room:y", "bob"), timeout=3.0)
    assert await a.presence("room:y") == 0
    # The next heartbeat takes the dead members out of the member list.
    await eventually(lambda: _members_are(a, [a.member]), timeout=3.0)


async def _absent(broker, channel, user_id):
    return not await broker.is_present(channel, user_id)


async def _members_are(broker, members):
    found = await broker.redis.smembers(f"{broker.prefix}members")
    return sorted(m.decode() for m in found) == sorted(members)


@pytest.mark.gen_test
async def test_a_node_hears_only_the_channels_it_listens_to(nodes):
    a, b = await nodes("a"), await nodes("b")
    heard = {a.member: [], b.member: []}
    for node in (a, b):
        node.on_publication(lambda p, seen=heard[node.member]: seen.append(p.channel))
    await a.listen("room:1")
    await b.listen("room:2")
    for _ in range(3):
        await a.publish("room:1", "m", {})
        await a.publish("room:2", "m", {})
        await b.publish("room:3", "m", {})  # nobody's
    await eventually(_lengths(heard, 3))
    await asyncio.sleep(0.1)
    assert heard[a.member] == ["room:1"] * 3
    assert heard[b.member] == ["room:2"] * 3
    # Once b's hub no longer wants room:2, b stops hearing it.
    b.unlisten("room:2")
    await eventually(lambda: _routes_are(b, 1))
    await a.publish("room:2", "m", {})
    await a.publish("room:1", "m", {})
    await eventually(_lengths({a.member: heard[a.member]}, 4))
    await asyncio.sleep(0.1)
    assert heard[b.member] == ["room:2"] * 3


@pytest.mark.gen_test
async def test_a_socket_joining_as_the_last_one_leaves_keeps_the_channel(nodes):
    a, b = await nodes("a"), await nodes("b")
    heard = []
    b.on_publication(heard.append)
    wanted: set[str] = set()
    b.listening = wanted.__contains__  # the hub: channels with a socket on them
    await b.listen("room:r")
    wanted.add("room:r")
    wanted.discard("room:r")
    b.unlisten("room:r")  # the last socket left...
    await b.listen("room:r")  # ...and another joined before the UNSUBSCRIBE went out
    wanted.add("room:r")
    await asyncio.sleep(0.1)
    await a.publish("room:r", "m", {})
    await eventually(lambda: _true(len(heard) == 1))
    assert b.routes == 2  # control and room:r


async def _true(value):
    return value


def _lengths(heard, count):
    async def check():
        return all(len(seen) >= count for seen in heard.values())
    return check


async def _routes_are(broker, count):
    return broker.routes == count


@pytest.mark.gen_test
async def test_commands_reach_every_node_with_their_sender(nodes):
    a, b = await nodes("a"), await nodes("b")
    got = {a.member: [], b.member: []}
    for node in (a, b):
        node.on_command(lambda name, args, origin, seen=got[node.member]:
                        seen.append((name, args, origin)))
    await a.command("remove_user", {"channel": "room:z", "user_id": "bob", "reason": "r"})
    await eventually(_lengths(got, 1))
    for seen in got.values():
        assert seen == [("remove_user", {"channel": "room:z", "user_id": "bob", "reason": "r"},
                         a.member)]


# -- two kpay apps on one redis-server -------------------------------------------------


@pytest.fixture
def kpay_overrides(redis_url, prefix):
    # A standing poll slower than any wait below: what closes a socket in these tests
    # is the control message, not watch_standing.
    return {"plugins": {"enabled": []},
            "auth": {"standing_cache_seconds": 120},
            "realtime": {"broker": "redis", "redis_url": redis_url, "redis_prefix": prefix,
                         "max_sockets_per_user": 2}}


@pytest.mark.gen_test
async def test_online_and_presence_seen_from_the_other_node(api, kpay_app, second_node):
    token = await api.login("alice")
    ws = await api.socket(token)
    await ws.request("sub", ch="user:alice")
    # Node a writes its tally a moment after the reply.
    await eventually(lambda: second_node.broker.is_present("user:alice", "alice"))
    root = await ApiClient(second_node).login("root", "admin")
    status, detail = await ApiClient(second_node).get("/api/v1/admin/users/alice", root)
    assert status == 200 and detail["user"]["online"] is True
    assert await second_node.broker.presence("user:alice") == 1
    ws.close()
    await eventually(lambda: _absent(second_node.broker, "user:alice", "alice"))
    status, detail = await ApiClient(second_node).get("/api/v1/admin/users/alice", root)
    assert detail["user"]["online"] is False


@pytest.mark.gen_test
async def test_remove_user_from_the_other_node(api, kpay_app, second_node):
    token = await api.login("alice")
    ws = await api.socket(token)
    await ws.request("sub", ch="user:alice")
    ended = await cluster.remove_user(second_node, "user:alice", "alice", "removed_by_host")
    assert ended == 0  # none on the node that asked
    frame = await ws.receive()
    assert frame == {"op": "unsubscribed", "ch": "user:alice", "reason": "removed_by_host"}
    await eventually(lambda: _absent(second_node.broker, "user:alice", "alice"))


@pytest.mark.gen_test
async def test_blocking_on_one_node_closes_the_page_on_the_other_at_once(api, kpay_app,
                                                                          second_node):
    token = await api.login("alice")
    ws = await api.socket(token)
    await ws.request("sub", ch="user:alice")
    root = await ApiClient(second_node).login("root", "admin")
    status, _ = await ApiClient(second_node).post("/api/v1/admin/users/alice/block",
                                                  {"reason": "abuse"}, root)
    assert status == 200
    # Well inside the 120 s standing poll: the other node was told.
    assert await ws.closed(timeout=3) == 4401 and ws.close_reason == "account_blocked"


@pytest.mark.gen_test(timeout=60)
async def test_blocking_with_the_command_line_closes_the_page_at_once(api, kpay_app,
                                                                       tmp_path):
    token = await api.login("dave")
    ws = await api.socket(token)
    await ws.request("sub", ch="user:dave")
    done = await run_kpay(kpay_app, tmp_path, "user", "block", "dave", "--reason", "spam")
    assert done.returncode == 0, done.stderr
    # The command line took seconds to start; the socket closes well inside the poll.
    assert await ws.closed(timeout=5) == 4401 and ws.close_reason == "account_blocked"


@pytest.mark.gen_test
async def test_sockets_per_user_are_capped_across_nodes(api, kpay_app, second_node):
    token = await api.login("alice")
    on_b = ApiClient(second_node)
    first, second = await api.socket(token), await on_b.socket(token)
    assert (await first.request("ping"))["ok"] and (await second.request("ping"))["ok"]
    third = await on_b.socket(token)  # the third across both nodes: over the cap of 2
    assert await third.closed() == 4429 and third.close_reason == "too_many_sockets"
    # Once node b wrote that the refused socket is gone, the sum is back at 2.
    await eventually(lambda: _sockets_are(kpay_app.broker, "alice", 2))


async def _sockets_are(broker, user_id, count):
    return await broker.sockets_of(user_id) == count


@pytest.mark.gen_test
async def test_a_node_without_sockets_on_a_channel_receives_none_of_it(api, kpay_app,
                                                                       second_node):
    heard: list[Publication] = []
    deliver = second_node.hub.deliver
    second_node.broker.on_publication(lambda p: heard.append(p) or deliver(p))
    token = await api.login("alice")
    ws = await api.socket(token)
    await ws.request("sub", ch="user:alice")
    for i in range(5):
        await second_node.publish("user:alice", "n", {"i": i})
    assert [(await ws.event("n"))["data"]["i"] for _ in range(5)] == list(range(5))
    assert heard == []
    # Once a socket there subscribes, that node hears the channel too.
    ws_b = await ApiClient(second_node).socket(token)
    await ws_b.request("sub", ch="user:alice")
    await kpay_app.publish("user:alice", "n", {"i": 5})
    assert (await ws_b.event("n"))["data"]["i"] == 5
    assert [p.channel for p in heard] == ["user:alice"]
