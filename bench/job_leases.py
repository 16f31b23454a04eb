"""What a job lease costs a tick (kpay/core/leases.py, docs/operations.md "Job leases").

On a scratch embedded database, two nodes' ``JobLeases`` tick one job: the first
takes the lease, runs nothing and releases it; the second, in the same period,
finds the run done. Reports the round trips of each (counted by the command
listener), and the median time of a tick against a plain ``update_one`` of one
document of the same collection, interleaved in the same run (a same-run ratio).

    .venv/bin/python bench/job_leases.py --ticks 300
"""

from __future__ import annotations

import argparse
import statistics
import time

from kpay.core import metrics
from kpay.core.leases import LEASES, JobLeases
from kpay.core.store import Store, run_on_scratch_database

PERIOD = 24 * 3600.0  # one period for the whole run (a day; the run takes seconds)


async def run(args: argparse.Namespace, uri: str) -> None:
    store = Store(uri, "bench_job_leases")
    first, second = JobLeases(store, "node-a"), JobLeases(store, "node-b")
    await store[LEASES].insert_one({"_id": "plain", "n": 0})
    runs, skips, plains = [], [], []
    trips: dict[str, dict[str, int]] = {}
    for tick in range(args.ticks):
        job = f"job{tick}"  # a fresh job each tick: the first node always runs it
        before, started = metrics.db_commands(), time.perf_counter()
        lease, _ = await first.take(job, PERIOD, 60)
        assert lease is not None
        await first.release(lease, done=True)
        runs.append(time.perf_counter() - started)
        trips["run (take + release)"] = metrics.commands_since(before)
        before, started = metrics.db_commands(), time.perf_counter()
        lease, why = await second.take(job, PERIOD, 60)
        assert lease is None and why == "done"
        skips.append(time.perf_counter() - started)
        trips["skip (period done)"] = metrics.commands_since(before)
        started = time.perf_counter()
        await store[LEASES].update_one({"_id": "plain"}, {"$inc": {"n": 1}})
        plains.append(time.perf_counter() - started)
    await store.close()
    plain = statistics.median(plains)
    print(f"{args.ticks} ticks per kind; median plain update_one {plain * 1e3:.2f} ms")
    print("| tick | round trips | median ms | x plain update_one |")
    print("|---|---|---:|---:|")
    for name, times in (("run (take + release)", runs), ("skip (period done)", skips)):
        median = statistics.median(times)
        counted = ", ".join(f"{count} {command}" for command, count in trips[name].items())
        print(f"| {name} | {counted} | {median * 1e3:.2f} | {median / plain:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=300)
    args = parser.parse_args()
    run_on_scratch_database(lambda uri: run(args, uri), "kpay-bench-leases-")


if __name__ == "__main__":
    main()
