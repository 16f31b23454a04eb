"""Job leases: each periodic job runs once per period across workers and nodes.

One document per job in ``job_leases`` (``_id`` = the job's name). A node takes the
lease with one atomic ``find_one_and_update`` (upsert) whose update pipeline decides,
on the database server's clock (``$$NOW``), whether the lease is free (no holder, or
the holder's ``expires`` has passed) and the period not yet done; it writes itself as
the holder only then. No node compares its own clock with another's: ``expires`` and
the period are both read on the server. A holder renews while the job runs and
releases when it ends, recording the period as done. A holder that dies leaves its
lease to expire; the next node to tick takes it over and, every job being a sweep,
finishes the work. docs/operations.md, "Job leases".

The period is a window of the database's clock (``period_start`` = now rounded down to
a multiple of the job's seconds). It is independent of the app clock on purpose: the
app clock (moved in dev mode, pinned in tests) decides what a run finds *due*; the
lease only decides *which node* runs and how often, in real elapsed time.

Any field of a lease document may be of the wrong type (written by hand, an older
version): the pipeline never computes with a stored field, it only compares, and a
value that is not a date or is further away than the job's lease counts as expired,
so a broken document is replaced at the next tick, never obeyed forever.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from kpay.core.store import Store

log = logging.getLogger("kpay.scheduler")

LEASES = "job_leases"
#: Bounds of a job's lease (``PeriodicJob.lease_seconds``; default twice its period).
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 6 * 3600.0
DEFAULT_MIN_LEASE_SECONDS = 30.0
DEFAULT_MAX_LEASE_SECONDS = 3600.0


def default_lease_seconds(period_seconds: float) -> float:
    """Twice the period, at least 30 s (a slow tick is no death) and at most an hour
    (a dead node's work waits no longer)."""
    return min(max(2 * period_seconds, DEFAULT_MIN_LEASE_SECONDS), DEFAULT_MAX_LEASE_SECONDS)


def as_ms(field: str) -> dict[str, Any]:
    """A stored date as epoch milliseconds, None for any other type.

    Leases compare milliseconds, never dates: the embedded SecantusDB compares
    ``$$NOW`` with a stored date wrongly (``$cmp`` says equal) and fails ``$subtract``
    of two dates; ``$toLong`` of a date is right on it and on MongoDB (>= 4.2, which
    ``$$NOW`` needs). ``$cond`` keeps ``$toLong`` away from other types (a string
    would fail the command, and a broken document must not stop the job)."""
    return {"$cond": [{"$eq": [{"$type": field}, "date"]}, {"$toLong": field}, None]}


@dataclass(frozen=True)
class Lease:
    """A lease this process holds: what renew and release need, and what it replaced."""

    job: str
    run_id: str
    lease_ms: int
    period_start: datetime
    taken_at: datetime
    #: The holder's fields before this take, when it replaced a holder (expired or
    #: broken); ``None`` when the lease was free.
    previous: dict[str, Any] | None


class JobLeases:
    """Take, renew and release job leases in ``job_leases`` for one process."""

    def __init__(self, store: Store, node_id: str) -> None:
        self.store = store
        self.node_id = node_id
        # Two apps of one process (a second node in tests, workers) are two holders.
        self.process = f"{os.getpid()}:{secrets.token_hex(4)}"

    async def take(self, job: str, period_seconds: float,
                   lease_seconds: float) -> tuple[Lease | None, str]:
        """``(lease, "taken")`` for the database's current period of ``job``, or
        ``(None, why)``: ``"held"`` (another holder's lease is live) or ``"done"`` (this
        period's run is done)."""
        run_id = secrets.token_hex(8)
        period_ms = max(1, round(period_seconds * 1000))
        lease_ms = max(1, round(lease_seconds * 1000))
        now_ms = {"$toLong": "$$NOW"}
        period = {"$subtract": [now_ms, {"$mod": [now_ms, period_ms]}]}  # its start
        expires_ms = as_ms("$expires")
        # Live: a date in the future, but no further than two leases from now (a later
        # date is a broken or forged document, not a holder). Two, not one: ``$$NOW``
        # is read as a command arrives, so a take racing a renew may see a slightly
        # earlier now than the renew wrote from, and a job's lease may be shortened
        # between versions while an old holder runs.
        live = {"$and": [{"$ne": [{"$ifNull": ["$run_id", None]}, None]},
                         {"$ne": [expires_ms, None]},
                         {"$lt": [now_ms, expires_ms]},
                         {"$lte": [expires_ms, {"$add": [now_ms, 2 * lease_ms]}]}]}
        # Equality, not "at or after": a period that is not this one (a database
        # clock set back, a broken value) never blocks the job.
        done = {"$eq": [as_ms("$done_period"), "$_period"]}
        take = {"$and": [{"$not": [live]}, {"$not": [done]}]}
        # A holder, or what is left of one (a broken document): recorded when replaced.
        held = {"$or": [{"$ne": [{"$ifNull": ["$run_id", None]}, None]},
                        {"$ne": [{"$ifNull": ["$expires", None]}, None]}]}
        previous = {"run_id": "$run_id", "node": "$node", "process": "$process",
                    "expires": "$expires"}

        def when_taken(value: Any, otherwise: str) -> dict[str, Any]:
            return {"$cond": ["$_take", value, otherwise]}

        pipeline = [
            {"$set": {"_period": period}},
            {"$set": {"_take": take, "_held": held}},
            {"$set": {
                # $literal: a configured node id starting with "$" is not a field path.
                "run_id": when_taken({"$literal": run_id}, "$run_id"),
                "node": when_taken({"$literal": self.node_id}, "$node"),
                "process": when_taken({"$literal": self.process}, "$process"),
                "taken_at": when_taken("$$NOW", "$taken_at"),
                "expires": when_taken({"$add": ["$$NOW", lease_ms]}, "$expires"),
                "period_start": when_taken({"$toDate": "$_period"}, "$period_start"),
                "previous": when_taken({"$cond": ["$_held", previous, None]}, "$previous"),
                # Why a take failed, for the caller: a live holder or a done period.
                "skipped": {"$cond": ["$_take", None,
                                      {"$cond": [{"$not": [live]}, "done", "held"]}]},
            }},
            {"$unset": ["_period", "_take", "_held"]},
        ]
        try:
            doc = await self.store[LEASES].find_one_and_update(
                {"_id": job}, pipeline, upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            # Two first-ever takes raced to insert the document; the other one won.
            return None, "held"
        if doc is None or doc.get("run_id") != run_id:
            return None, str((doc or {}).get("skipped") or "held")
        return Lease(job, run_id, lease_ms, doc["period_start"], doc["taken_at"],
                     doc.get("previous")), "taken"

    async def renew(self, lease: Lease) -> bool:
        """Push the expiry one lease from the server's now; False when the lease is no
        longer ours (it expired and another node took it over)."""
        result = await self.store[LEASES].update_one(
            {"_id": lease.job, "run_id": lease.run_id},
            [{"$set": {"expires": {"$add": ["$$NOW", lease.lease_ms]}}}])
        return result.matched_count == 1

    async def release_left_by_this_node(self) -> int:
        """At start-up: free the leases an earlier process of this node left when it
        was killed mid-run. A node id is one process at a time (workers have their
        own, ``<node_id>/w<i>``), so they are dead; without this a restarted node
        would wait for its own old lease to expire (docs/operations.md "Job leases")."""
        result = await self.store[LEASES].update_many(
            {"node": self.node_id, "process": {"$ne": self.process},
             "run_id": {"$ne": None}},
            {"$set": {"run_id": None, "expires": None}})
        return result.modified_count

    async def release(self, lease: Lease, done: bool) -> bool:
        """Give the lease up, recording the finish; ``done`` marks the period as run
        (False after a failed run, so another tick of the period may try again)."""
        finished: dict[str, Any] = {"run_id": None, "expires": None, "finished_at": "$$NOW",
                                    "outcome": "ok" if done else "error"}
        if done:
            finished["done_period"] = "$period_start"
        result = await self.store[LEASES].update_one(
            {"_id": lease.job, "run_id": lease.run_id}, [{"$set": finished}])
        return result.matched_count == 1
