"""Who is on ``consult:<id>``, kept in MongoDB, and what an absence does to the meter.

The hub says who is subscribed on this node; ``on_presence`` fires when a party's
first socket joins or last socket leaves. The handler records the hub's answer at the
moment it runs (not the hook's argument), under a per-session lock, so a leave and a
quick re-join that race still end with the truth stored. What is stored is, per party,
the nodes where the party has a socket (``present_on``): a party is present while any
node has them, so a deployment of several nodes (the Redis broker) agrees on it. A
node that stops forgets its entries; one that stops sweeping for
``node_timeout_seconds`` is taken as dead and another node forgets them for it.

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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from plugins.consult_billing import sessions
from plugins.consult_billing.sessions import ACTIVE, OPEN, PAUSED

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.consult_billing.meter import BillingEngine

log = logging.getLogger("kpay.consult_billing")

# Each node's last sign of life: {_id: node id, seen_at: wall time, clock_at}.
NODES = "consult_nodes"


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
        node, field = self.app.node_id, f"present_on.{party}"
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

    async def _after(self, old: dict[str, Any], new: dict[str, Any], now: datetime) -> None:
        if old["status"] == PAUSED:
            await self.app.publish(sessions.channel_of(new["_id"]), "resumed",
                                   {"paid_until": new["paid_until"].isoformat()})
        if new["next_charge_at"] is not None and new["next_charge_at"] <= now:
            # Back within the grace period after a minute came due: bill it now.
            await self.engine.settle(new, now)


async def forget_node(app: KPay, node_id: str) -> list[str]:
    """Take ``node_id`` out of every open session's presence: its sockets are gone.
    Returns the sessions it was in.

    In a transaction on purpose: a process killed inside a charge leaves its
    transaction open on the database, holding that session's document (and the
    wallet) until the database drops it (60 s on MongoDB and SecantusDB). A plain
    write would block on it; a transactional one conflicts and is retried until the
    dead transaction is gone, and then every later write goes through.
    """
    collection = app.store[sessions.CONSULTATIONS]
    query = {"status": {"$in": list(OPEN)},
             "$or": [{f"present_on.{party}": node_id} for party in sessions.PARTIES]}

    async def pull(session: AsyncClientSession) -> list[str]:
        ids = [doc["_id"] async for doc in collection.find(query, {"_id": 1},
                                                            session=session)]
        if ids:
            await collection.update_many(
                {"_id": {"$in": ids}},
                {"$pull": {f"present_on.{party}": node_id for party in sessions.PARTIES},
                 "$inc": {"rev": 1}}, session=session)
        return ids

    return await app.store.transaction(pull)


async def leave(app: KPay, tracker: PresenceTracker, node_id: str, since: datetime) -> int:
    """A node stopped (``since``: its last sign of life): forget its sockets and start
    the absence of every party that has none left anywhere. Returns the sessions
    touched."""
    ids = await forget_node(app, node_id)
    for consultation_id in ids:
        doc = await sessions.load(app, consultation_id)
        if doc is not None and doc["status"] in OPEN:
            # Never absent from before the session began (a node's last beat may be older).
            began = doc.get("accepted_at") or doc["requested_at"]
            await tracker.review(doc, max(since, began))
    return len(ids)


async def heartbeat(app: KPay, now: datetime) -> None:
    """This node is alive (wall time, which dev clock jumps do not move; ``clock_at`` is
    the billing time of the same moment)."""
    await app.store[NODES].update_one(
        {"_id": app.node_id},
        {"$set": {"seen_at": datetime.now(UTC), "clock_at": now}}, upsert=True)


async def keep_beating(app: KPay) -> None:
    """This node's heartbeat, every sixth of ``node_timeout_seconds``, until it stops."""
    interval = app.settings.consult_billing.node_timeout_seconds / 6
    while True:
        await asyncio.sleep(interval)
        try:
            await heartbeat(app, app.clock.now())
        except Exception:
            # The database may be away for a while; the next beat tries again.
            log.exception("consult_billing: node heartbeat failed")


async def forget_dead_nodes(app: KPay, tracker: PresenceTracker) -> int:
    """Forget the sockets of nodes that stopped sweeping ``node_timeout_seconds`` ago
    without saying goodbye (killed, or cut off); their parties are absent since."""
    timeout = timedelta(seconds=app.settings.consult_billing.node_timeout_seconds)
    dead = app.store[NODES].find({"_id": {"$ne": app.node_id},
                                  "seen_at": {"$lt": datetime.now(UTC) - timeout}})
    forgotten = 0
    async for node in dead:
        touched = await leave(app, tracker, node["_id"], node["clock_at"])
        # Guarded on seen_at: a node that came back in the meantime keeps its record.
        await app.store[NODES].delete_one({"_id": node["_id"], "seen_at": node["seen_at"]})
        log.warning("consult_billing: node %s silent since %s, taken as gone (%d "
                    "consultation(s) touched)", node["_id"], node["seen_at"], touched)
        forgotten += 1
    return forgotten


async def recover(app: KPay, engine: BillingEngine) -> int:
    """After a restart: none of this node's sockets survived. Minutes delivered before
    the server stopped are billed; the time it was down is not: a session missing a
    party now is paused as of the last sign of life, and the parties get the full
    absence period, counted from now, to come back. Sessions whose parties are both on
    other nodes go on."""
    now = app.clock.now()
    last_sweep = await engine.last_heartbeat()
    settings = app.settings.consult_billing
    recovered = 0
    await forget_node(app, app.node_id)
    await heartbeat(app, now)
    collection = app.store[sessions.CONSULTATIONS]
    async for doc in collection.find({"status": {"$in": [ACTIVE, PAUSED]}}):
        if all(sessions.presence(doc).values()):
            continue
        recovered += 1
        alive_until = min(now, max(filter(None, (last_sweep, doc["updated_at"]))))
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
