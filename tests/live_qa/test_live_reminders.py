"""The room-starting reminder: within 15 minutes of a scheduled room's start, the
live_qa.room_reminders job tells each ticket holder once (kind room_starting, worded in
Chinese with the Beijing start time; docs/live_qa.md "Notifications")."""

from __future__ import annotations

import pytest


async def told(api, token):
    status, body = await api.get("/api/v1/notifications", token)
    assert status == 200, body
    return [n for n in body["notifications"] if n["kind"] == "room_starting"]


@pytest.mark.kpay_now("2026-03-02T10:00:00+08:00")
@pytest.mark.gen_test
async def test_each_ticket_holder_is_told_once_when_the_room_is_near(api, live, clock):
    host = await live.host()
    room = await live.room(host, start=False, starts_at="2026-03-02T10:20:00+08:00")
    alice = await live.student("alice", room, funds=5000)
    bob = await live.student("bob", room, funds=5000)
    carol = await live.student("carol", funds=5000)  # no ticket

    await clock.advance(60)  # 19 minutes before: not yet
    assert await told(api, alice) == []
    await clock.advance(300)  # 14 minutes before
    [notice] = await told(api, alice)
    assert notice["title"] == "直播即将开始"
    assert notice["body"] == "「如何准备面试」将于 10:20 开始，记得准时进入直播间。"
    assert notice["link"] == f"/static/room.html?id={room['id']}"
    assert len(await told(api, bob)) == 1
    assert await told(api, carol) == []

    dave = await live.student("dave", room, funds=5000)  # bought after the reminder
    for _ in range(3):
        await clock.advance(120)
    assert len(await told(api, alice)) == 1
    assert len(await told(api, bob)) == 1
    assert len(await told(api, dave)) == 1


@pytest.mark.kpay_now("2026-03-02T10:00:00+08:00")
@pytest.mark.gen_test
async def test_live_and_far_rooms_are_not_reminded(api, live, clock):
    host = await live.host()
    started = await live.room(host, title="已开播")
    later = await live.room(host, start=False, starts_at="2026-03-02T12:00:00+08:00")
    alice = await live.student("alice", started, funds=5000)
    await live.buy_ticket(alice, later)
    await clock.advance(60)
    assert await told(api, alice) == []
