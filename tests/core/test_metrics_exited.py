"""Metrics of workers that exited (docs/operations.md "Workers"): still summed by
/metrics, but folded into one file per type, so the multiprocess folder does not grow
with every restart."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from kpay.core.metrics import fold_exited_process

WORKER = """
from kpay.core import metrics
metrics.EVENTS_PUBLISHED.inc(3)
metrics.JOB_SECONDS.labels("sweep").observe(0.2)
metrics.JOB_SECONDS.labels("sweep").observe(7.0)
metrics.SOCKETS_OPEN.inc(5)
"""


def summed(directory: str) -> dict[str, float]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    text = generate_latest(registry).decode()
    wanted = ("kpay_events_published_total ", 'kpay_job_seconds_bucket{job="sweep",le="0.25"}',
              'kpay_job_seconds_bucket{job="sweep",le="+Inf"}', "kpay_job_seconds_sum",
              "kpay_sockets_open ")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(wanted)}


def test_exited_workers_still_count_and_leave_a_fixed_number_of_files(tmp_path):
    directory = str(tmp_path)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    pids = []
    for _ in range(4):  # four workers that lived and exited (restarts, SIGHUPs)
        subprocess.run([sys.executable, "-c", WORKER], env=env, check=True)
        pids.append(_last_pid(directory, pids))
    before = summed(directory)
    assert before["kpay_events_published_total"] == 12
    for pid in pids:
        fold_exited_process(pid, directory)
    after = summed(directory)
    assert after.pop("kpay_sockets_open", 0) == 0  # live gauges of exited workers go
    before.pop("kpay_sockets_open")
    assert after == before
    assert after['kpay_job_seconds_bucket{job="sweep",le="0.25"}'] == 4
    assert after['kpay_job_seconds_bucket{job="sweep",le="+Inf"}'] == 8
    assert sorted(os.listdir(directory)) == ["counter_exited.db", "histogram_exited.db"]
    # Folding again (a worker reaped twice) changes nothing.
    fold_exited_process(pids[0], directory)
    assert summed(directory) == after


def _last_pid(directory: str, known: list[int]) -> int:
    """The pid of the worker that just wrote its files (their names carry it)."""
    found = {int(name.rsplit("_", 1)[1][:-3]) for name in os.listdir(directory)
             if name.startswith("counter_") and not name.endswith("_exited.db")}
    (pid,) = found - set(known)
    return pid
