"""What bench/loadtest.py measured, and the table it prints (docs/performance.md,
"Load test").

Every user action is recorded once, with its wall time and its outcome: ``ok``, a rate
limit (HTTP 429 or a socket reply ``rate_limited``, expected under the per-user limits
of ``[limits]`` and ``[realtime]``, so counted apart from errors) or an error named by
its HTTP status and error code (``500 internal_error``, ``ws forbidden``, ``client
timeout``). Latency percentiles are over the ``ok`` answers. Socket events are counted
by type; a chat message carries its send time, so its lag (receive minus send, one
clock: every client is in the load test's process) is known for every receiver.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Chat texts the load test sends start with this and the send time (time.time()).
STAMP = "lt:"


@dataclass
class ActionStats:
    latencies: list[float] = field(default_factory=list)
    rate_limited: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.latencies) + self.rate_limited + sum(self.errors.values())


class Stats:
    """Everything a run records; ``report()`` turns it into plain numbers."""

    def __init__(self) -> None:
        self.actions: dict[str, ActionStats] = {}
        self.events: Counter[str] = Counter()
        self.lags: list[float] = []
        self.started = time.perf_counter()
        self.ended: float | None = None

    def stopped(self) -> None:
        """The end of the measured window: rates are per second of the run itself;
        actions still in flight then are counted when they finish."""
        self.ended = time.perf_counter()

    def record(self, action: str, seconds: float, outcome: str | None) -> None:
        """``outcome`` None for success, ``"rate_limited"``, or an error name."""
        stats = self.actions.setdefault(action, ActionStats())
        if outcome is None:
            stats.latencies.append(seconds)
        elif outcome == "rate_limited":
            stats.rate_limited += 1
        else:
            stats.errors[outcome] += 1

    def event(self, frame: dict[str, Any], received: float) -> None:
        self.events[str(frame.get("type"))] += 1
        text = (frame.get("data") or {}).get("text")
        if isinstance(text, str) and text.startswith(STAMP):
            try:
                self.lags.append(received - float(text[len(STAMP):].split()[0]))
            except (ValueError, IndexError):
                pass

    def report(self, **extra: Any) -> dict[str, Any]:
        seconds = max((self.ended or time.perf_counter()) - self.started, 1e-9)
        actions = {}
        for name, stats in sorted(self.actions.items()):
            errors = sum(stats.errors.values())
            actions[name] = {
                "count": stats.count, "ok": len(stats.latencies),
                "per_second": round(stats.count / seconds, 2),
                "errors": errors, "error_percent": round(100 * errors / stats.count, 2),
                "top_errors": dict(stats.errors.most_common(3)),
                "rate_limited": stats.rate_limited,
                "latency_ms": percentiles_ms(stats.latencies),
            }
        total = sum(a["count"] for a in actions.values())
        errors = sum(a["errors"] for a in actions.values())
        events = sum(self.events.values())
        return {
            "seconds": round(seconds, 1), "actions": actions,
            "total": {"count": total, "per_second": round(total / seconds, 1),
                      "errors": errors,
                      "error_percent": round(100 * errors / total, 2) if total else 0.0,
                      "rate_limited": sum(a["rate_limited"] for a in actions.values()),
                      "latency_ms": percentiles_ms(
                          [x for s in self.actions.values() for x in s.latencies])},
            "events": {"count": events, "per_second": round(events / seconds, 1),
                       "by_type": dict(self.events.most_common()),
                       "chat_lag_ms": percentiles_ms(self.lags)},
            **extra,
        }


def percentiles_ms(values: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 (nearest rank) in milliseconds; None without samples."""
    ordered = sorted(values)

    def rank(p: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def problems(report: dict[str, Any], expected: list[str]) -> list[str]:
    """What makes a run not clean: an expected action that never ran or never
    succeeded, and any error (429s are not errors)."""
    found = []
    for name in expected:
        action = report["actions"].get(name)
        if not action or not action["ok"]:
            found.append(f"{name}: no successful run")
    for name, action in report["actions"].items():
        if action["errors"]:
            found.append(f"{name}: {action['errors']} errors {action['top_errors']}")
    return found


def render(report: dict[str, Any]) -> str:
    """The table and the summary line a person reads."""
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    lines = [f"{'action':<16}{'count':>7}{'/s':>8}{'errors':>8}{'err %':>7}{'429':>6}"
             f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  top errors"]
    rows = [*report["actions"].items(), ("TOTAL", report["total"])]
    for name, a in rows:
        lat = a["latency_ms"]
        top = ", ".join(f"{code} x{n}" for code, n in a.get("top_errors", {}).items())
        lines.append(f"{name:<16}{a['count']:>7}{a['per_second']:>8.1f}{a['errors']:>8}"
                     f"{a['error_percent']:>7.1f}{a['rate_limited']:>6}{ms(lat['p50']):>9}"
                     f"{ms(lat['p95']):>9}{ms(lat['p99']):>9}  {top}")
    events = report["events"]
    lag = events["chat_lag_ms"]
    kinds = ", ".join(f"{kind} {n}" for kind, n in list(events["by_type"].items())[:6])
    lines += [
        "",
        f"socket events: {events['count']} ({events['per_second']:.1f}/s): {kinds}",
        f"chat lag (send to each receiver): p50 {ms(lag['p50'])} ms, p95 {ms(lag['p95'])} ms,"
        f" p99 {ms(lag['p99'])} ms",
    ]
    if report["total"]["rate_limited"]:
        lines.append("429: refused by a per-user rate limit ([limits], [realtime]); expected "
                     "under load, not an error: the user waited Retry-After and went on.")
    if report.get("server_cpu"):
        cpu = report["server_cpu"]
        lines.append(f"server CPU: kpay {cpu['kpay_seconds']:.1f} s, database "
                     f"{cpu['database_seconds']:.1f} s; kpay {cpu['kpay_ms_per_action']:.2f} ms"
                     f" per action")
    if report.get("db_commands"):
        commands = report["db_commands"]
        total = sum(commands.values())
        top = sorted(commands.items(), key=lambda item: -item[1])[:6]
        lines.append(f"database commands (kpay_db_commands_total): {total} = "
                     f"{total / max(1, report['total']['count']):.1f} per action; "
                     + ", ".join(f"{name} {n}" for name, n in top))
        lines.append(f"transactions: {commands.get('commitTransaction', 0)} committed, "
                     f"{commands.get('abortTransaction', 0)} aborted (a write conflict, which "
                     "the driver retries, or a refusal inside one)")
    lines.append(f"load test client CPU: {report.get('client_cpu_seconds')} s (on the same "
                 "machine, it competes with a server there)")
    total = report["total"]
    lines.append(
        f"SUMMARY users={report.get('users')} seconds={report['seconds']} "
        f"actions={total['count']} rate={total['per_second']}/s errors={total['errors']} "
        f"({total['error_percent']}%) rate_limited={total['rate_limited']} "
        f"p95={ms(total['latency_ms']['p95'])}ms events/s={events['per_second']} "
        f"chat_lag_p95={ms(lag['p95'])}ms")
    return "\n".join(lines)
