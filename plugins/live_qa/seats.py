"""A room's seats, spread over shard documents so that concurrent ticket orders of one
room do not all write one document (docs/live_qa.md "Seats"; the same idea as the
balances of docs/money.md "Hot accounts").

``live_seats`` holds :data:`SHARDS` documents per room, ``<room>#0`` .. ``#31``, each
with ``sold`` and ``left`` (its share of the capacity is their sum). A ticket takes a
seat from a random shard with one left, guarded ``left >= 1`` in the update, and tries
the others when that one is empty; the ticket keeps the shard's id (``seat``) so a
released or refunded ticket gives the seat back where it came from. A capacity edit
rewrites every shard's ``left`` in the edit's transaction: it conflicts with any seat
taken meanwhile, and one of them is retried. What a room shows is the sums, one query.

Rooms made before the shards keep ``sold`` and ``seats_left`` in their own document:
they are shown from it until their first seat change, which moves the counts into
shards inside its own transaction (:func:`_shards`). Nothing runs at start-up.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne

from kpay.core.errors import Conflict, NotFound
from plugins.live_qa.store import ROOMS, SEATS

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Seat documents per room. 50 tickets at once to one room aborted ~12 transactions
#: each on one document (docs/performance.md, "Hot seller"); 32 as for balances.
SHARDS = 32
TAKE_ONE = {"$inc": {"left": -1, "sold": 1}}
GIVE_ONE = {"$inc": {"left": 1, "sold": -1}}


def shard_id(room_id: str, k: int) -> str:
    return f"{room_id}#{k}"


def spread(free: int, shards: int) -> list[int]:
    """``free`` seats over ``shards`` documents, as evenly as whole seats go."""
    return [free // shards + (1 if k < free % shards else 0) for k in range(shards)]


def new_shards(room_id: str, sold: int, free: int) -> list[dict[str, Any]]:
    # What was sold before the shards is counted on #0: tickets without a ``seat``
    # give their seat back there.
    return [{"_id": shard_id(room_id, k), "room_id": room_id, "sold": sold if k == 0 else 0,
             "left": left} for k, left in enumerate(spread(free, SHARDS))]


async def open_room(app: KPay, room_id: str, capacity: int, session: Any) -> None:
    """The seats of a new room, in the transaction that creates it."""
    await app.store[SEATS].insert_many(new_shards(room_id, 0, capacity), session=session)


async def _shards(app: KPay, room_id: str, session: Any) -> list[dict[str, Any]]:
    """The room's seat documents; a room from before the shards gets them here, in the
    caller's transaction, from the counts its own document kept (which it loses). Two
    first changes at once both write the room's document: one conflicts and is retried,
    and then finds the shards."""
    # As many as the room got when they were made (SHARDS then; a change of SHARDS is
    # for rooms made after it).
    found = await app.store[SEATS].find({"room_id": room_id}, session=session).to_list(None)
    if found:
        return found
    room = await app.store[ROOMS].find_one_and_update(
        {"_id": room_id}, {"$unset": {"sold": "", "seats_left": ""}}, session=session)
    if room is None:
        raise NotFound(f"no room {room_id}", code="room_not_found")
    sold = room.get("sold", 0)
    shards = new_shards(room_id, sold, room.get("seats_left", room["capacity"] - sold))
    await app.store[SEATS].insert_many(shards, session=session)
    return shards


async def take(app: KPay, room_id: str, session: Any) -> str | None:
    """Take one seat in the caller's transaction: the id of the shard it came from (to
    keep on the ticket), or None when no shard has a seat left."""
    with_seats = [s["_id"] for s in await _shards(app, room_id, session) if s["left"] >= 1]
    random.shuffle(with_seats)
    for shard in with_seats:
        taken = await app.store[SEATS].update_one(
            {"_id": shard, "left": {"$gte": 1}}, TAKE_ONE, session=session)
        if taken.modified_count:
            return shard
    return None


async def give_back(app: KPay, room_id: str, seat: str | None, session: Any) -> None:
    """Return a ticket's seat to its shard, in the caller's transaction (a ticket from
    before the shards has no ``seat``: #0 counts those)."""
    seat = seat or shard_id(room_id, 0)
    given = await app.store[SEATS].update_one({"_id": seat}, GIVE_ONE, session=session)
    if given.matched_count == 0:  # the room has no shards yet
        await _shards(app, room_id, session)
        await app.store[SEATS].update_one({"_id": seat}, GIVE_ONE, session=session)


async def resize(app: KPay, room_id: str, capacity: int, session: Any) -> None:
    """Make the room's seats add up to ``capacity``, in the caller's transaction: each
    shard keeps what it sold and gets an even part of the seats not sold. Refused (409
    ``capacity_below_sold``) below what is sold."""
    shards = await _shards(app, room_id, session)
    sold = sum(shard["sold"] for shard in shards)
    if sold > capacity:
        raise Conflict(f"{sold} tickets are sold; capacity cannot be lower",
                       code="capacity_below_sold", sold=sold)
    lefts = spread(capacity - sold, len(shards))
    await app.store[SEATS].bulk_write(
        [UpdateOne({"_id": shard["_id"]}, {"$set": {"left": left}})
         for shard, left in zip(shards, lefts, strict=True)], session=session)


async def fill(app: KPay, rooms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set each room's ``sold`` and ``seats_left`` to the sums of its shards, read in one
    query; a room without shards keeps what its own document says."""
    ids = [room["_id"] for room in rooms]
    sums = {row["_id"]: row async for row in await app.store[SEATS].aggregate([
        {"$match": {"room_id": {"$in": ids}}},
        {"$group": {"_id": "$room_id", "sold": {"$sum": "$sold"},
                    "left": {"$sum": "$left"}}}])}
    for room in rooms:
        found = sums.get(room["_id"])
        if found is not None:
            room.update(sold=found["sold"], seats_left=found["left"])
    return rooms
