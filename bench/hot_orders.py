"""Benchmark: N students buying from ONE seller at the same moment (a hot seller), paid
from their wallets: the course kind (course_drip) and the ticket kind (live_qa).

    .venv/bin/python bench/hot_orders.py [--students 50] [--kinds course ticket]
                                         [--capacity N]

Set-up (not timed): an embedded SecantusDB (kpay.core.store.EmbeddedMongo) in a temp
dir and the real kpay app with course_drip and live_qa; one author with one published
course and one live room (capacity N, so that the burst sells it out, unless
``--capacity`` says more), N students funded by one ledger transaction.
Then, per kind, all N orders are started at once (``Orders.create`` with the wallet
channel, the path ``POST /api/v1/orders`` takes) and awaited.

Printed per kind: orders/s, p50/p99 of one order, errors, and from
``kpay_db_commands_total`` the MongoDB transactions committed and aborted (each abort is
a write conflict the driver retried) and commands per order. The WriteConflict errors
are counted per conflicting document class by watching failed commands (which
statement of the transaction hit it). Every order must end paid and the books must
reconcile (kpay.testing.assert_books_balanced). The baselines run first in the same
run, each with its own seller and students: every balance and the room's seats in one
document (as before docs/money.md "Hot accounts"), then balances spread but the seats
in one document (tickets only: as before docs/live_qa.md "Seats"), then as shipped.
docs/performance.md, "Hot seller".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pymongo import monitoring  # noqa: E402

from kpay.core import metrics  # noqa: E402 (after the path set-up)
from kpay.core.app import KPay, load_settings  # noqa: E402
from kpay.core.auth import User  # noqa: E402
from kpay.core.money import accounts  # noqa: E402
from kpay.core.money.providers import RequestInfo  # noqa: E402
from kpay.core.plugins import PluginManager, available_plugins, select  # noqa: E402
from kpay.core.store import EmbeddedMongo  # noqa: E402
from kpay.testing import assert_books_balanced  # noqa: E402
from plugins.course_drip.courses import COURSES, CourseIn, create_course  # noqa: E402
from plugins.live_qa import rooms, seats  # noqa: E402

SECRET = "bench-hot-secret-" + "x" * 32
PLUGINS = ["course_drip", "live_qa"]
COURSE_PRICE = 990
TICKET_PRICE = 100


class ConflictWatcher(monitoring.CommandListener):
    """Counts failed commands by name and collection: which statement met the conflict."""

    def __init__(self) -> None:
        self.pending: dict[int, str] = {}
        self.failures: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        where = target if isinstance(target, str) else ""
        updates = event.command.get("updates") or [{}]
        first = updates[0].get("q", {}).get("_id") if len(updates) == 1 else None
        if isinstance(first, str):
            if first.startswith("wallet:"):
                first = "wallet:..."
            where += f" {first.split('#')[0]}#k" if "#" in first else f" {first}"
        self.pending[event.request_id] = f"{event.command_name} {where}".strip()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.pending.pop(event.request_id, None)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        what = self.pending.pop(event.request_id, event.command_name)
        code = getattr(event, "failure", {}).get("codeName", "error")
        self.failures[f"{code} in {what}"] += 1


def commands() -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in metrics.DB_COMMANDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels.get("command", "?")] += int(sample.value)
    return counts


async def make_app(uri: str, database: str, var_dir: str) -> KPay:
    overrides = {
        "server": {"host": "127.0.0.1", "port": 0},
        "mongodb": {"uri": uri, "database": database},
        "auth": {"secret": SECRET}, "dev": {"enabled": True},
        "scheduler": {"enabled": False}, "logging": {"level": "WARNING"},
        "plugins": {"enabled": PLUGINS},
    }
    pm = PluginManager()
    pm.load(select(PLUGINS, available_plugins()))
    settings, pm = load_settings(None, overrides=overrides, pm=pm)
    app = KPay(settings, pm, uri, var_dir=var_dir)
    await app.start(port=0)
    return app


async def seed(app: KPay, students: int, capacity: int, tag: str) -> tuple[str, str]:
    """A fresh author with a course and a room, and ``students`` funded students, all
    named after ``tag`` (each round has its own seller and buyers)."""
    author = User(f"{tag}-author", "consultant")
    course = await create_course(app, author, CourseIn(title="Hot course", price=COURSE_PRICE),
                                 [], {})
    await app.store[COURSES].update_one({"_id": course["_id"]},
                                        {"$set": {"status": "published"}})
    room = await rooms.create(app, author, rooms.RoomCreate(
        title="Hot room", ticket_price=TICKET_PRICE, capacity=capacity))
    fund = COURSE_PRICE + TICKET_PRICE
    await app.money.ledger.post(
        f"bench-hot-topup:{tag}",
        [("external:bench", -fund * students)]
        + [(accounts.wallet(f"{tag}-s{i}"), fund) for i in range(students)], "bench top-up")
    return course["_id"], room["_id"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def buy_all(app: KPay, students: int, tag: str, item: dict[str, Any],
                  watcher: ConflictWatcher) -> str:
    before, watcher.failures = commands(), Counter()
    took: list[float] = []
    errors: Counter[str] = Counter()

    async def buy(i: int) -> None:
        start = time.perf_counter()
        try:
            order, _ = await app.money.orders.create(
                User(f"{tag}-s{i}", "student"), item, "wallet", RequestInfo("127.0.0.1"))
            if order["status"] not in ("paid", "fulfilled"):
                errors[order["status"]] += 1
        except Exception as e:  # counted and shown, not hidden
            errors[type(e).__name__] += 1
            return
        took.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(buy(i) for i in range(students)))
    wall = time.perf_counter() - started
    used = commands() - before
    ok = len(took)
    lines = [f"{tag:12} {item['kind']}",
             f"{'':12} orders {ok}/{students} in {wall:.2f} s = {ok / wall:.1f}/s;"
             f" p50 {percentile(took, 0.5) * 1000:.0f} ms, p99 {percentile(took, 0.99) * 1000:.0f}"
             f" ms; errors {dict(errors) or 0}",
             f"{'':12} transactions {used['commitTransaction']} committed, "
             f"{used['abortTransaction']} aborted; {sum(used.values()) / max(ok, 1):.1f} "
             "commands per order",
             f"{'':12} failed commands: {dict(watcher.failures.most_common(6)) or 'none'}"]
    return "\n".join(lines)


#: (tag, balances spread, seat shards per room, kinds run): the baselines first.
ROUNDS = [("one-doc", False, 1, ("course", "ticket")),
          ("seats-1doc", True, 1, ("ticket",)),
          ("spread", True, seats.SHARDS, ("course", "ticket"))]


async def run(students: int, capacity: int, kinds: list[str], uri: str, var_dir: str
              ) -> None:
    watcher = ConflictWatcher()
    monitoring.register(watcher)  # every client made after this (the app's) reports to it
    app = await make_app(uri, "bench_hot", var_dir)
    spreads, shards = accounts.spreads, seats.SHARDS
    try:
        for tag, spread, seat_shards, round_kinds in ROUNDS:
            accounts.spreads = spreads if spread else (lambda account, amount: False)
            seats.SHARDS = seat_shards  # of the room seeded next
            course_id, room_id = await seed(app, students, capacity, tag)
            items = {"course": {"kind": "course", "course_id": course_id},
                     "ticket": {"kind": "live_ticket", "room_id": room_id}}
            for kind in kinds:
                if kind in round_kinds:
                    print(await buy_all(app, students, tag, items[kind], watcher), flush=True)
            if "ticket" in kinds and "ticket" in round_kinds:
                room = await rooms.shown(app, await rooms.get(app, room_id))
                print(f"{'':12} seats: {room['sold']} sold of {room['capacity']}", flush=True)
        await assert_books_balanced(app)
        print("books balanced")
    finally:
        accounts.spreads, seats.SHARDS = spreads, shards
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--capacity", type=int, default=0,
                        help="seats of the room (default: as many as students)")
    parser.add_argument("--kinds", nargs="+", default=["course", "ticket"],
                        choices=["course", "ticket"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpay-bench-hot-") as tmp:
        mongo = EmbeddedMongo(str(Path(tmp) / "db"))
        uri = mongo.start()
        try:
            asyncio.run(run(args.students, args.capacity or args.students, args.kinds, uri,
                            tmp))
        finally:
            mongo.stop()


if __name__ == "__main__":
    main()
