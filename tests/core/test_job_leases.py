"""Job leases: a periodic job runs once per period across nodes (kpay/core/leases.py).

Two apps on one database are two nodes. Scheduled ticks (``run_periodic``) go through
the job's lease, taken on the database's clock; what a run finds due comes from the
app clock (pinned). Real time is only waited for where the lease is about real time:
its expiry (one second here) and, in the first test, periods of one second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from datetime import datetime, timedelta
from functools import partial

import pytest
from prometheus_client import REGISTRY

from kpay import hookimpl
from kpay.core.app import KPay
from kpay.core.leases import LEASES, JobLeases
from kpay.core.scheduler import PeriodicJob
from kpay.testing import wait_until

JOB = "leases_test.sweep"
ITEMS = "leases_test_items"


class Sweeper:
    """A throwaway plugin whose job marks every due item done, one at a time, and
    records which node ran it in which lease period. ``gate``, when set, holds a run
    after its first item (a slow run, or one whose node is about to die)."""

    def __init__(self) -> None:
        self.seconds = 3600.0
        self.lease_seconds = 1.0
        self.runs: list[tuple[str, datetime]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    @hookimpl
    def register_collections(self, app):
        return [ITEMS]

    @hookimpl
    def register_jobs(self, app):
        return [PeriodicJob(JOB, partial(self.sweep, app), self.seconds,
                            lease_seconds=self.lease_seconds)]

    async def sweep(self, app: KPay) -> None:
        lease = await app.store[LEASES].find_one({"_id": JOB})
        self.runs.append((app.node_id, lease["period_start"] if lease else None))
        self.started.set()
        due = {"done": False, "due_at": {"$lte": app.clock.now()}}
        async for item in app.store[ITEMS].find(due).sort("_id"):
            await app.store[ITEMS].update_one({"_id": item["_id"]},
                                              {"$set": {"done": True, "by": app.node_id}})
            if self.gate is not None:
                await self.gate.wait()


@pytest.fixture
def sweeper() -> Sweeper:
    return Sweeper()


@pytest.fixture
def kpay_extra_plugins(sweeper):
    return [("leases_test", sweeper)]


@pytest.fixture
def kpay_overrides():
    # Only the test's job besides the core's: no plugin's job ticks during a test.
    return {"plugins": {"enabled": []}}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"job": JOB, **labels}) or 0.0


def skips() -> float:
    return sum(sample("kpay_job_skips_total", reason=why) for why in ("held", "done"))


async def add_items(app: KPay, count: int) -> None:
    now = app.clock.now()
    items = [{"_id": i, "due_at": now - timedelta(minutes=1), "done": False}
             for i in range(count)]
    # Due tomorrow on the app clock: no run may touch it, whichever node.
    items.append({"_id": count, "due_at": now + timedelta(days=1), "done": False})
    await app.store[ITEMS].insert_many(items)


async def done_items(app: KPay) -> list[int]:
    return [item["_id"] async for item in app.store[ITEMS].find({"done": True}).sort("_id")]


@pytest.mark.gen_test(timeout=30)
async def test_each_period_runs_once_across_two_scheduled_nodes(kpay_app, second_node,
                                                                 sweeper):
    # Periods of one second, both nodes' schedulers on, for a bit over four seconds.
    job = kpay_app.scheduler.jobs[JOB]
    for app in (kpay_app, second_node):
        app.scheduler.jobs = {JOB: PeriodicJob(JOB, app.scheduler.jobs[JOB].run, 1.0,
                                               lease_seconds=1.0)}
        app.scheduler.enabled = True
    assert job.seconds == 3600
    skipped = skips()
    kpay_app.scheduler.start()
    second_node.scheduler.start()
    try:
        await asyncio.sleep(4.3)
    finally:
        kpay_app.scheduler.stop()
        second_node.scheduler.stop()
    periods = [period for _, period in sweeper.runs]
    assert len(periods) >= 3, sweeper.runs
    assert len(set(periods)) == len(periods), sweeper.runs  # never twice in one period
    # Both nodes tick mid-period: the other one finds the lease held, or the run done.
    assert skips() - skipped >= len(periods) - 1


@pytest.mark.gen_test(timeout=30)
async def test_ticks_on_two_nodes_run_the_job_once(kpay_app, second_node, sweeper):
    await add_items(kpay_app, 3)
    for _ in range(3):
        await asyncio.gather(kpay_app.scheduler.run_periodic(JOB),
                             second_node.scheduler.run_periodic(JOB))
    # Once, unless the database's hour turned between two ticks: then once per period.
    periods = [period for _, period in sweeper.runs]
    assert len(periods) == len(set(periods)) and len(periods) in (1, 2), sweeper.runs
    assert await done_items(kpay_app) == [0, 1, 2]
    lease = await kpay_app.store[LEASES].find_one({"_id": JOB})
    assert lease["run_id"] is None and lease["outcome"] == "ok"
    assert lease["done_period"] == lease["period_start"] == periods[-1]


@pytest.mark.gen_test(timeout=30)
async def test_a_dead_holders_lease_is_taken_over_and_the_work_finished(
        kpay_app, second_node, sweeper, caplog):
    await add_items(kpay_app, 3)
    sweeper.gate = asyncio.Event()  # the first node stops after its first item
    dying = asyncio.get_running_loop().create_task(kpay_app.scheduler.run_periodic(JOB))
    await asyncio.wait_for(sweeper.started.wait(), 5)

    async def first_done() -> bool:
        return await done_items(kpay_app) == [0]

    await wait_until(first_done, message="the first node never swept its first item")
    dying.cancel()  # the node dies mid-run: no release, no more renewals
    with pytest.raises(asyncio.CancelledError):
        await dying
    sweeper.gate = None

    held = sample("kpay_job_skips_total", reason="held")
    await second_node.scheduler.run_periodic(JOB)  # the lease is still live
    assert len(sweeper.runs) == 1
    assert sample("kpay_job_skips_total", reason="held") == held + 1

    await asyncio.sleep(1.2)  # the lease (one second) expires on the database's clock
    takeovers = sample("kpay_job_lease_takeovers_total")
    with caplog.at_level(logging.WARNING, logger="kpay.scheduler"):
        await second_node.scheduler.run_periodic(JOB)
    assert [node for node, _ in sweeper.runs] == [kpay_app.node_id, second_node.node_id]
    assert await done_items(kpay_app) == [0, 1, 2]  # the next node finished the sweep
    assert sample("kpay_job_lease_takeovers_total") == takeovers + 1
    assert f"took over the lease of node {kpay_app.node_id}" in caplog.text


# Takes the test job's lease as node "killed-node", then kills itself (SIGKILL).
KILLED_HOLDER = """
import asyncio, os, signal, sys
from kpay.core.leases import JobLeases
from kpay.core.store import Store

async def main():
    lease, why = await JobLeases(Store(sys.argv[1], sys.argv[2]), "killed-node").take(
        sys.argv[3], 3600, 1.0)
    print(why, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.gen_test(timeout=60)
async def test_a_lease_left_by_a_killed_process_is_taken_over(kpay_app, sweeper, caplog):
    await add_items(kpay_app, 2)
    mongodb = kpay_app.settings.mongodb
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_HOLDER, mongodb.uri, mongodb.database, JOB,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == -9 and out.decode().strip() == "taken"
    lease = await kpay_app.store[LEASES].find_one({"_id": JOB})
    assert lease["node"] == "killed-node" and lease["run_id"]

    await asyncio.sleep(1.2)  # its lease (one second) expires
    with caplog.at_level(logging.WARNING, logger="kpay.scheduler"):
        await kpay_app.scheduler.run_periodic(JOB)
    assert [node for node, _ in sweeper.runs] == [kpay_app.node_id]
    assert await done_items(kpay_app) == [0, 1]
    assert "took over the lease of node killed-node" in caplog.text


@pytest.mark.gen_test(timeout=30)
async def test_a_slow_run_renewing_its_lease_is_not_stolen(kpay_app, second_node, sweeper):
    await add_items(kpay_app, 2)
    sweeper.gate = asyncio.Event()
    slow = asyncio.get_running_loop().create_task(kpay_app.scheduler.run_periodic(JOB))
    await asyncio.wait_for(sweeper.started.wait(), 5)
    takeovers = sample("kpay_job_lease_takeovers_total")
    # Two and a half leases long: only the holder's renewals keep the lease.
    for _ in range(10):
        await asyncio.sleep(0.25)
        await second_node.scheduler.run_periodic(JOB)
    assert [node for node, _ in sweeper.runs] == [kpay_app.node_id]
    sweeper.gate.set()
    await slow
    assert await done_items(kpay_app) == [0, 1]
    assert sample("kpay_job_lease_takeovers_total") == takeovers
    lease = await kpay_app.store[LEASES].find_one({"_id": JOB})
    assert lease["run_id"] is None and lease["outcome"] == "ok"  # released by its holder


@pytest.mark.gen_test(timeout=30)
async def test_a_hung_run_lets_its_lease_go_after_max_run_seconds(kpay_app, second_node,
                                                                  sweeper, caplog):
    """A run that never ends (a dead connection) must not keep the job from every node
    while its process lives: after max_run_seconds it stops renewing."""
    jobs = kpay_app.scheduler.jobs
    jobs[JOB] = dataclasses.replace(jobs[JOB], max_run_seconds=1.5)
    await add_items(kpay_app, 2)
    sweeper.gate = asyncio.Event()  # never set: the first run hangs after one item
    loop = asyncio.get_running_loop()
    ticks = [loop.create_task(kpay_app.scheduler.run_periodic(JOB))]
    try:
        await asyncio.wait_for(sweeper.started.wait(), 5)
        for _ in range(40):
            await asyncio.sleep(0.25)
            if len(sweeper.runs) > 1:
                break
            # As tasks: the second node's run waits at the same gate.
            ticks.append(loop.create_task(second_node.scheduler.run_periodic(JOB)))
        assert [node for node, _ in sweeper.runs] == [kpay_app.node_id, second_node.node_id]
        assert "still running after its max_run_seconds" in caplog.text
        assert "took over the lease of node" in caplog.text
    finally:
        sweeper.gate.set()
        await asyncio.gather(*ticks)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("broken", [
    {"run_id": 5, "expires": "tomorrow"},
    {"run_id": "forged", "expires": datetime(9999, 1, 1)},  # further than any lease
    {"run_id": ["x"], "expires": 10 ** 15, "done_period": "soon"},
    {"expires": {"at": 1}, "period_start": 7, "done_period": datetime(9999, 1, 1)},
])
async def test_a_broken_lease_document_is_logged_and_replaced(kpay_app, sweeper, caplog,
                                                              broken):
    await kpay_app.store[LEASES].insert_one({"_id": JOB, **broken})
    with caplog.at_level(logging.WARNING, logger="kpay.scheduler"):
        await kpay_app.scheduler.run_periodic(JOB)
    assert len(sweeper.runs) == 1
    assert "replaced a broken lease document" in caplog.text
    lease = await kpay_app.store[LEASES].find_one({"_id": JOB})
    assert lease["run_id"] is None and lease["outcome"] == "ok"
    assert lease["done_period"] == lease["period_start"] == sweeper.runs[0][1]


@pytest.mark.gen_test(timeout=30)
async def test_dev_clock_moves_run_every_job_here_whatever_the_lease(api, kpay_app,
                                                                     second_node, sweeper):
    # Another node holds the lease (its run is slow); the dev clock moves here.
    sweeper.gate = asyncio.Event()
    await add_items(kpay_app, 1)
    held = asyncio.get_running_loop().create_task(second_node.scheduler.run_periodic(JOB))
    await asyncio.wait_for(sweeper.started.wait(), 5)
    sweeper.gate.set()
    await held
    token = await api.login("alice")
    status, body = await api.post("/api/v1/dev/clock", {"advance": 86400}, token)
    assert status == 200, body
    assert [node for node, _ in sweeper.runs] == [second_node.node_id, kpay_app.node_id]
    assert await done_items(kpay_app) == [0, 1]  # the item due "tomorrow" is due now


def test_lease_seconds_are_bounded():
    async def nothing() -> None:
        return None

    assert PeriodicJob("a", nothing, 5).lease == 30  # twice 5 s, at least 30 s
    assert PeriodicJob("a", nothing, 600).lease == 1200
    assert PeriodicJob("a", nothing, 86400).lease == 3600
    for bad in (0, 0.5, 7 * 3600):
        with pytest.raises(ValueError, match="lease_seconds"):
            PeriodicJob("a", nothing, 60, lease_seconds=bad)


@pytest.mark.gen_test(timeout=30)
async def test_a_node_id_is_stored_as_written_not_read_as_a_field(kpay_app):
    leases = JobLeases(kpay_app.store, "$run_id")
    lease, outcome = await leases.take("leases_test.other", 3600, 60)
    assert outcome == "taken" and lease is not None
    stored = await kpay_app.store[LEASES].find_one({"_id": "leases_test.other"})
    assert stored["node"] == "$run_id" and stored["run_id"] == lease.run_id


@pytest.mark.gen_test(timeout=30)
async def test_a_stopping_node_finishes_its_run_and_releases_the_lease(kpay_app,
                                                                      kpay_settings, sweeper):
    await add_items(kpay_app, 2)
    stopping = kpay_settings.new_app()
    await stopping.start()
    sweeper.gate = asyncio.Event()
    running = asyncio.get_running_loop().create_task(stopping.scheduler.run_periodic(JOB))
    await asyncio.wait_for(sweeper.started.wait(), 5)
    stop = asyncio.get_running_loop().create_task(stopping.stop())
    await asyncio.sleep(0.3)
    sweeper.gate.set()  # the run ends while its node stops
    await stop
    await running
    assert await done_items(kpay_app) == [0, 1]
    lease = await kpay_app.store[LEASES].find_one({"_id": JOB})
    assert lease["run_id"] is None and lease["outcome"] == "ok"
