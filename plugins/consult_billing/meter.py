"""The billing engine: one periodic sweep that bills every session that is due.

The sweep finds open sessions whose ``next_charge_at`` has come (an index on
``status, next_charge_at``). Their due minutes are charged in batches, many sessions
per MongoDB transaction; then each session with something else due is settled on its
own, at most ``engine_concurrency`` at once. Settling a session repeats one decision
until nothing is due: charge the next minute, end at the cap or when the wallet cannot
pay, pause after an absence longer than the grace period, end after a long absence,
expire an unanswered request. Every decision
is a write guarded on the state it was made from, so two sweeps (two nodes, or a dev
clock jump racing the scheduler) make each change once; a minute's ledger key
``consult:<id>:<minute>`` is the final guard.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kpay.core.errors import InsufficientBalance
from kpay.core.money.ledger import StaleBatch
from plugins.consult_billing import charges, sessions
from plugins.consult_billing.nodes import NodeRegistry
from plugins.consult_billing.sessions import ACTIVE, MINUTE, OPEN, PAUSED, REQUESTED

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.consult_billing")

ENGINE_STATE = "consult_engine"
# A session never needs more decisions in one sweep than this (minutes plus a few
# state changes); the bound only stops a bug from spinning forever.
MAX_STEPS = 24 * 60 + 10


def needs_settling(doc: dict[str, Any], now: datetime, grace: timedelta) -> bool:
    """Something is due, or the document is broken (settling it puts it on the
    attention list rather than failing the whole sweep here)."""
    try:
        return decide(doc, now, grace) is not None
    except Exception:
        return True


def decide(doc: dict[str, Any], now: datetime, grace: timedelta) -> tuple[str, datetime] | None:
    """The one thing due for the session at ``now``: (action, when) or None.

    Actions: ``charge`` the next minute, ``max_minutes`` / ``absent`` / ``expired`` to
    end it, ``pause`` it.
    """
    status = doc["status"]
    if status == REQUESTED:
        return ("expired", doc["expires_at"]) if doc["expires_at"] <= now else None
    if status == PAUSED:
        deadline = doc["absent_deadline"]
        return ("absent", deadline) if deadline <= now else None
    if status != ACTIVE:
        return None
    paid_until, absent = doc["paid_until"], doc.get("absent_since")
    # A minute that came due while both were still there is billed even if someone
    # left later (the engine may run a little late, or the clock jumped).
    if paid_until <= now and (absent is None or paid_until <= absent):
        if doc["minute"] >= doc["max_minutes"]:
            return ("max_minutes", paid_until)
        return ("charge", paid_until)
    if absent is not None and absent + grace <= now:
        return ("pause", absent)
    return None


class BillingEngine:
    """What the ``consult_billing.meter`` job runs; one per app."""

    def __init__(self, app: KPay) -> None:
        self.app = app
        self.collection = app.store[sessions.CONSULTATIONS]
        self.nodes = NodeRegistry(app)

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.app.settings.consult_billing.grace_seconds)

    async def sweep(self, now: datetime | None = None) -> int:
        """Settle every due session; returns how many were looked at.

        Due minutes are charged together, ``engine_batch_size`` sessions per MongoDB
        transaction; every other decision (and a minute a batch could not take) is made
        one session at a time, at most ``engine_concurrency`` at once.
        """
        now = now or self.app.clock.now()
        await self.heartbeat(now)
        settings = self.app.settings.consult_billing
        due = self.collection.find(
            {"status": {"$in": list(OPEN)}, "next_charge_at": {"$lte": now}},
            batch_size=1000)
        limit = asyncio.Semaphore(settings.engine_concurrency)
        tasks: list[asyncio.Future] = []
        looked_at = 0

        async def settle(doc: dict[str, Any]) -> None:
            async with limit:
                # One broken session must not stop the others from being billed.
                async with self.app.attention.isolate(
                        "consult_billing.meter", f"consultation:{doc['_id']}"):
                    await self.settle(doc, now)

        async def take(chunk: list[dict[str, Any]]) -> None:
            try:
                docs = await self.charge_together(chunk, now)
            except Exception:
                # A batch that fails as a whole (one bad session in it) is settled one
                # session at a time, so the bad one is isolated and the rest billed.
                log.exception("billing a batch of %d consultations failed; one at a time",
                              len(chunk))
                docs = chunk
            for doc in docs:
                if needs_settling(doc, now, self.grace):
                    tasks.append(asyncio.ensure_future(settle(doc)))

        chunk: list[dict[str, Any]] = []
        async for doc in due:
            looked_at += 1
            chunk.append(doc)
            if len(chunk) == settings.engine_batch_size:
                await take(chunk)
                chunk = []
        await take(chunk)
        if tasks:
            await asyncio.gather(*tasks)
        return looked_at

    async def charge_together(self, docs: list[dict[str, Any]], now: datetime
                              ) -> list[dict[str, Any]]:
        """Charge the due minutes of ``docs`` in batches (one minute of each per
        transaction, until none is due: a clock jump of n minutes takes n batches).
        Returns the sessions as they are now; a session a batch could not charge (its
        wallet cannot pay) is returned as it was, to be settled on its own.

        A batch that met a change (a party joined, a session ended) is read again and
        tried once more; if it meets a change again, its sessions are settled alone.
        """
        current = {doc["_id"]: doc for doc in docs}
        alone: set[str] = set()
        stale_before = False
        for _ in range(MAX_STEPS):
            # A discounted session is billed on its own (a free minute has no ledger
            # transaction for the batch to post); the rest together.
            due = [(doc, action[1]) for doc in current.values() if doc["_id"] not in alone
                   and not doc.get("adjustments")
                   and (action := decide(doc, now, self.grace)) and action[0] == "charge"]
            if not due:
                break
            try:
                charged, short = await charges.charge_minutes(self.app, due)
            except StaleBatch as e:
                if not stale_before and await self.read_again(current, due):
                    stale_before = True
                    continue
                log.info("billing %d consultations one by one: %s", len(due), e)
                charged, short = [], [doc for doc, _ in due]
            except Exception:
                log.exception("billing %d consultations together failed", len(due))
                charged, short = [], [doc for doc, _ in due]
            stale_before = False
            current.update((doc["_id"], doc) for doc in charged)
            alone.update(doc["_id"] for doc in short)
        return list(current.values())

    async def read_again(self, current: dict[str, dict[str, Any]],
                         due: list[tuple[dict[str, Any], datetime]]) -> bool:
        """Refresh the batch's sessions in ``current``; False if the read failed."""
        try:
            async for doc in self.collection.find({"_id": {"$in": [d["_id"] for d, _ in due]}}):
                current[doc["_id"]] = doc
        except Exception:
            log.exception("reading %d consultations again failed", len(due))
            return False
        return True

    async def heartbeat(self, now: datetime) -> None:
        """Remember that the engine was alive at ``now``: after a crash, the time since
        the last heartbeat is time the service was down, and is not billed."""
        await self.app.store[ENGINE_STATE].update_one(
            {"_id": "heartbeat"}, {"$max": {"at": now}}, upsert=True)
        # This process's own last sign of life, for its restart (see nodes.py).
        await self.nodes.beat(now)

    async def last_heartbeat(self) -> datetime | None:
        state = await self.app.store[ENGINE_STATE].find_one({"_id": "heartbeat"})
        return state["at"] if state else None

    async def settle(self, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Make every decision due for one session at ``now``; the final document."""
        for _ in range(MAX_STEPS):
            action = decide(doc, now, self.grace)
            if action is None:
                return doc
            new = await self.apply(doc, *action)
            if new is None:
                # Someone else changed it (another sweep, an end request): re-read.
                fresh = await sessions.load(self.app, doc["_id"])
                if fresh is None or fresh["rev"] == doc["rev"]:
                    return doc
                new = fresh
            doc = new
        log.error("consultation %s: too many billing steps in one sweep", doc["_id"])
        return doc

    async def apply(self, doc: dict[str, Any], action: str, at: datetime
                    ) -> dict[str, Any] | None:
        if action == "charge":
            return await self.charge(doc, at)
        if action == "pause":
            return await self.pause(doc, at)
        return await sessions.finish(self.app, doc, action, at)

    async def charge(self, doc: dict[str, Any], due: datetime) -> dict[str, Any] | None:
        """Charge the next minute; it runs from its due time, not from when we got to it."""
        minute = doc["minute"] + 1
        try:
            new = await charges.charge_minute(
                self.app, doc, {"minute": minute, "paid_until": due + MINUTE})
        except InsufficientBalance:
            return await sessions.finish(self.app, doc, "funds_exhausted", due)
        if new is not None:
            try:
                await charges.announce_charge(self.app, new)
            except Exception:
                # Charged; a tick that cannot be published must not stop the session's
                # other decisions (nor whoever asked for this one: presence, recovery).
                log.exception("tick of consultation %s not published", new["_id"])
        return new

    async def pause(self, doc: dict[str, Any], since: datetime,
                    deadline: datetime | None = None) -> dict[str, Any] | None:
        """Stop the meter as of when the absence began; keep the unused paid time.
        The session ends at ``deadline`` (default: the absence period after ``since``)."""
        settings = self.app.settings.consult_billing
        remaining = max(0.0, (doc["paid_until"] - since).total_seconds())
        if deadline is None:
            deadline = since + timedelta(seconds=settings.absence_end_seconds)
        new = await sessions.write_state(self.app, doc, {
            "status": PAUSED, "paused_at": since, "remaining_seconds": remaining,
            "absent_deadline": deadline, "absent_since": None})
        if new is not None:
            await self.app.publish(sessions.channel_of(doc["_id"]), "paused", {
                "since": since.isoformat(), "remaining_seconds": remaining,
                "ends_at": new["absent_deadline"].isoformat(),
                "present": sessions.presence(new)})
        return new
