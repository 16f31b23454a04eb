"""Periodic sweep jobs on APScheduler's AsyncIOScheduler.

Plugins add jobs through the ``register_jobs`` hook. A job is a sweep: it reads time
from the app clock and handles everything due, so one run after a dev clock jump
catches up on every elapsed interval. Runs of one job never overlap on a node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from kpay.core import metrics

log = logging.getLogger("kpay.scheduler")


@dataclass(frozen=True)
class PeriodicJob:
    """``run()`` every ``seconds``; ``name`` must be unique across plugins."""

    name: str
    run: Callable[[], Awaitable[object]]
    seconds: float


class Scheduler:
    def __init__(self, jobs: list[PeriodicJob], enabled: bool = True) -> None:
        names = [j.name for j in jobs]
        duplicate = {n for n in names if names.count(n) > 1}
        if duplicate:
            raise ValueError(f"periodic job {sorted(duplicate)[0]!r} is registered twice")
        self.jobs = {j.name: j for j in jobs}
        self.enabled = enabled
        self._locks = {j.name: asyncio.Lock() for j in jobs}
        self._scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        if not self.enabled or not self.jobs:
            return
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        for job in self.jobs.values():
            self._scheduler.add_job(
                self.run_job, "interval", seconds=job.seconds, args=[job.name], id=job.name,
                max_instances=1, coalesce=True, misfire_grace_time=None,
            )
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def running(self) -> list[str]:
        """The jobs running now (a stopping app waits for them)."""
        return [name for name, lock in self._locks.items() if lock.locked()]

    async def run_job(self, name: str) -> None:
        job = self.jobs[name]
        async with self._locks[name]:
            started = time.perf_counter()
            try:
                await job.run()
            except Exception:
                metrics.JOB_RUNS.labels(name, "error").inc()
                log.exception("periodic job %s failed", name)
                return
            metrics.JOB_SECONDS.labels(name).observe(time.perf_counter() - started)
            metrics.JOB_RUNS.labels(name, "ok").inc()

    async def run_all_now(self) -> None:
        """Run every job once, in registration order (after the dev clock moved)."""
        for name in self.jobs:
            await self.run_job(name)
