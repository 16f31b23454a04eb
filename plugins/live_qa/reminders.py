"""The room-starting reminder: a periodic job (``live_qa.room_reminders``) tells each
ticket holder of a scheduled room, once, when it starts within 15 minutes (``app.
tell_user`` kind ``room_starting``; docs/live_qa.md "Notifications").

Once per ticket: the ticket is marked ``reminded_at`` by a guarded update before the
user is told, so two nodes (or two runs) never tell the same holder twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from plugins.live_qa.rooms import SCHEDULED
from plugins.live_qa.store import ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

JOB_SECONDS = 60
AHEAD = timedelta(minutes=15)
# Rooms and tickets handled per run; the next run (a minute later) takes the rest.
MAX_ROOMS, MAX_TICKETS = 100, 5000


async def remind(app: KPay) -> int:
    """Tell the holders of rooms starting within 15 minutes; how many were told."""
    now = app.clock.now()
    rooms = app.store[ROOMS].find(
        {"state": SCHEDULED, "starts_at": {"$gt": now, "$lte": now + AHEAD}},
        {"title": 1, "starts_at": 1}).limit(MAX_ROOMS)
    told = 0
    async for room in rooms:
        tickets = app.store[TICKETS].find(
            {"room_id": room["_id"], "status": "active", "reminded_at": None},
            {"user_id": 1}).limit(MAX_TICKETS)
        async for ticket in tickets:
            claimed = await app.store[TICKETS].update_one(
                {"_id": ticket["_id"], "reminded_at": None}, {"$set": {"reminded_at": now}})
            if claimed.modified_count:
                await app.tell_user(ticket["user_id"], "room_starting", {
                    "room_id": room["_id"], "title": room.get("title", ""),
                    "starts_at": room["starts_at"].isoformat()})
                told += 1
    return told


def describe(app: KPay, data: dict[str, Any]) -> dict[str, Any]:
    starts = datetime.fromisoformat(data["starts_at"])
    if starts.tzinfo is None:
        starts = starts.replace(tzinfo=UTC)
    at = starts.astimezone(ZoneInfo(app.settings.server.timezone)).strftime("%H:%M")
    title = f"「{data['title']}」" if data.get("title") else "你购票的直播"
    return {"title": "直播即将开始", "body": f"{title}将于 {at} 开始，记得准时进入直播间。",
            "link": f"/static/room.html?id={data['room_id']}"}
