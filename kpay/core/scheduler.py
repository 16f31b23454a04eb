"""Periodic sweep jobs on APScheduler's AsyncIOScheduler, once per period cluster-wide.

Plugins add jobs through the ``register_jobs`` hook. A job is a sweep: it reads time
from the app clock and handles everything due, so one run after a dev clock jump
catches up on every elapsed interval. Runs of one job never overlap on a node.

Each scheduled tick first takes the job's lease (kpay/core/leases.py): of all workers
and nodes, one runs the job per period of the database's clock; the others skip and
count it (``kpay_job_skips_total``). A dead holder's lease expires after
``lease_seconds`` and the next tick anywhere takes it over. ``run_job`` and
``run_all_now`` (dev clock moves, tests) run a job on this node at once, without a
lease: every job is safe to run twice, the lease only saves the work.
docs/operations.md, "Job leases".
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from kpay.core import metrics
from kpay.core.leases import (
    MAX_LEASE_SECONDS,
    MIN_LEASE_SECONDS,
    JobLeases,
    Lease,
    default_lease_seconds,
)

log = logging.getLogger("kpay.scheduler")

#: How long one scheduled run keeps its lease at most (``PeriodicJob.max_run_seconds``).
DEFAULT_MAX_RUN_SECONDS = 3600.0


@dataclass(frozen=True)
class PeriodicJob:
    """``run()`` every ``seconds``; ``name`` must be unique across plugins.

    ``lease_seconds``: how long a node that died mid-run keeps the others waiting
    (its holder renews it every third of it while running); default twice
    ``seconds``, from 30 s to an hour.

    ``max_run_seconds``: how long one run may keep renewing (default an hour). A run
    still going then (hung on a dead connection, say) lets its lease expire, so
    another node takes the job over instead of no node running it again while this
    process lives; the run itself goes on (every job is safe to run twice)."""

    name: str
    run: Callable[[], Awaitable[object]]
    seconds: float
    lease_seconds: float | None = None
    max_run_seconds: float = DEFAULT_MAX_RUN_SECONDS

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"periodic job {self.name!r}: seconds must be positive")
        lease = self.lease_seconds
        if lease is not None and not MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS:
            raise ValueError(f"periodic job {self.name!r}: lease_seconds must be from "
                             f"{MIN_LEASE_SECONDS:g} to {MAX_LEASE_SECONDS:g}")
        if not self.max_run_seconds > 0:
            raise ValueError(f"periodic job {self.name!r}: max_run_seconds must be positive")

    @property
    def lease(self) -> float:
        return self.lease_seconds or default_lease_seconds(self.seconds)


class Scheduler:
    def __init__(self, jobs: list[PeriodicJob], enabled: bool = True,
                 leases: JobLeases | None = None) -> None:
        names = [j.name for j in jobs]
        duplicate = {n for n in names if names.count(n) > 1}
        if duplicate:
            raise ValueError(f"periodic job {sorted(duplicate)[0]!r} is registered twice")
        self.jobs = {j.name: j for j in jobs}
        self.enabled = enabled
        self.leases = leases
        self._locks = {j.name: asyncio.Lock() for j in jobs}
        self._scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        if not self.enabled or not self.jobs:
            return
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        for job in self.jobs.values():
            self._scheduler.add_job(
                self.run_periodic, "interval", seconds=job.seconds, args=[job.name],
                id=job.name, start_date=mid_period(job.seconds, time.time()),
                max_instances=1, coalesce=True, misfire_grace_time=None,
            )
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def running(self) -> list[str]:
        """The jobs running now, lease taken to lease released (a stopping app waits
        for them: docs/operations.md "Job leases")."""
        return [name for name, lock in self._locks.items() if lock.locked()]

    async def run_job(self, name: str) -> bool:
        """Run ``name`` on this node now, without a lease; True when it did not raise."""
        async with self._locks[name]:
            return await self._run(self.jobs[name])

    async def run_all_now(self) -> None:
        """Run every job once, in registration order (after the dev clock moved)."""
        for name in self.jobs:
            await self.run_job(name)

    async def run_periodic(self, name: str) -> None:
        """A scheduled tick: run ``name`` if this node takes the period's lease."""
        job = self.jobs[name]
        if self.leases is None:
            await self.run_job(name)
            return
        async with self._locks[name]:
            try:
                lease, outcome = await self.leases.take(name, job.seconds, job.lease)
            except Exception:
                metrics.JOB_SKIPS.labels(name, "lease_error").inc()
                log.exception("periodic job %s: taking its lease failed", name)
                return
            if lease is None:
                metrics.JOB_SKIPS.labels(name, outcome).inc()
                return
            self._log_takeover(lease)
            renewing = asyncio.get_running_loop().create_task(
                self._renew(lease, time.monotonic() + job.max_run_seconds))
            try:
                ok = await self._run(job)
            finally:
                # Cancelled mid-run: no release, so the lease expires and the next
                # node finishes the sweep, as after a crash.
                renewing.cancel()
            try:
                await self.leases.release(lease, done=ok)
            except Exception:
                log.exception("periodic job %s: releasing its lease failed (it expires)",
                              name)

    async def _run(self, job: PeriodicJob) -> bool:
        started = time.perf_counter()
        try:
            await job.run()
        except Exception:
            metrics.JOB_RUNS.labels(job.name, "error").inc()
            log.exception("periodic job %s failed", job.name)
            return False
        metrics.JOB_SECONDS.labels(job.name).observe(time.perf_counter() - started)
        metrics.JOB_RUNS.labels(job.name, "ok").inc()
        return True

    async def _renew(self, lease: Lease, until: float) -> None:
        """Keep a long run's lease alive until ``until`` (time.monotonic()); stop when
        another node has taken it over."""
        assert self.leases is not None
        while True:
            await asyncio.sleep(lease.lease_ms / 3000)
            if time.monotonic() >= until:
                log.error("periodic job %s: still running after its max_run_seconds; "
                          "its lease is left to expire, so another node takes the job "
                          "over (this run goes on)", lease.job)
                return
            try:
                if not await self.leases.renew(lease):
                    log.warning("periodic job %s: lost its lease while running (expired "
                                "and taken over); this run goes on", lease.job)
                    return
            except Exception:
                log.exception("periodic job %s: renewing its lease failed", lease.job)

    @staticmethod
    def _log_takeover(lease: Lease) -> None:
        previous = lease.previous
        if previous is None:
            return
        metrics.JOB_TAKEOVERS.labels(lease.job).inc()
        expires = previous.get("expires")
        if isinstance(expires, datetime) and expires <= lease.taken_at:
            log.warning("periodic job %s: took over the lease of node %.200s (process "
                        "%.40s), expired at %s", lease.job, previous.get("node"),
                        previous.get("process"), expires.isoformat())
        else:
            log.warning("periodic job %s: replaced a broken lease document: %.300r",
                        lease.job, previous)


def mid_period(seconds: float, now: float) -> datetime:
    """The middle of the current period of ``seconds`` (epoch-aligned, as the leases'
    periods are): every node ticks there, so a node clock off from the database's by
    less than half a period still ticks inside the period it means.

    Wall time, not the app clock: this only places the ticks in real time."""
    return datetime.fromtimestamp((math.floor(now / seconds) + 0.5) * seconds, UTC)
