"""Benchmark: the consult_billing engine billing one minute of S running sessions,
beside the embedded database's own rate for one find_one_and_update, in the same run.

    .venv/bin/python bench/billing.py [--sessions 1000 5000] [--batch 200 1]
                                      [--concurrency 16]

Set-up (not timed): an embedded SecantusDB (kpay.core.store.EmbeddedMongo) in a temp
dir and the real kpay app with only consult_billing. For each size S: S students are
topped up by one ledger transaction, and S sessions are written in the state accept
leaves them (minute 1 paid, both parties present, each with its own consultant). Then
the clock moves on one minute and ``BillingEngine.sweep()`` runs once, timed, with each
``--batch`` value as ``engine_batch_size`` (sessions charged per MongoDB transaction);
``kpay_db_commands_total`` counts the database commands it sends (each is one round
trip). Every session must end at minute 2, each with its own ledger entry, and the
books must reconcile.

Baselines on the same database, in the same run: S ``find_one_and_update`` calls by
``_id`` one after another, and the same with the engine's concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kpay.core import metrics  # noqa: E402 (after the path set-up)
from kpay.core.app import KPay, load_settings  # noqa: E402
from kpay.core.money import accounts  # noqa: E402
from kpay.core.money.reconcile import reconcile  # noqa: E402
from kpay.core.plugins import PluginManager, available_plugins, select  # noqa: E402
from kpay.core.store import EmbeddedMongo  # noqa: E402
from plugins.consult_billing import charges, engine_for  # noqa: E402
from plugins.consult_billing.sessions import ACTIVE, CONSULTATIONS, MINUTE  # noqa: E402

SECRET = "bench-billing-secret-" + "x" * 32
RATE = 100


async def make_app(uri: str, database: str, concurrency: int, batch: int,
                   var_dir: str) -> KPay:
    overrides = {
        "server": {"host": "127.0.0.1", "port": 0},
        "mongodb": {"uri": uri, "database": database},
        "auth": {"secret": SECRET}, "dev": {"enabled": True},
        "scheduler": {"enabled": False}, "logging": {"level": "WARNING"},
        "plugins": {"enabled": ["consult_billing"]},
        "consult_billing": {"engine_concurrency": concurrency, "engine_batch_size": batch},
    }
    pm = PluginManager()
    pm.load(select(["consult_billing"], available_plugins()))
    settings, pm = load_settings(None, overrides=overrides, pm=pm)
    app = KPay(settings, pm, uri, var_dir=var_dir)
    await app.start(port=0)
    return app


async def seed(app: KPay, sessions: int) -> None:
    """S funded students and S sessions as accept leaves them (minute 1 paid)."""
    students = [f"s{i}" for i in range(sessions)]
    fund = 100 * RATE
    await app.money.ledger.post(
        f"bench-topup:{sessions}",
        [("external:bench", -fund * sessions)] + [(accounts.wallet(s), fund) for s in students],
        "bench top-up")
    now = app.clock.now()
    credits = app.money.earnings_credits(RATE, "c0")
    earned = sum(v for a, v in credits if a.startswith("earnings:"))
    docs = []
    for i, student in enumerate(students):
        consultant = f"c{i}"
        docs.append({
            "_id": f"bench{i}", "student_id": student, "consultant_id": consultant,
            "status": ACTIVE, "rev": 1, "minute": 1, "rate_per_minute": RATE,
            "min_minutes": 1, "max_minutes": 60, "requested_at": now, "updated_at": now,
            "expires_at": now, "accepted_at": now, "paid_until": now + MINUTE,
            "next_charge_at": now + MINUTE,
            "credits": [list(c) for c in app.money.earnings_credits(RATE, consultant)],
            "earned_per_minute": earned, "fee_per_minute": RATE - earned,
            "busy_consultant": consultant,
            "present": {"student": True, "consultant": True},
            "absent_since": None, "paused_at": None, "remaining_seconds": None,
        })
    for start in range(0, len(docs), 1000):
        await app.store[CONSULTATIONS].insert_many(docs[start:start + 1000])


async def baseline(app: KPay, count: int, concurrency: int) -> tuple[float, float, float]:
    """ms per find_one_and_update by _id: one after another, and ``concurrency`` at once;
    and ms per guarded update_one by _id one after another (what the claim sends)."""
    scratch = app.store["bench_scratch"]
    await scratch.insert_many([{"_id": i, "n": 0} for i in range(count)])
    started = time.perf_counter()
    for i in range(count):
        await scratch.update_one({"_id": i, "n": {"$gte": 0}}, {"$inc": {"n": 1}})
    update = (time.perf_counter() - started) / count * 1000
    started = time.perf_counter()
    for i in range(count):
        await scratch.find_one_and_update({"_id": i, "n": {"$gte": 0}}, {"$inc": {"n": 1}})
    sequential = (time.perf_counter() - started) / count * 1000
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit:
            await scratch.find_one_and_update({"_id": i, "n": {"$gte": 0}}, {"$inc": {"n": 1}})

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    parallel = (time.perf_counter() - started) / count * 1000
    await scratch.drop()
    return sequential, parallel, update


async def run_size(uri: str, sessions: int, concurrency: int, batch: int,
                   var_dir: str) -> dict[str, Any]:
    database = f"bench_billing_{sessions}_{batch}"
    app = await make_app(uri, database, concurrency, batch, var_dir)
    try:
        await seed(app, sessions)
        engine = engine_for(app)
        app.clock.advance(timedelta(minutes=1).total_seconds())
        before = metrics.db_commands()
        started = time.perf_counter()
        looked_at = await engine.sweep()
        seconds = time.perf_counter() - started
        commands = metrics.commands_since(before)
        billed = await app.store[CONSULTATIONS].count_documents({"minute": 2})
        entries = await app.store["ledger"].count_documents({"_id": {"$regex": "^consult:"}})
        report = await reconcile(app.store.db, app.clock.now())
        assert looked_at == billed == entries == sessions, (looked_at, billed, entries)
        assert report.clean, report.text()
        fou_seq, fou_par, update = await baseline(app, min(sessions, 2000), concurrency)
        return {"sessions": sessions, "batch": batch, "seconds": seconds,
                "commands": commands, "fou_seq_ms": fou_seq, "fou_par_ms": fou_par,
                "update_ms": update}
    finally:
        await app.store.client.drop_database(database)
        await app.stop()


def print_result(r: dict[str, Any], concurrency: int) -> None:
    s = r["sessions"]
    total = sum(r["commands"].values())
    per_session_ms = r["seconds"] / s * 1000
    print(f"\nS = {s:,} sessions, engine_batch_size = {r['batch']}, "
          f"engine_concurrency = {concurrency}")
    print(f"  engine sweep (one minute for all): {r['seconds']:.2f} s, "
          f"{s / r['seconds']:,.0f} minutes billed/s, {per_session_ms:.2f} ms per session")
    print(f"  database commands: {total:,} = {total / s:.2f} round trips per session")
    for name, count in sorted(r["commands"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:20s} {count:8,}  ({count / s:.2f}/session)")
    print(f"  baseline find_one_and_update: {r['fou_seq_ms']:.2f} ms sequential, "
          f"{r['fou_par_ms']:.2f} ms at concurrency {concurrency}; "
          f"update_one: {r['update_ms']:.2f} ms sequential")
    print(f"  engine cost per session = {per_session_ms / r['fou_par_ms']:.1f} x one "
          f"find_one_and_update at the same concurrency "
          f"({per_session_ms / r['fou_seq_ms']:.1f} x sequential; "
          f"{per_session_ms / r['update_ms']:.1f} x one update_one)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, nargs="+", default=[200],
                        help="engine_batch_size values to run, each on a fresh database "
                             "(1: one session per transaction)")
    parser.add_argument("--unlocked", action="store_true",
                        help="variant: let one node's charge transactions overlap (they then "
                             "conflict on platform:revenue and retry)")
    args = parser.parse_args()
    if args.unlocked:
        charges.ledger_lock = lambda app: contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="kpay-bench-billing-") as tmp:
        database = EmbeddedMongo(str(Path(tmp) / "db"))
        uri = await asyncio.to_thread(database.start)  # it waits for the process: off the loop
        try:
            for size in args.sessions:
                for batch in args.batch:
                    result = await run_size(uri, size, args.concurrency, batch, tmp)
                    print_result(result, args.concurrency)
        finally:
            await asyncio.to_thread(database.stop)


if __name__ == "__main__":
    # A SIGTERM (e.g. from `timeout`) must still stop the embedded database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main())
