"""Rooms: creation, edits, the scheduled -> live -> ended state machine, and who
may be in a room (the host, or a user holding an active ticket).

A room document keeps its ``capacity``; its seats are counted in seats.py (shard
documents, each taken with a guard ``left >= 1`` in the update, never read-then-write),
so concurrent buyers can never oversell. What a room shows (:func:`shown`) adds their
``sold``.
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
from plugins.live_qa import history, seats
from plugins.live_qa.settings import settings_of
from plugins.live_qa.store import ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

SCHEDULED, LIVE, ENDED = "scheduled", "live", "ended"

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Fen = Annotated[int, Field(strict=True, ge=0)]
#: One of ``[storefront] categories`` (checked by ``app.search.check_category``).
Category = Annotated[str, StringConstraints(max_length=16)]


class RoomCreate(BaseModel):
    title: Title
    description: Description = ""
    starts_at: AwareDatetime | None = None
    ticket_price: Fen = 0
    question_min_price: Fen = 0
    free_questions: bool = True
    chat: bool = False
    capacity: Annotated[int, Field(strict=True, gt=0)] | None = None
    category: Category | None = None


class RoomUpdate(BaseModel):
    title: Title | None = None
    description: Description | None = None
    starts_at: AwareDatetime | None = None
    ticket_price: Fen | None = None
    question_min_price: Fen | None = None
    free_questions: bool | None = None
    chat: bool | None = None
    capacity: Annotated[int, Field(strict=True, gt=0)] | None = None
    category: Category | None = None


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def public(room: dict[str, Any]) -> dict[str, Any]:
    """What anyone sees of a room whose seats were counted (:func:`shown`)."""
    return {
        "id": room["_id"], "host_id": room["host_id"], "title": room["title"],
        "description": room["description"], "starts_at": room["starts_at"],
        "ticket_price": room["ticket_price"], "question_min_price": room["question_min_price"],
        "free_questions": room["free_questions"], "chat": room["chat"],
        "capacity": room["capacity"], "sold": room["sold"], "state": room["state"],
        "answered": room.get("answered", 0), "created_at": room["created_at"],
        "started_at": room.get("started_at"), "ended_at": room.get("ended_at"),
        "category": room.get("category"),
    }


async def shown_all(app: KPay, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The public view of each room, its seats counted (one query for all)."""
    return [public(room) for room in await seats.fill(app, found)]


async def shown(app: KPay, room: dict[str, Any]) -> dict[str, Any]:
    return (await shown_all(app, [room]))[0]


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
    if values.get("category") is not None:
        values["category"] = app.search.check_category(values["category"])


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
        "capacity": capacity, "answered": 0,
        "state": SCHEDULED, "created_at": now, "category": values["category"],
    }

    async def write(session: Any) -> None:
        await app.store[ROOMS].insert_one(room, session=session)
        await seats.open_room(app, room["_id"], capacity, session)

    await app.store.transaction(write)
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

    async def write(session: Any) -> dict[str, Any]:
        updated = await app.store[ROOMS].find_one_and_update(
            {"_id": room["_id"], "state": {"$ne": ENDED}},
            {"$set": {**changes, "updated_at": app.clock.now()}},
            return_document=ReturnDocument.AFTER, session=session)
        if updated is None:
            raise Conflict("an ended room cannot be edited", code="room_ended")
        if "capacity" in changes:
            # In the edit's transaction: it writes every seat shard, so a sale racing
            # it conflicts and one of them is retried.
            await seats.resize(app, room["_id"], changes["capacity"], session)
        return updated

    return await app.store.transaction(write)


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


#: ``status`` filters of the room list: not yet ended, live now, or not yet started.
LISTED_STATES = {"open": [SCHEDULED, LIVE], "live": [LIVE], "upcoming": [SCHEDULED]}


async def listing(app: KPay, host_id: str | None, limit: int, status: str = "open",
                  category: str | None = None) -> list[dict[str, Any]]:
    """A host's rooms newest first, or (no host) rooms in ``status``
    (:data:`LISTED_STATES`) soonest first, of one category if given."""
    rooms = app.store[ROOMS]
    if host_id is not None:
        cursor = rooms.find({"host_id": host_id}).sort("created_at", -1)
    else:
        query: dict[str, Any] = {"state": {"$in": LISTED_STATES[status]}}
        if category:
            query["category"] = category
        cursor = rooms.find(query).sort("starts_at", 1)
    return await shown_all(app, await cursor.limit(limit).to_list())


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
