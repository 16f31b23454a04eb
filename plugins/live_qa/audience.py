"""live_qa's part of the audience (docs/audience.md): the rule 参加过直播 (a paid ticket
to one of the host's rooms)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.audience import PLATFORM
from kpay.core.audience.rules import AudienceRule
from kpay.core.audience.students import MAX_MEMBERS
from plugins.live_qa.store import ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

MAX_ROOMS = 200


class AttendedRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room_id: str = Field(min_length=1, max_length=64, title="直播间")


async def attended_room(app: KPay, owner: str, params: AttendedRoom) -> set[str]:
    hosted = {} if owner == PLATFORM else {"host_id": owner}
    room = await app.store[ROOMS].find_one({"_id": params.room_id, **hosted}, {"_id": 1})
    if room is None:
        return set()
    cursor = app.store[TICKETS].find({"room_id": room["_id"], "status": "active"},
                                     {"user_id": 1}).limit(MAX_MEMBERS)
    return {doc["user_id"] async for doc in cursor}


async def room_choices(app: KPay, owner: str) -> dict[str, list[dict[str, str]]]:
    hosted = {} if owner == PLATFORM else {"host_id": owner}
    cursor = app.store[ROOMS].find(hosted, {"title": 1}).sort("created_at", -1).limit(MAX_ROOMS)
    return {"room_id": [{"value": doc["_id"], "label": doc["title"]} async for doc in cursor]}


RULES = [AudienceRule("attended_room", "参加过直播", AttendedRoom, attended_room,
                      room_choices)]
