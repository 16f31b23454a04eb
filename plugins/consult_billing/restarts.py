"""Processes starting, stopping, dying: what their sockets leave behind in presence.

Every write under a member (nodes.py) comes after its record exists, so a member found
in ``present_on`` without a live record is a process that is gone; the periodic
``consult_billing.nodes`` job takes those out, as it takes out processes silent for
``node_timeout_seconds``. Taking a member out marks its parties absent in the same
transaction (``presence.forget_member``); the engine does the rest.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from plugins.consult_billing import sessions
from plugins.consult_billing.presence import forget_member, running_since
from plugins.consult_billing.sessions import ACTIVE, OPEN, PAUSED
from plugins.consult_billing.settings import settings_of

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.consult_billing.meter import BillingEngine
    from plugins.consult_billing.presence import PresenceTracker

log = logging.getLogger("kpay.consult_billing")


async def keep_beating(app: KPay, tracker: PresenceTracker) -> None:
    """This process's heartbeat until it stops (a task, not a job: a node with the
    scheduler off beats too). Taken as gone while alive: join again, record again."""
    settings = settings_of(app)
    interval = min(settings.engine_interval_seconds, settings.node_timeout_seconds / 6)
    nodes = tracker.engine.nodes
    while True:
        await asyncio.sleep(interval)
        try:
            now = app.clock.now()
            if not await nodes.beat(now):
                log.warning("consult_billing: %s was taken as gone; joining again and "
                            "recording its sockets", nodes.member)
                await nodes.rejoin(now)
                tracker.needs_resync = True
            if tracker.needs_resync:
                tracker.needs_resync = not await tracker.resync()
        except Exception:
            # The database may be away for a while; the next beat tries again.
            log.exception("consult_billing: node heartbeat failed")


async def forget_gone_members(app: KPay, tracker: PresenceTracker) -> int:
    """The ``consult_billing.nodes`` job: take out processes silent for the timeout
    (absent since their last beat) and members with no live record (absent from now).
    Returns how many were taken out."""
    nodes = tracker.engine.nodes
    forgotten = 0
    for record in await nodes.silent():
        try:
            if not await nodes.claim(record):
                continue  # it beat since: alive after all
            touched = await forget_member(app, record["_id"], record["clock_at"])
            await nodes.drop(record["_id"])
        except Exception:
            # The others must still be taken out; this one is met again next run.
            log.exception("consult_billing: taking %s out failed", record["_id"])
            continue
        log.warning("consult_billing: %s silent since %s, taken as gone (%d "
                    "consultation(s) touched)", record["_id"], record["seen_at"], len(touched))
        forgotten += 1
    collection = app.store[sessions.CONSULTATIONS]
    in_use: set[str] = set()
    for party in sessions.PARTIES:
        in_use.update(await collection.distinct(f"present_on.{party}",
                                                {"status": {"$in": list(OPEN)}}))
    for member in sorted(in_use - await nodes.known(in_use)):
        try:
            touched = await forget_member(app, member, app.clock.now())
        except Exception:
            log.exception("consult_billing: taking %s out failed", member)
            continue
        log.warning("consult_billing: %s has no record, taken as gone (%d consultation(s) "
                    "touched)", member, len(touched))
        forgotten += 1
    return forgotten


async def recover(app: KPay, engine: BillingEngine, tracker: PresenceTracker) -> int:
    """At start. An earlier process of this node (killed) left its sockets recorded:
    minutes delivered before it stopped are billed, the time it was down is not (its
    sessions missing a party are paused as of its last beat, and the parties get the
    full absence period, counted from now, to come back). Then gone processes of other
    nodes are taken out. Sessions of live processes are not touched."""
    now = app.clock.now()
    settings = settings_of(app)
    await engine.nodes.join(now)
    recovered = 0
    for record in await engine.nodes.earlier_selves():
        for consultation_id in await forget_member(app, record["_id"], record["clock_at"]):
            doc = await sessions.load(app, consultation_id)
            if (doc is None or doc["status"] not in (ACTIVE, PAUSED)
                    or all(sessions.presence(doc).values())):
                continue
            recovered += 1
            alive_until = min(now, max(record["clock_at"], running_since(doc)))
            await pause_for_restart(app, engine, doc, alive_until, now + timedelta(
                seconds=settings.absence_end_seconds))
        await engine.nodes.drop(record["_id"])
    await forget_gone_members(app, tracker)
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


async def stop(app: KPay, engine: BillingEngine, tracker: PresenceTracker) -> None:
    """A clean stop: the last sign of life (time after it is not billed); the parties
    connected here are gone from this process."""
    if tracker.beating is not None:
        tracker.beating.cancel()  # a beat now would join again
    now = app.clock.now()
    await engine.heartbeat(now)
    await forget_member(app, engine.nodes.member, now)
    await engine.nodes.drop(engine.nodes.member)
