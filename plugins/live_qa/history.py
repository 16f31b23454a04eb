"""The room's event history: every event published on ``room:<id>`` is stored with
the seq the broker gave it, so ``GET /rooms/{id}/messages`` can page the whole room
during and after it, long after the broker's in-memory history is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from kpay.core.errors import Conflict, NotFound
from kpay.core.realtime.protocol import Publication
from plugins.live_qa.store import MESSAGES

if TYPE_CHECKING:
    from kpay.core.app import KPay


def channel_of(room_id: str) -> str:
    return f"room:{room_id}"


async def publish(app: KPay, room_id: str, type: str, data: dict[str, Any],
                  persist: bool = True) -> Publication:
    """Publish on the room's channel and (unless ``persist`` is off, as for presence)
    keep the event under its seq. The write follows the broadcast: the seq is only
    known once the broker assigned it."""
    publication = await app.publish(channel_of(room_id), type, data)
    if persist:
        await app.store[MESSAGES].insert_one({
            "_id": f"{room_id}:{publication.seq}", "room_id": room_id,
            "seq": publication.seq, "type": type, "data": data,
            "at": app.clock.now(), "removed": False,
        })
    return publication


def public(doc: dict[str, Any]) -> dict[str, Any]:
    data = doc["data"]
    if doc.get("removed"):
        # The removal is part of the history; what was said is not.
        data = {"removed": True, "from": data.get("from")}
    return {"seq": doc["seq"], "type": doc["type"], "data": data, "at": doc["at"]}


async def page(app: KPay, room_id: str, since: int, limit: int) -> tuple[list[dict], bool]:
    """Events with seq > since, oldest first, and whether more follow."""
    cursor = app.store[MESSAGES].find(
        {"room_id": room_id, "seq": {"$gt": since}}).sort("seq", 1).limit(limit + 1)
    docs = [doc async for doc in cursor]
    return [public(d) for d in docs[:limit]], len(docs) > limit


async def remove_message(app: KPay, room_id: str, seq: int) -> dict[str, Any]:
    """Mark a chat message removed (once); the caller broadcasts the removal."""
    removed = await app.store[MESSAGES].find_one_and_update(
        {"room_id": room_id, "seq": seq, "type": "message", "removed": False},
        {"$set": {"removed": True, "removed_at": app.clock.now()}},
        return_document=ReturnDocument.AFTER)
    if removed is not None:
        return removed
    existing = await app.store[MESSAGES].find_one({"room_id": room_id, "seq": seq})
    if existing is None or existing["type"] != "message":
        raise NotFound(f"no message {seq} in room {room_id}", code="message_not_found")
    raise Conflict(f"message {seq} was already removed", code="already_removed")
