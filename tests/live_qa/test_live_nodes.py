"""A room across two nodes on one redis-server: the host's presence count includes the
students on the other node, and removing a user ends their subscription there
(docs/live_qa.md "Limits and notes", docs/websocket.md "Presence across nodes")."""

from __future__ import annotations

import uuid

import pytest

from kpay.testing import ApiClient


@pytest.fixture
def kpay_overrides(redis_url):
    return {"plugins": {"enabled": ["live_qa"]},
            "realtime": {"broker": "redis", "redis_url": redis_url,
                         "redis_prefix": f"t{uuid.uuid4().hex[:8]}:"}}


async def joined(api, token, room):
    ws = await api.socket(token)
    reply = await ws.request("sub", ch=f"room:{room['id']}")
    assert reply["ok"] is True, reply
    return ws


@pytest.mark.gen_test
async def test_room_count_and_removal_across_nodes(api, live, second_node):
    on_b = ApiClient(second_node)
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    host_ws = await joined(api, host, room)
    students = [await live.student(f"s{n}", room) for n in range(2)]
    sockets = [await joined(on_b, token, room) for token in students]
    # The students joined on node b; the host on node a sees them counted.
    while (await host_ws.event("presence"))["data"]["count"] != 3:
        pass
    # The host removes s0 through node a: s0's socket on node b is unsubscribed.
    path = f"/api/v1/rooms/{room['id']}/members/s0"
    status, body = await api.request("DELETE", path, token=host)
    assert status == 200 and body["subscriptions_ended"] == 0  # none on node a
    while (frame := await sockets[0].receive())["op"] != "unsubscribed":
        pass
    assert frame == {"op": "unsubscribed", "ch": f"room:{room['id']}",
                     "reason": "removed_by_host"}
    while (await host_ws.event("presence"))["data"]["count"] != 2:
        pass
