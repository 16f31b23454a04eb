"""Prometheus metrics of the whole process, served at /metrics.

Under a supervisor (``kpay serve --workers N``) ``PROMETHEUS_MULTIPROC_DIR`` is set
and /metrics sums the workers (prometheus_client's multiprocess mode; docs/operations.md,
"Workers"): counters and histograms add up, the open-sockets gauge adds the live workers.
"""

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.mmap_dict import MmapedDict

HTTP_REQUESTS = Counter(
    "kpay_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
SOCKETS_OPEN = Gauge("kpay_sockets_open", "WebSocket connections open",
                     multiprocess_mode="livesum")
SOCKETS_CLOSED = Counter("kpay_sockets_closed_total", "WebSocket connections closed", ["reason"])
MESSAGES_IN = Counter("kpay_socket_frames_in_total", "Frames received from clients", ["op"])
EVENTS_PUBLISHED = Counter("kpay_events_published_total", "Events published to channels")
DELIVERIES = Counter("kpay_event_deliveries_total", "Event frames written to sockets")
ORDERS = Counter("kpay_orders_total", "Order state changes", ["kind", "status"])
LEDGER_TRANSACTIONS = Counter("kpay_ledger_transactions_total", "Ledger transactions written")
DB_COMMANDS = Counter("kpay_db_commands_total",
                      "Commands sent to MongoDB, each one network round trip", ["command"])
BILLING_CHARGES = Counter("kpay_billing_charges_total", "Minutes charged by metered billing")
ATTENTION = Counter("kpay_attention_reports_total",
                    "Records a job could not handle, put on the attention list", ["source"])
JOB_RUNS = Counter("kpay_job_runs_total", "Periodic job runs", ["job", "outcome"])
JOB_SKIPS = Counter("kpay_job_skips_total",
                    "Periodic job ticks that did not run it: its period's run was done "
                    "(done), another node holds its lease (held), the lease failed",
                    ["job", "reason"])
JOB_TAKEOVERS = Counter("kpay_job_lease_takeovers_total",
                        "Job leases taken over from a dead holder or a broken document",
                        ["job"])
JOB_SECONDS = Histogram("kpay_job_seconds", "Periodic job duration", ["job"])


def db_commands() -> dict[str, float]:
    """MongoDB commands this process has sent so far, by name."""
    return {sample.labels["command"]: sample.value for metric in DB_COMMANDS.collect()
            for sample in metric.samples if sample.name.endswith("_total")}


def commands_since(before: dict[str, float]) -> dict[str, int]:
    """The commands (round trips) sent since ``before = db_commands()``, by name."""
    after = db_commands()
    return {name: int(count - before.get(name, 0)) for name, count in after.items()
            if count != before.get(name, 0)}


def exposition() -> bytes:
    """The text served at /metrics: this process's metrics, or every worker's summed."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


#: The metric files of an exited worker that still count (live gauges do not).
KEPT_AFTER_EXIT = ("counter", "histogram", "summary")


def fold_exited_process(pid: int, directory: str) -> None:
    """A worker exited: drop its live gauges, and add its counters, histograms and
    summaries into one ``<type>_exited.db`` per type, which /metrics sums like any
    worker's file. Without this every exited worker (each restart, each SIGHUP) left
    its files for good and every scrape read them all. The supervisor calls it; only
    it writes the ``exited`` files."""
    multiprocess.mark_process_dead(pid, directory)
    for kind in KEPT_AFTER_EXIT:
        path = os.path.join(directory, f"{kind}_{pid}.db")
        if not os.path.exists(path):
            continue
        # Raw values (histogram buckets not yet accumulated): adding them is exact.
        values = MmapedDict.read_all_values_from_file(path)
        folded = MmapedDict(os.path.join(directory, f"{kind}_exited.db"))
        try:
            for key, value, timestamp, _ in values:
                folded.write_value(key, folded.read_value(key)[0] + value, timestamp)
        finally:
            folded.close()
        os.unlink(path)
