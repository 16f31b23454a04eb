"""The host's moderation: mute and unmute a user, remove a message, remove a user.

Muting and removal are kept on the user's ticket, which every check already reads:
a muted ticket cannot chat or ask; a revoked ticket cannot subscribe, replay or buy
again (the ticket id is unique per room and user). Removal keeps the money: a user
removed for abuse is not refunded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from kpay.core.auth import User
from kpay.core.errors import Conflict, NotFound
from kpay.core.realtime import cluster
from plugins.live_qa import history, rooms
from plugins.live_qa.store import TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def _ticket_holder(app: KPay, room: dict[str, Any], host: User,
                         user_id: str) -> dict[str, Any]:
    rooms.require_host(room, host)
    if room["state"] == rooms.ENDED:
        raise Conflict("the room has ended", code="room_ended")
    ticket = await rooms.ticket_of(app, room["_id"], user_id)
    if ticket is None or ticket["status"] != "active":
        raise NotFound(f"{user_id} holds no active ticket to this room", code="not_a_member")
    return ticket


async def set_muted(app: KPay, room: dict[str, Any], host: User, user_id: str,
                    muted: bool) -> dict[str, Any]:
    ticket = await _ticket_holder(app, room, host, user_id)
    if ticket.get("muted", False) == muted:
        return ticket
    updated = await app.store[TICKETS].find_one_and_update(
        {"_id": ticket["_id"]}, {"$set": {"muted": muted}},
        return_document=ReturnDocument.AFTER)
    await history.publish(app, room["_id"], "user_muted", {"user_id": user_id, "muted": muted})
    return updated


async def remove_user(app: KPay, room: dict[str, Any], host: User, user_id: str) -> int:
    """Revoke the user's ticket and end their sockets' subscriptions on every node;
    returns how many subscriptions ended on this node."""
    ticket = await _ticket_holder(app, room, host, user_id)
    await app.store[TICKETS].update_one(
        {"_id": ticket["_id"]},
        {"$set": {"status": "revoked", "revoked_at": app.clock.now()}})
    # Revoked first: a socket re-subscribing after this point is refused.
    ended = await cluster.remove_user(app, history.channel_of(room["_id"]), user_id,
                                      "removed_by_host")
    await history.publish(app, room["_id"], "user_removed", {"user_id": user_id})
    return ended


async def remove_message(app: KPay, room: dict[str, Any], host: User, seq: int) -> None:
    rooms.require_host(room, host)
    await history.remove_message(app, room["_id"], seq)
    await history.publish(app, room["_id"], "message_removed", {"seq": seq})
