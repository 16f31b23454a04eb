"""Live rooms on a seller's dashboard (hook ``analytics_sections``, docs/plugins.md;
docs/analytics.md): per room created in the range, its ticket holders (attendance) and
questions. Three queries whatever the number of tickets: the rooms, then one server-
side count per collection grouped by room."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugins.live_qa.store import QUESTIONS, ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Rooms the section lists at most (the newest).
MAX_ROOMS = 20


async def live_rooms_section(app: KPay, owner_id: str | None, start: datetime,
                             end: datetime) -> list[dict[str, Any]] | None:
    query: dict[str, Any] = {"created_at": {"$gte": start, "$lt": end}}
    if owner_id is not None:
        query["host_id"] = owner_id
    rooms = [room async for room in app.store[ROOMS].find(query, {"title": 1})
             .sort("created_at", -1).limit(MAX_ROOMS)]
    if not rooms:
        return None
    ids = [room["_id"] for room in rooms]

    async def per_room(collection: str) -> dict[str, int]:
        return {row["_id"]: row["count"] async for row in await app.store[collection].aggregate([
            {"$match": {"room_id": {"$in": ids}}},
            {"$group": {"_id": "$room_id", "count": {"$sum": 1}}}])}

    tickets, questions = await per_room(TICKETS), await per_room(QUESTIONS)
    return [{"key": "live_rooms", "title": "直播间：持票人数与提问", "unit": "count",
             "items": [{"label": room["title"], "value": tickets.get(room["_id"], 0),
                        "note": f"{questions.get(room['_id'], 0)} 个提问"} for room in rooms]}]
