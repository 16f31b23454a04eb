"""Ending a room: every paid question left unanswered goes back to its asker's wallet,
exactly once, and the asker is told on ``user:<id>``.

A question is claimed ``open -> refunding`` before its refund, and the refund itself
is keyed by the question, so a second end request, the sweep job on another node or
a crash and retry all refund it once. The sweep picks up ended rooms whose refunds
did not finish (``refunds_done: false``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from kpay.core.auth import User
from plugins.live_qa import rooms
from plugins.live_qa.store import QUESTIONS, ROOMS

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.live_qa")

REFUND_REASON = "room_ended"


def refund_key(question_id: str) -> str:
    # Letters and digits only, so it is also a valid WeChat out_refund_no.
    return "lqr" + question_id


async def end_room(app: KPay, room: dict[str, Any], user: User) -> tuple[dict[str, Any], int]:
    """End a live room and refund its unanswered paid questions; returns (room, refunded)."""
    ended = await rooms.mark_ended(app, room, user)
    refunded = await refund_unanswered(app, ended["_id"])
    return ended, refunded


async def refund_unanswered(app: KPay, room_id: str) -> int:
    count = 0
    cursor = app.store[QUESTIONS].find(
        {"room_id": room_id, "paid": True, "status": {"$in": ["open", "refunding"]}})
    async for question in cursor:
        if await refund_question(app, question):
            count += 1
    await app.store[ROOMS].update_one({"_id": room_id}, {"$set": {"refunds_done": True}})
    return count


async def refund_question(app: KPay, question: dict[str, Any]) -> bool:
    """Refund one unanswered paid question to the asker's wallet; True if this call
    finished it (and told the asker)."""
    store = app.store[QUESTIONS]
    claimed = await store.find_one_and_update(
        {"_id": question["_id"], "paid": True, "status": {"$in": ["open", "refunding"]}},
        {"$set": {"status": "refunding"}}, return_document=ReturnDocument.AFTER)
    if claimed is None:
        return False
    refund = await app.money.orders.refund(
        claimed["order_id"], claimed["bounty"], REFUND_REASON, to="wallet",
        key=refund_key(claimed["_id"]))
    done = await store.update_one(
        {"_id": claimed["_id"], "status": "refunding"},
        {"$set": {"status": "refunded", "refunded_at": app.clock.now(),
                  "refund_id": refund["_id"]}})
    if done.modified_count == 0:
        return False
    notice = {"room_id": claimed["room_id"], "question_id": claimed["_id"],
              "order_id": claimed["order_id"], "amount": claimed["bounty"],
              "reason": REFUND_REASON, "text": claimed["text"]}
    await app.tell_user(claimed["asker_id"], "question_refunded", notice)
    return True


async def sweep(app: KPay) -> int:
    """Periodic job: finish refunds of ended rooms (after a crash or a failed refund)."""
    total = 0
    async for room in app.store[ROOMS].find(
            {"state": rooms.ENDED, "refunds_done": False}, {"_id": 1}).limit(100):
        # One room whose refunds fail waits on the attention list (and is retried next
        # run); the other rooms' refunds go on.
        async with app.attention.isolate("live_qa.refund_sweep", f"room:{room['_id']}"):
            total += await refund_unanswered(app, room["_id"])
    return total
