"""Two kpay nodes on one Redis: a publication on one reaches sockets on the other."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from kpay.core.realtime.redis_broker import RedisBroker
from kpay.testing import ApiClient


@pytest.fixture
def kpay_overrides(redis_url):
    return {"plugins": {"enabled": []},
            "realtime": {"broker": "redis", "redis_url": redis_url,
                         "redis_prefix": f"t{uuid.uuid4().hex[:8]}:"}}


@pytest.mark.gen_test
async def test_publish_on_one_node_reaches_a_socket_on_the_other(api, kpay_app, second_node):
    assert isinstance(kpay_app.broker, RedisBroker)
    on_b = ApiClient(second_node)
    token = await api.login("alice")
    ws_a, ws_b = await api.socket(token), await on_b.socket(token)
    await ws_a.request("sub", ch="user:alice")
    await ws_b.request("sub", ch="user:alice")
    published = [await kpay_app.publish("user:alice", "n", {"i": i}) for i in range(3)]
    published.append(await second_node.publish("user:alice", "n", {"i": 3}))
    for ws in (ws_a, ws_b):
        events = [await ws.event("n") for _ in range(4)]
        assert [e["seq"] for e in events] == [p.seq for p in published]
        assert [e["data"]["i"] for e in events] == [0, 1, 2, 3]
    # One seq counter for the deployment: node B continued node A's numbers.
    assert published[3].seq == published[2].seq + 1


@pytest.mark.gen_test
async def test_resume_on_another_node(api, kpay_app, second_node):
    token = await api.login("alice")
    published = [await kpay_app.publish("user:alice", "n", {"i": i}) for i in range(4)]
    ws = await ApiClient(second_node).socket(token)
    reply = await ws.request("sub", ch="user:alice", since=published[0].seq)
    assert reply["recovered"] is True
    assert [(await ws.event("n"))["data"]["i"] for _ in range(3)] == [1, 2, 3]


@pytest.mark.gen_test
async def test_resume_while_events_keep_coming_loses_and_repeats_nothing(api, kpay_app,
                                                                         second_node):
    token = await api.login("alice")
    first = await kpay_app.publish("user:alice", "n", {"i": -1})
    ws = await ApiClient(second_node).socket(token)

    async def publish_during_resume():
        for i in range(30):
            await kpay_app.publish("user:alice", "n", {"i": i})
            await asyncio.sleep(0)

    publishing = asyncio.ensure_future(publish_during_resume())
    reply = await ws.request("sub", ch="user:alice", since=first.seq)
    await publishing
    assert reply["recovered"] is True
    seqs = [(await ws.event("n"))["seq"] for _ in range(30)]
    assert seqs == list(range(first.seq + 1, first.seq + 31))
    await kpay_app.publish("user:alice", "end", {})
    assert (await ws.event())["type"] == "end"


@pytest.mark.gen_test
async def test_an_unreachable_redis_stops_start_up_with_a_clear_message():
    broker = RedisBroker("redis://127.0.0.1:1/0", 10, 60)
    with pytest.raises(RuntimeError, match=re.escape("cannot reach redis://127.0.0.1:1/0")):
        await broker.start()


@pytest.mark.gen_test
async def test_the_start_up_error_does_not_show_the_redis_password():
    broker = RedisBroker("redis://kpay:s3cretPassw0rd@127.0.0.1:1/0", 10, 60)
    with pytest.raises(RuntimeError) as raised:
        await broker.start()
    assert "s3cretPassw0rd" not in str(raised.value)
    assert "cannot reach redis://kpay:[redacted]@127.0.0.1:1/0" in str(raised.value)
