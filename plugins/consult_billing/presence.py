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

    async def resync(self) -> None:
        """Record again every consult party with a socket here (after this process was
        taken as gone and joined again under a new name)."""
        for channel, users in self.app.hub.present_users("consult:"):
            for user_id in users:
                await self.changed(channel, user_id)

    async def _after(self, old: dict[str, Any], new: dict[str, Any], now: datetime) -> None:
        if old["status"] == PAUSED:
            await self.app.publish(sessions.channel_of(new["_id"]), "resumed",
                                   {"paid_until": new["paid_until"].isoformat()})
        if new["next_charge_at"] is not None and new["next_charge_at"] <= now:
            # Back within the grace period after a minute came due: bill it now.
            await self.engine.settle(new, now)


async def forget_member(app: KPay, member: str) -> list[str]:
    """Take ``member`` out of every open session's presence: its sockets are gone.
    Returns the sessions it was in.

    In a transaction on purpose: a process killed inside a charge leaves its
    transaction open on the database, holding that session's document (and the
    wallet) until the database drops it (60 s on MongoDB and SecantusDB). A plain
    write would block on it; a transactional one conflicts and is retried until the
    dead transaction is gone, and then every later write goes through.
    """
    collection = app.store[sessions.CONSULTATIONS]
    query = {"status": {"$in": list(OPEN)},
             "$or": [{f"present_on.{party}": member} for party in sessions.PARTIES]}

    async def pull(session: AsyncClientSession) -> list[str]:
        ids = [doc["_id"] async for doc in collection.find(query, {"_id": 1},
                                                            session=session)]
        if ids:
            await collection.update_many(
                {"_id": {"$in": ids}},
                {"$pull": {f"present_on.{party}": member for party in sessions.PARTIES},
                 "$inc": {"rev": 1}}, session=session)
        return ids

    return await app.store.transaction(pull)


def running_since(doc: dict[str, Any]) -> datetime:
    """When the meter last started: the accept, or the last resume (the request before)."""
    return max(filter(None, (doc.get("accepted_at"), doc.get("resumed_at"),
                             doc["requested_at"])))


async def leave(app: KPay, tracker: PresenceTracker, member: str, since: datetime) -> int:
    """A process stopped (``since``: its last sign of life): forget its sockets and start
    the absence of every party that has none left anywhere. Returns the sessions
    touched."""
    ids = await forget_member(app, member)
    for consultation_id in ids:
        doc = await sessions.load(app, consultation_id)
        if doc is not None and doc["status"] in OPEN:
            # Never absent from before the meter last started (a last beat may be older).
            await tracker.review(doc, max(since, running_since(doc)))
    return len(ids)


async def keep_beating(app: KPay, tracker: PresenceTracker) -> None:
    """This process's heartbeat until it stops (a task, not a job: a node with the
    scheduler off beats too). Taken as gone while alive: join again, re-record."""
    settings = app.settings.consult_billing
    interval = min(settings.engine_interval_seconds, settings.node_timeout_seconds / 6)
    nodes = tracker.engine.nodes
    while True:
        await asyncio.sleep(interval)
        try:
            now = app.clock.now()
            if not await nodes.beat(now):
                log.warning("consult_billing: this node (%s) was taken as gone; joining "
                            "again and recording its sockets", nodes.member)
                await nodes.rejoin(now)
                await tracker.resync()
        except Exception:
            # The database may be away for a while; the next beat tries again.
            log.exception("consult_billing: node heartbeat failed")


async def forget_silent_members(app: KPay, tracker: PresenceTracker) -> int:
    """Forget the sockets of processes silent for ``node_timeout_seconds`` (killed, or
    cut off); their parties are absent since their last beat."""
    nodes = tracker.engine.nodes
    forgotten = 0
    for record in await nodes.silent():
        if not await nodes.claim(record):
            continue  # it beat since: alive after all
        touched = await leave(app, tracker, record["_id"], record["clock_at"])
        await nodes.drop(record["_id"])
        log.warning("consult_billing: %s silent since %s, taken as gone (%d "
                    "consultation(s) touched)", record["_id"], record["seen_at"], touched)
        forgotten += 1
    return forgotten


async def recover(app: KPay, engine: BillingEngine, tracker: PresenceTracker) -> int:
    """At start. An earlier process of this node (killed) left its sockets recorded:
    minutes delivered before it stopped are billed, the time it was down is not (its
    sessions missing a party are paused as of its last beat, and the parties get the
    full absence period, counted from now, to come back). Then processes of other nodes
    silent past the timeout are forgotten. Sessions of live nodes are not touched."""
    now = app.clock.now()
    settings = app.settings.consult_billing
    await engine.nodes.join(now)
    recovered = 0
    for record in await engine.nodes.earlier_selves():
        for consultation_id in await forget_member(app, record["_id"]):
            doc = await sessions.load(app, consultation_id)
            if (doc is None or doc["status"] not in (ACTIVE, PAUSED)
                    or all(sessions.presence(doc).values())):
                continue
            recovered += 1
            alive_until = min(now, max(record["clock_at"], running_since(doc)))
            await pause_for_restart(app, engine, doc, alive_until, now + timedelta(
                seconds=settings.absence_end_seconds))
        await engine.nodes.drop(record["_id"])
    await forget_silent_members(app, tracker)
    # A crash between forgetting a process and marking the absence: mark it now.
    async for doc in app.store[sessions.CONSULTATIONS].find(
            {"status": ACTIVE, "absent_since": None}):
        if not all(sessions.presence(doc).values()):
            await tracker.review(doc, now)
    if recovered:
        log.info("consult_billing: recovered %d running consultation(s), paused until the "
                 "parties reconnect", recovered)
    return recovered


async def pause_for_restart(app: KPay, engine: BillingEngine, doc: dict[str, Any],
                            alive_until: datetime, deadline: datetime) -> None:
    """Bill what came due until ``alive_until``, then pause as of then (or as of an
    earlier absence), ending at ``deadline`` unless the parties come back."""
    if doc["status"] == ACTIVE:
        doc = await engine.settle(doc, alive_until)
    if doc["status"] == ACTIVE:
        absent = doc.get("absent_since")
        since = absent if absent is not None and absent < alive_until else alive_until
        await engine.pause(doc, since, deadline)
    elif doc["status"] == PAUSED and doc["absent_deadline"] < deadline:
        await sessions.write_state(app, doc, {"absent_deadline": deadline})
