"""Rooms: creation, edits, the scheduled -> live -> ended state machine, and who
may be in a room (the host, or a user holding an active ticket).

A room document keeps ``capacity``, ``sold`` and ``seats_left``; a ticket order takes
a seat with a guard ``seats_left >= 1`` in the update (never read-then-write), so
concurrent buyers can never oversell.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints
from pymongo import ReturnDocument

from kpay.core.access import ResourceRule
from kpay.core.auth import User
from kpay.core.errors import BadRequest, Conflict, Forbidden, NotFound
from kpay.core.ratelimit import enforce_cap
from plugins.live_qa import history
from plugins.live_qa.settings import settings_of
from plugins.live_qa.store import ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

SCHEDULED, LIVE, ENDED = "scheduled", "live", "ended"

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Fen = Annotated[int, Field(strict=True, ge=0)]


class RoomCreate(BaseModel):
    title: Title
    description: Description = ""
    starts_at: AwareDatetime | None = None
    ticket_price: Fen = 0
    question_min_price: Fen = 0
    free_questions: bool = True
    chat: bool = False
    capacity: Annotated[int, Field(strict=True, gt=0)] | None = None


class RoomUpdate(BaseModel):
    title: Title | None = None
    description: Description | None = None
    starts_at: AwareDatetime | None = None
    ticket_price: Fen | None = None
    question_min_price: Fen | None = None
    free_questions: bool | None = None
    chat: bool | None = None
    capacity: Annotated[int, Field(strict=True, gt=0)] | None = None


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def public(room: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": room["_id"], "host_id": room["host_id"], "title": room["title"],
        "description": room["description"], "starts_at": room["starts_at"],
        "ticket_price": room["ticket_price"], "question_min_price": room["question_min_price"],
        "free_questions": room["free_questions"], "chat": room["chat"],
        "capacity": room["capacity"], "sold": room["sold"], "state": room["state"],
        "answered": room.get("answered", 0), "created_at": room["created_at"],
        "started_at": room.get("started_at"), "ended_at": room.get("ended_at"),
    }


def check_limits(app: KPay, values: dict[str, Any]) -> None:
    """Limits from settings, which a static pydantic model cannot know."""
    config = settings_of(app)
    for name in ("ticket_price", "question_min_price"):
        if values.get(name) is not None and values[name] > config.max_price:
            raise BadRequest(f"{name} must be at most {config.max_price} fen",
                             code="invalid_field", field=name)
    if values.get("capacity") is not None and values["capacity"] > config.max_capacity:
        raise BadRequest(f"capacity must be at most {config.max_capacity}",
                         code="invalid_field", field="capacity")


async def create(app: KPay, host: User, request: RoomCreate) -> dict[str, Any]:
    values = request.model_dump()
    check_limits(app, values)
    limit = settings_of(app).max_open_rooms_per_host
    await enforce_cap(app.store[ROOMS],
                      {"host_id": host.id, "state": {"$in": [SCHEDULED, LIVE]}},
                      limit, "open_rooms", f"you have {limit} rooms not yet ended; end one first")
    now = app.clock.now()
    capacity = request.capacity or settings_of(app).default_capacity
    room = {
        "_id": new_id("r"), "host_id": host.id, "title": request.title,
        "description": request.description, "starts_at": request.starts_at or now,
        "ticket_price": request.ticket_price, "question_min_price": request.question_min_price,
        "free_questions": request.free_questions, "chat": request.chat,
        "capacity": capacity, "sold": 0, "seats_left": capacity, "answered": 0,
        "state": SCHEDULED, "created_at": now,
    }
    await app.store[ROOMS].insert_one(room)
    return room


async def get(app: KPay, room_id: str) -> dict[str, Any]:
    room = await app.store[ROOMS].find_one({"_id": room_id})
    if room is None:
        raise NotFound(f"no room {room_id}", code="room_not_found")
    return room


def require_host(room: dict[str, Any], user: User) -> None:
    if room["host_id"] != user.id:
        raise Forbidden("only the host of this room may do that", code="not_host")


def require_live(room: dict[str, Any]) -> None:
    if room["state"] == ENDED:
        raise Conflict("the room has ended", code="room_ended")
    if room["state"] != LIVE:
        raise Conflict("the room is not live yet", code="room_not_live")


async def update(app: KPay, room: dict[str, Any], user: User,
                 request: RoomUpdate) -> dict[str, Any]:
    require_host(room, user)
    changes = request.model_dump(exclude_none=True)
    check_limits(app, changes)
    query: dict[str, Any] = {"_id": room["_id"], "state": {"$ne": ENDED}}
    change: dict[str, Any] = {"$set": {**changes, "updated_at": app.clock.now()}}
    capacity = changes.get("capacity")
    if capacity is not None:
        # Guarded on the capacity we read and on what is sold, so a sale racing the
        # edit cannot leave seats_left out of step with capacity - sold.
        query.update(capacity=room["capacity"], sold={"$lte": capacity})
        change["$inc"] = {"seats_left": capacity - room["capacity"]}
    updated = await app.store[ROOMS].find_one_and_update(
        query, change, return_document=ReturnDocument.AFTER)
    if updated is not None:
        return updated
    fresh = await get(app, room["_id"])
    if fresh["state"] == ENDED:
        raise Conflict("an ended room cannot be edited", code="room_ended")
    if capacity is not None and fresh["sold"] > capacity:
        raise Conflict(f"{fresh['sold']} tickets are sold; capacity cannot be lower",
                       code="capacity_below_sold", sold=fresh["sold"])
    raise Conflict("the room changed meanwhile; retry", code="room_changed")


async def start(app: KPay, room: dict[str, Any], user: User) -> dict[str, Any]:
    require_host(room, user)
    now = app.clock.now()
    started = await app.store[ROOMS].find_one_and_update(
        {"_id": room["_id"], "state": SCHEDULED},
        {"$set": {"state": LIVE, "started_at": now}}, return_document=ReturnDocument.AFTER)
    if started is None:
        fresh = await get(app, room["_id"])
        if fresh["state"] == ENDED:
            raise Conflict("the room has ended", code="room_ended")
        raise Conflict("the room is already live", code="room_already_live")
    await history.publish(app, room["_id"], "room_state", {"state": LIVE, "at": now})
    return started


async def mark_ended(app: KPay, room: dict[str, Any], user: User) -> dict[str, Any]:
    """live -> ended (once). Refunds are the caller's next step (refunds.end_room)."""
    require_host(room, user)
    now = app.clock.now()
    ended = await app.store[ROOMS].find_one_and_update(
        {"_id": room["_id"], "state": LIVE},
        {"$set": {"state": ENDED, "ended_at": now, "refunds_done": False}},
        return_document=ReturnDocument.AFTER)
    if ended is None:
        fresh = await get(app, room["_id"])
        if fresh["state"] == ENDED:
            raise Conflict("the room has already ended", code="room_ended")
        raise Conflict("a room that never went live cannot end", code="room_not_live")
    await history.publish(app, room["_id"], "room_state", {"state": ENDED, "at": now})
    return ended


async def listing(app: KPay, host_id: str | None, limit: int) -> list[dict[str, Any]]:
    """A host's rooms newest first, or (no host) rooms not yet ended, soonest first."""
    rooms = app.store[ROOMS]
    if host_id is not None:
        cursor = rooms.find({"host_id": host_id}).sort("created_at", -1)
    else:
        cursor = rooms.find({"state": {"$in": [SCHEDULED, LIVE]}}).sort("starts_at", 1)
    return [public(r) async for r in cursor.limit(limit)]


# -- membership --------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """Someone allowed in a room: its host, or a user with an active ticket."""

    user_id: str
    is_host: bool
    ticket: dict[str, Any] | None

    @property
    def muted(self) -> bool:
        return bool(self.ticket and self.ticket.get("muted"))


def ticket_id(room_id: str, user_id: str) -> str:
    return f"{room_id}:{user_id}"


async def ticket_of(app: KPay, room_id: str, user_id: str) -> dict[str, Any] | None:
    return await app.store[TICKETS].find_one({"_id": ticket_id(room_id, user_id)})


async def member(app: KPay, room: dict[str, Any], user: User) -> Member | None:
    if room["host_id"] == user.id:
        return Member(user.id, True, None)
    ticket = await ticket_of(app, room["_id"], user.id)
    if ticket is None or ticket["status"] != "active":
        return None
    return Member(user.id, False, ticket)


async def require_member(app: KPay, room: dict[str, Any], user: User) -> Member:
    found = await member(app, room, user)
    if found is None:
        raise Forbidden("this needs a ticket to the room", code="no_ticket")
    return found


async def may_enter(app: KPay, user: User, room_id: str) -> bool:
    """Whether ``user`` may be in the room: the socket rule of ``room:<id>`` and the
    ``enter`` action of the resource ``room:<id>``."""
    room = await app.store[ROOMS].find_one({"_id": room_id}, {"host_id": 1})
    return room is not None and await member(app, room, user) is not None


# -- the resource room:<id> (docs/live_qa.md, "Access for other plugins") -------------


async def host_of(app: KPay, room_id: str) -> str | None:
    room = await app.store[ROOMS].find_one({"_id": room_id}, {"host_id": 1})
    return room["host_id"] if room else None


async def room_allows(app: KPay, user: User, action: str, room_id: str) -> bool:
    return await may_enter(app, user, room_id)  # "enter", the rule's one action


RESOURCE = ResourceRule("room", host_of, room_allows, actions=("enter",))
