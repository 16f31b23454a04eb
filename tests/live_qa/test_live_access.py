"""The resource ``room:<id>`` through ``app.access``: the host owns it; the host and
ticket holders may ``enter`` (the same check as subscribing to the room's channel)."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_room_owner_and_enter(api, kpay_app, live):
    host = await live.host("host")
    room = await live.room(host, ticket_price=0)
    await live.student("alice", room)
    await live.student("bob", room)
    await live.student("eve")
    access, resource = kpay_app.access, f"room:{room['id']}"

    assert await access.owner(resource) == "host"
    for user, allowed in [("host", True), ("alice", True), ("bob", True), ("eve", False)]:
        assert await access.allowed(user, "enter", resource) is allowed, user
    # A removed user's ticket is revoked: no longer allowed in, as on the socket.
    status, body = await api.request("DELETE", f"/api/v1/rooms/{room['id']}/members/bob",
                                     token=host)
    assert status == 200, body
    assert await access.allowed("bob", "enter", resource) is False


@pytest.mark.gen_test
async def test_unknown_rooms_and_actions_are_refused(kpay_app, live):
    room = await live.room(await live.host("host"))
    access = kpay_app.access
    assert await access.owner("room:r-missing") is None
    assert await access.allowed("host", "enter", "room:r-missing") is False
    assert await access.allowed("host", "moderate", f"room:{room['id']}") is False
