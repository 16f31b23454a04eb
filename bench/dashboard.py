"""Benchmark: the analytics dashboard and growth series at 1,000 and 100,000 orders,
beside a single indexed query of the same database in the same run.

    .venv/bin/python bench/dashboard.py [--orders 1000,100000] [--repeat 5]

Set-up (not part of the results): an embedded SecantusDB in a temp dir and the real
kpay app (core only). For each scale, paid orders spread over the last 365 days are
bulk-inserted (half of them sold by ``seller1``, the rest by 50 other sellers; buyers
from a pool of a tenth of the orders, so people come back) with the ledger entry of
each sale (the seller's earnings and the 20% platform fee), and users signed up over
the same year. Measured, each the median of ``--repeat`` runs:

- ``dashboard (seller, 30 days)``: ``kpay.core.analytics.dashboard.dashboard`` for
  ``seller1`` over the last 30 days (what ``GET /api/v1/analytics/dashboard`` answers);
- ``dashboard (platform, 30 days)``: the same for the whole platform;
- ``growth series (students, 90 days)`` and ``(users, 90 days)``;
- baseline: one indexed ``find_one`` on orders by ``(seller, paid_at)``.

Round trips are the database commands sent during one run from the task that ran it
(a pymongo ``CommandListener``; the app's background loops run in other tasks): the
number that must not grow with the number of orders.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pymongo import monitoring

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-dashboard-secret-Q4vN8kT2wR6yM1pZ9cH3jL7s"  # random-looking: dev is off
BATCH = 5_000


class TaskCommands(monitoring.CommandListener):
    """A pymongo CommandListener (registered globally before the app's client is made)
    that counts the commands sent from one asyncio task: the app's own background
    loops (the users' standing poll, say) run in other tasks and are not counted."""

    def __init__(self) -> None:
        self.task: Any = None
        self.count = 0

    def started(self, event: Any) -> None:
        try:
            current = asyncio.current_task()
        except RuntimeError:
            return
        if current is not None and current is self.task:
            self.count += 1

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


COMMANDS = TaskCommands()


def commands() -> int:
    COMMANDS.task = asyncio.current_task()
    return COMMANDS.count


async def measure(step: Any, repeat: int) -> tuple[float, int]:
    """Median seconds of ``repeat`` runs and the round trips of one run."""
    times = []
    trips = 0
    for _ in range(repeat):
        before = commands()
        started = time.perf_counter()
        await step()
        times.append(time.perf_counter() - started)
        trips = int(commands() - before)
    return statistics.median(times), trips


def materialised(update: dict[str, dict[str, Any]], doc: dict[str, Any]) -> dict[str, Any]:
    """A rollup document as ``Deltas.writes`` would leave it (its ``$set`` and ``$inc``
    applied to a new document)."""
    for op, fields in update.items():
        for path, value in fields.items():
            *parents, leaf = path.split(".")
            into = doc
            for part in parents:
                into = into.setdefault(part, {})
            into[leaf] = value if op == "$set" else into.get(leaf, 0) + value
    return doc


async def fold_in_memory(app: Any, order_docs: list[dict[str, Any]],
                         entries: list[dict[str, Any]]) -> None:
    """Write the rollups of the generated history and mark it folded."""
    from kpay.core.analytics.rollups import Deltas, fold_entry, fold_order, local_day

    deltas, buyers = Deltas(), {}
    zone = app.rollups.zone
    for doc in sorted(order_docs, key=lambda d: d["paid_at"]):
        fold_order(doc, doc["seller"], local_day(doc["paid_at"], zone), deltas, buyers)
        doc["rolled_up"] = True
    for entry in entries:
        fold_entry(entry, local_day(entry["created_at"], zone), deltas)
        entry["rolled_up"] = True
    daily = [materialised(update, {"_id": f"{owner}|{day}", "owner": owner, "day": day})
             for (owner, day), update in deltas.lines.items()]
    for name, docs in (("analytics_daily", daily), ("analytics_buyers", list(buyers.values()))):
        for start in range(0, len(docs), BATCH):
            await app.store[name].insert_many(docs[start:start + BATCH])


async def fill(app: Any, orders: int, rng: random.Random, backfill: bool) -> None:
    """Bulk-insert ``orders`` paid orders, their ledger entries and the users (and the
    rollups, unless ``backfill``: then ``catch_up`` will fold them)."""
    now = app.clock.now()
    buyers = max(orders // 10, 1)
    order_docs, entries = [], []
    for i in range(orders):
        seller = "seller1" if i % 2 == 0 else f"seller{2 + i % 50}"
        paid_at = now - timedelta(seconds=rng.uniform(0, 365 * 86_400))
        amount = rng.choice([990, 1990, 4900, 9900])
        fee = amount // 5
        order_docs.append({
            "_id": f"o{i}", "out_trade_no": f"o{i}", "user_id": f"u{rng.randrange(buyers)}",
            "kind": rng.choice(["course", "live_ticket", "live_question"]),
            "item": {}, "title": f"商品 {i % 40}", "amount": amount,
            "credits": [[f"earnings:{seller}", amount - fee], ["platform:revenue", fee]],
            "seller": seller, "channel": "wallet", "status": "fulfilled", "refunded": 0,
            "refundable": amount, "created_at": paid_at, "paid_at": paid_at})
        entries.append({
            "_id": f"order:o{i}:pay", "created_at": paid_at, "memo": "",
            "meta": {"order_id": f"o{i}"},
            "postings": [{"account": f"wallet:u{i}", "amount": -amount},
                         {"account": f"earnings:{seller}", "amount": amount - fee},
                         {"account": "platform:revenue", "amount": fee}]})
    if not backfill:
        await fold_in_memory(app, order_docs, entries)
    for start in range(0, orders, BATCH):
        await app.money.orders.collection.insert_many(order_docs[start:start + BATCH])
        await app.money.ledger.entries.insert_many(entries[start:start + BATCH])
    users = [{"_id": f"u{i}", "role": "student", "name": f"用户{i}",
              "created_at": now - timedelta(seconds=365 * 86_400 * (1 - (i / buyers) ** 0.5))}
             for i in range(buyers)]
    for start in range(0, len(users), BATCH):
        await app.store["users"].insert_many(users[start:start + BATCH])


async def clear(app: Any) -> None:
    for name in ("orders", "ledger", "users", "analytics_daily", "analytics_buyers"):
        await app.store[name].delete_many({})


async def run(args: argparse.Namespace, uri: str) -> None:
    from kpay.core.analytics import dashboard as figures
    from kpay.core.app import KPay, load_settings

    monitoring.register(COMMANDS)

    settings, pm = load_settings(None, overrides={
        "server": {"host": "127.0.0.1", "port": 0},
        "mongodb": {"uri": uri, "database": "bench_dashboard"},
        "auth": {"secret": SECRET}, "dev": {"enabled": False},
        "scheduler": {"enabled": False}, "plugins": {"enabled": []},
        "logging": {"level": "WARNING"},
    })
    app = KPay(settings, pm, uri, var_dir=tempfile.mkdtemp(prefix="kpay-bench-var-"))
    await app.start()
    try:
        from zoneinfo import ZoneInfo
        today = app.clock.now().astimezone(ZoneInfo(settings.server.timezone)).date()
        month, quarter = today - timedelta(days=29), today - timedelta(days=89)
        print("| orders | what | median ms | round trips | x baseline |")
        print("|---:|---|---:|---:|---:|")
        for scale in args.orders:
            await clear(app)
            await fill(app, scale, random.Random(17), args.backfill)
            started = time.perf_counter()
            folded = await app.rollups.catch_up()
            backfill = time.perf_counter() - started
            since = app.clock.now() - timedelta(days=1)

            async def baseline() -> None:
                await app.money.orders.collection.find_one(
                    {"seller": "seller1", "paid_at": {"$gte": since}})  # noqa: B023

            base, base_trips = await measure(baseline, args.repeat)
            steps = {
                "dashboard (seller, 30 days)":
                    lambda: figures.dashboard(app, "seller1", month, today),
                "dashboard (platform, 30 days)":
                    lambda: figures.dashboard(app, None, month, today),
                "growth series (students, 90 days)": lambda: figures.cumulative_series(
                    app, "students", "seller1", quarter, today),
                "growth series (users, 90 days)": lambda: figures.cumulative_series(
                    app, "users", None, quarter, today),
            }
            print(f"| {scale:,} | baseline: one indexed find_one | {base * 1000:.2f} | "
                  f"{base_trips} | 1 |")
            for name, step in steps.items():
                seconds, trips = await measure(step, args.repeat)
                print(f"| {scale:,} | {name} | {seconds * 1000:.1f} | {trips} | "
                      f"{seconds / base:.0f} |", flush=True)
            if args.backfill:
                print(f"| {scale:,} | (once, set-up) catch_up folding {folded:,} orders and "
                      f"ledger entries | {backfill * 1000:.0f} | | |", flush=True)
    finally:
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", default="1000,100000",
                        type=lambda text: [int(v) for v in text.split(",")])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backfill", action="store_true",
                        help="fold the history through catch_up (slow on SecantusDB)")
    args = parser.parse_args()
    from kpay.core.store import run_on_scratch_database

    run_on_scratch_database(lambda uri: run(args, uri), "kpay-bench-dashboard-")


if __name__ == "__main__":
    main()
