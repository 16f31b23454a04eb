"""Who is on ``consult:<id>``, kept in MongoDB, and what an absence does to the meter.

The hub says who is subscribed on this node; ``on_presence`` fires when a party's
first socket joins or last socket leaves. The handler records the hub's answer at the
moment it runs (not the hook's argument), under a per-session lock, so a leave and a
quick re-join that race still end with the truth stored. What is stored is, per party,
the processes where the party has a socket (``present_on``, members as nodes.py names
them): a party is present while any has them, so the nodes of a deployment (the Redis
broker) agree on it. A process that stops removes itself; one silent for
``node_timeout_seconds`` is removed by another node.

- both present again within the grace period: nothing changes, the absence is billed;
- an absence longer than the grace period: the engine pauses the meter as of the moment
  the party left (``paused``), keeping the paid time not yet used;
- both back while paused: the meter resumes; the kept time is used first;
- a pause that lasts ``absence_end_seconds`` from the moment the party left: the
  engine ends the session (reason ``absent``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from plugins.consult_billing import sessions
from plugins.consult_billing.sessions import ACTIVE, OPEN, PAUSED

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.consult_billing.meter import BillingEngine

log = logging.getLogger("kpay.consult_billing")



def transition(doc: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The state change that the stored presence calls for, if any."""
    both = all(sessions.presence(doc).values())
    if doc["status"] == ACTIVE:
        if not both and doc.get("absent_since") is None:
            return {"absent_since": now}
        if both and doc.get("absent_since") is not None:
            return {"absent_since": None}
    if doc["status"] == PAUSED and both:
        paused_for = max(0.0, (now - doc["paused_at"]).total_seconds())
        return {"status": ACTIVE, "resumed_at": now,
                "paid_until": now + timedelta(seconds=doc["remaining_seconds"] or 0),
                "paused_at": None, "remaining_seconds": None, "absent_deadline": None,
                "absent_since": None,
                "paused_seconds": doc.get("paused_seconds", 0) + paused_for}
    return None


class PresenceTracker:
    def __init__(self, app: KPay, engine: BillingEngine) -> None:
        self.app = app
        self.engine = engine
        # One lock per session while anyone waits on it (counted, then dropped).
        self.locks: dict[str, asyncio.Lock] = {}
        self.waiting: Counter[str] = Counter()
        # Set when this process joined again under a new name: its sockets must be
        # recorded again, until one pass over them all succeeds.
        self.needs_resync = False
        self.beating: asyncio.Task | None = None

    async def changed(self, channel: str, user_id: str) -> None:
        consultation_id = channel.partition(":")[2]
        lock = self.locks.setdefault(consultation_id, asyncio.Lock())
        self.waiting[consultation_id] += 1
        try:
            async with lock:
                await self._record(channel, consultation_id, user_id)
        finally:
            self.waiting[consultation_id] -= 1
            if self.waiting[consultation_id] <= 0:
                del self.waiting[consultation_id]
                self.locks.pop(consultation_id, None)

    async def _record(self, channel: str, consultation_id: str, user_id: str) -> None:
        doc = await sessions.load(self.app, consultation_id)
        if doc is None or doc["status"] not in OPEN:
            return
        party = sessions.party_of(doc, user_id)
        if party is None:
            return
        node, field = self.engine.nodes.member, f"present_on.{party}"
        if self.app.hub.is_present(channel, user_id):
            query, change = {field: {"$ne": node}}, {"$addToSet": {field: node}}
        else:
            query, change = {field: node}, {"$pull": {field: node}}
        # rev too: a decision taken on the old presence (an accept) must be taken again.
        doc = await self.app.store[sessions.CONSULTATIONS].find_one_and_update(
            {"_id": consultation_id, "status": {"$in": list(OPEN)}, **query},
            {**change, "$inc": {"rev": 1}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            return  # this node's entry was already so, or the session ended
        await self.app.publish(channel, "presence", {
            "user_id": user_id, "party": party, "present": sessions.presence(doc)[party]})
        await self.review(doc, self.app.clock.now())

    async def review(self, doc: dict[str, Any], now: datetime) -> None:
        """Apply the state change the stored presence calls for (absent, back, resumed)."""
        for _ in range(5):
            changes = transition(doc, now)
            if changes is None:
                return
            new = await sessions.write_state(self.app, doc, changes)
            if new is not None:
                await self._after(doc, new, now)
                return
            doc = await sessions.load(self.app, doc["_id"])
            if doc is None:
                return

    async def resync(self) -> bool:
        """Record again every consult party with a socket here (after this process was
        taken as gone and joined again under a new name); True if all went through."""
        complete = True
        for channel, users in self.app.hub.present_users("consult:"):
            for user_id in users:
                try:
                    await self.changed(channel, user_id)
                except Exception:
                    log.exception("recording %s on %s again failed", user_id, channel)
                    complete = False
        return complete

    async def _after(self, old: dict[str, Any], new: dict[str, Any], now: datetime) -> None:
        if old["status"] == PAUSED:
            await self.app.publish(sessions.channel_of(new["_id"]), "resumed",
                                   {"paid_until": new["paid_until"].isoformat()})
        if new["next_charge_at"] is not None and new["next_charge_at"] <= now:
            # Back within the grace period after a minute came due: bill it now.
            await self.engine.settle(new, now)


async def forget_member(app: KPay, member: str, since: datetime) -> list[str]:
    """Take ``member`` out of every open session's presence: its sockets are gone since
    ``since``. A running session left without one of its parties is marked absent in
    the same transaction (from ``since``, never from before the meter last started), so
    no failure after it can leave the meter running. Returns the sessions touched.

    A transaction on purpose also because a process killed inside a charge leaves its
    transaction open on the database, holding that session's document (and the wallet)
    until the database drops it (60 s on MongoDB and SecantusDB). A plain write would
    block on it; a transactional one conflicts and is retried until the dead
    transaction is gone, and then every later write goes through.
    """
    collection = app.store[sessions.CONSULTATIONS]
    query = {"status": {"$in": list(OPEN)},
             "$or": [{f"present_on.{party}": member} for party in sessions.PARTIES]}

    async def pull(session: AsyncClientSession) -> list[str]:
        ids = [doc["_id"] async for doc in collection.find(query, {"_id": 1},
                                                            session=session)]
        if not ids:
            return ids
        await collection.update_many(
            {"_id": {"$in": ids}},
            {"$pull": {f"present_on.{party}": member for party in sessions.PARTIES},
             "$inc": {"rev": 1}}, session=session)
        running = collection.find({"_id": {"$in": ids}, "status": ACTIVE, "absent_since": None},
                                  session=session)
        async for doc in running:
            if not all(sessions.presence(doc).values()):
                absent = {"absent_since": max(since, running_since(doc))}
                await sessions.write_state(app, doc, absent, session=session)
        return ids

    return await app.store.transaction(pull)


def running_since(doc: dict[str, Any]) -> datetime:
    """When the meter last started: the accept, or the last resume (the request before)."""
    return max(filter(None, (doc.get("accepted_at"), doc.get("resumed_at"),
                             doc["requested_at"])))
