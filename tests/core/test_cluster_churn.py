"""Many sockets of many users joining and leaving one channel at once on two nodes: when
all are gone, no one is present anywhere, no socket is counted, and each node is
subscribed in Redis to its control channel only (docs/websocket.md "Presence across
nodes")."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from kpay.testing import ApiClient, wait_until


@pytest.fixture
def kpay_overrides(redis_url):
    return {"plugins": {"enabled": []},
            "realtime": {"broker": "redis", "redis_url": redis_url,
                         "redis_prefix": f"t{uuid.uuid4().hex[:8]}:",
                         "max_sockets_per_user": 0}}


@pytest.mark.gen_test(timeout=60)
async def test_churn_on_one_channel_leaves_nothing_behind(api, kpay_app, second_node):
    clients = [api, ApiClient(second_node)]
    token = await api.login("alice")
    rng = random.Random(7)

    async def one_socket(i: int) -> None:
        ws = await clients[i % 2].socket(token)
        await asyncio.sleep(rng.random() * 0.05)
        if rng.random() < 0.7:
            await ws.send("sub", ch="user:alice")  # no wait for the reply: close races it
        await asyncio.sleep(rng.random() * 0.05)
        if rng.random() < 0.5:
            await ws.send("unsub", ch="user:alice")
        ws.close()

    for _ in range(3):
        await asyncio.gather(*(one_socket(i) for i in range(40)))
    for node in (kpay_app, second_node):
        await wait_until(lambda node=node: not node.sockets, timeout=10)
        await wait_until(lambda node=node: node.broker.routes == 1, timeout=10)
    for node in (kpay_app, second_node):
        await node.broker.tallies.settled()
    for node in (kpay_app, second_node):
        assert not kpay_app.hub.subscribers and not second_node.hub.subscribers
        assert await node.broker.presence("user:alice") == 0
        assert await node.broker.sockets_of("alice") == 0
        pubsub = await node.broker.redis.pubsub_numsub(node.broker.route("user:alice"))
        assert pubsub[0][1] == 0
