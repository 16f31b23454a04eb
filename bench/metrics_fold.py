"""What exited workers' metric files cost a /metrics scrape (kpay/core/metrics.py
``fold_exited_process``, docs/operations.md "Workers").

In one scratch folder, ``--exited`` worker processes (restarts, SIGHUPs) each write the
metrics a worker writes and exit; then one scrape's collect is timed as the supervisor
left the folder before (every exited worker's files kept) and after folding them into
one file per type, in the same run (a same-run ratio), and the files counted.

    .venv/bin/python bench/metrics_fold.py --exited 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from kpay.core.metrics import fold_exited_process

WORKER = """
from kpay.core import metrics
for route in ("/healthz", "/api/v1/me", "/api/v1/rooms", "/ws"):
    metrics.HTTP_REQUESTS.labels("GET", route, "200").inc(100)
metrics.DB_COMMANDS.labels("find").inc(1000)
metrics.JOB_SECONDS.labels("course_drip.unlock_sweep").observe(0.4)
import os
print(os.getpid())
"""


def scrape_seconds(directory: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)
        generate_latest(registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exited", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpay-metrics-bench-") as directory:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        pids = [int(subprocess.run([sys.executable, "-c", WORKER], env=env, check=True,
                                   capture_output=True, text=True).stdout)
                for _ in range(args.exited)]
        for pid in pids:  # what the supervisor did before folding
            multiprocess.mark_process_dead(pid, directory)
        kept_files = len(os.listdir(directory))
        kept = scrape_seconds(directory, args.repeat)
        for pid in pids:
            fold_exited_process(pid, directory)
        folded_files = len(os.listdir(directory))
        folded = scrape_seconds(directory, args.repeat)
    print(f"{args.exited} exited workers: files {kept_files} kept, {folded_files} folded")
    print(f"scrape (median of {args.repeat}): {kept * 1000:.1f} ms kept, "
          f"{folded * 1000:.2f} ms folded, ratio {kept / folded:.0f}x")


if __name__ == "__main__":
    main()
