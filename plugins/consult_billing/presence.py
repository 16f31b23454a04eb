"""Who is on ``consult:<id>``, kept in MongoDB, and what an absence does to the meter.

The hub says who is subscribed on this node; ``on_presence`` fires when a party's
first socket joins or last socket leaves. The handler records the hub's answer at the
moment it runs (not the hook's argument), under a per-session lock, so a leave and a
quick re-join that race still end with the truth stored.

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
    both = all(doc.get("present", {}).get(p, False) for p in sessions.PARTIES)
    if doc["status"] == ACTIVE:
        if not both and doc.get("absent_since") is None:
            return {"absent_since": now}
        if both and doc.get("absent_since") is not None:
            return {"absent_since": None}
    if doc["status"] == PAUSED and both:
        paused_for = max(0.0, (now - doc["paused_at"]).total_seconds())
        return {"status": ACTIVE,
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
        present = self.app.hub.is_present(channel, user_id)
        doc = await self.app.store[sessions.CONSULTATIONS].find_one_and_update(
            {"_id": consultation_id, "status": {"$in": list(OPEN)}},
            {"$set": {f"present.{party}": present}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            return
        await self.app.publish(channel, "presence",
                               {"user_id": user_id, "party": party, "present": present})
        for _ in range(5):
            now = self.app.clock.now()
            changes = transition(doc, now)
            if changes is None:
                return
            new = await sessions.write_state(self.app, doc, changes)
            if new is not None:
                await self._after(doc, new, now)
                return
            doc = await sessions.load(self.app, consultation_id)
            if doc is None:
                return

    async def _after(self, old: dict[str, Any], new: dict[str, Any], now: datetime) -> None:
        if old["status"] == PAUSED:
            await self.app.publish(sessions.channel_of(new["_id"]), "resumed",
                                   {"paid_until": new["paid_until"].isoformat()})
        if new["next_charge_at"] is not None and new["next_charge_at"] <= now:
            # Back within the grace period after a minute came due: bill it now.
            await self.engine.settle(new, now)


async def recover(app: KPay, engine: BillingEngine) -> int:
    """After a restart: no socket survived, so nobody is present. Minutes delivered
    before the server stopped are billed; the time it was down is not (the session is
    paused as of the last sign of life, and the parties get the full absence period,
    counted from now, to come back)."""
    now = app.clock.now()
    heartbeat = await engine.last_heartbeat()
    settings = app.settings.consult_billing
    recovered = 0
    collection = app.store[sessions.CONSULTATIONS]

    async def reset_presence(session: AsyncClientSession) -> None:
        await collection.update_many({"status": {"$in": list(OPEN)}},
                                     {"$set": {"present.student": False,
                                               "present.consultant": False}},
                                     session=session)

    # In a transaction on purpose: a process killed inside a charge leaves its
    # transaction open on the database, holding that session's document (and the
    # wallet) until the database drops it (60 s on MongoDB and SecantusDB). A plain
    # write would block on it; a transactional one conflicts and is retried until the
    # dead transaction is gone, and then every later write goes through.
    await app.store.transaction(reset_presence)
    async for doc in collection.find({"status": {"$in": [ACTIVE, PAUSED]}}):
        recovered += 1
        alive_until = min(now, max(filter(None, (heartbeat, doc["updated_at"]))))
        if doc["status"] == ACTIVE:
            doc = await engine.settle(doc, alive_until)
        deadline = now + timedelta(seconds=settings.absence_end_seconds)
        if doc["status"] == ACTIVE:
            absent = doc.get("absent_since")
            since = absent if absent is not None and absent < alive_until else alive_until
            await engine.pause(doc, since, deadline)
        elif doc["status"] == PAUSED and doc["absent_deadline"] < deadline:
            await sessions.write_state(app, doc, {"absent_deadline": deadline})
    if recovered:
        log.info("consult_billing: recovered %d running consultation(s), paused until the "
                 "parties reconnect", recovered)
    return recovered
