"""Incremental daily rollups: what the dashboards read instead of the orders and the
ledger, so their cost does not grow with history (docs/analytics.md, "Rollups").

One document per (owner, local day in ``[server] timezone``) in ``analytics_daily``;
the owner is a seller's user id, or ``""`` for the whole platform. A paid order adds
to its seller's day and the platform's (orders by kind, products, new and returning
students); a ledger entry of a sale, consultation minutes or a refund adds revenue.

Each order and ledger entry is folded in exactly once: a batch of those not yet
folded is read, added up and recorded as folded in one MongoDB transaction (listed in
``analytics_folded``; the orders and entries are marked ``rolled_up`` after the commit,
so no open fold ever holds a document a refund needs), so a replayed notify, a
second node or a crash between the money write and the fold can neither count twice
nor lose anything; whatever is left unfolded (a crash, a failed
fold) is picked up by the next ``catch_up``: after money moves (``kick``, where the
scheduler runs), every minute (job ``analytics_rollups``), at start-up (which also
folds in the history of a deployment that predates the rollups) and before a dashboard
is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from kpay.core.money import accounts
from kpay.core.money.checkout import seller_of
from kpay.core.money.kinds import WalletTopup
from kpay.core.scheduler import PeriodicJob
from kpay.core.store import IndexSpec, TransactionGaveUp

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.analytics")

DAILY = "analytics_daily"
#: One document per (owner, buyer): the first and the last day they paid the owner.
BUYERS = "analytics_buyers"
#: The orders folded in, by id (their mark: True or "flawed"), written in the fold's
#: transaction; the orders are marked ``rolled_up`` after it commits.
FOLDED = "analytics_folded"
#: The prefix of ledger entries' ids in ``analytics_folded`` (orders' ids have none).
LEDGER = "ledger:"
COLLECTIONS_WITHOUT_INDEXES = frozenset({BUYERS, FOLDED})
#: The owner key of the platform's rollups (no user id is empty).
PLATFORM = ""
#: Orders whose money was taken (refunded ones too: their refunds are in revenue).
PAID = ["paid", "fulfilled", "refunded"]
#: Ledger key prefixes (their first four characters) that are revenue.
SALE_KEYS = ("orde", "cons")
REFUND_KEYS = ("refu",)
#: Kinds that are money moved, not something sold: never a top product.
NOT_PRODUCTS = frozenset({WalletTopup.name})
#: Orders or ledger entries folded per transaction.
BATCH = 500
#: Seconds a fold keeps retrying a batch another transaction holds before leaving it
#: to the next run. That holder may be a transaction a killed node left open, which the
#: database drops only after a minute: a dev clock move or a dashboard read must not
#: wait that long (docs/analytics.md, "Rollups").
FOLD_PATIENCE_SECONDS = 3.0

INDEXES = [
    IndexSpec.of(DAILY, "owner", "day"),
    # Unfolded documents have no ``rolled_up``: these find the few left to fold.
    IndexSpec.of("orders", "rolled_up", "status", "paid_at"),
    IndexSpec.of("ledger", "rolled_up", "created_at"),
]


def field_key(*parts: str) -> str:
    """A field name for a kind or a product: titles may hold ``.`` or ``$``."""
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:16]


def local_day(instant: datetime, zone: ZoneInfo) -> str:
    return instant.astimezone(zone).date().isoformat()


class Deltas:
    """What a batch adds, per (owner, day): ``$inc`` and ``$set`` of one upsert each."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def line(self, owner: str, day: str) -> dict[str, dict[str, Any]]:
        return self.lines.setdefault((owner, day), {"$inc": {}, "$set": {}})

    def add(self, owner: str, day: str, field: str, amount: int) -> None:
        inc = self.line(owner, day)["$inc"]
        inc[field] = inc.get(field, 0) + amount

    def put(self, owner: str, day: str, field: str, value: Any) -> None:
        self.line(owner, day)["$set"][field] = value

    def writes(self) -> list[UpdateOne]:
        out = []
        for (owner, day), update in self.lines.items():
            body: dict[str, Any] = {"$setOnInsert": {"owner": owner, "day": day}}
            body.update({op: fields for op, fields in update.items() if fields})
            out.append(UpdateOne({"_id": f"{owner}|{day}"}, body, upsert=True))
        return out


def is_fen(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def flaw_of_order(order: dict[str, Any]) -> str | None:
    """Why an order cannot be folded (None: it can)."""
    if not all(isinstance(order.get(f), str) for f in ("kind", "title", "user_id")):
        return "kind, title or user_id is not text"
    credits = order.get("credits")
    if "seller" not in order and not (
            isinstance(credits, list) and all(
                isinstance(c, list | tuple) and len(c) == 2 and isinstance(c[0], str)
                for c in credits)):
        return "no seller and credits malformed"
    if not is_fen(order.get("amount")) or not isinstance(order.get("paid_at"), datetime):
        return "amount is not integer fen or paid_at not a date"
    return None


def flaw_of_entry(entry: dict[str, Any]) -> str | None:
    postings = entry.get("postings")
    if (not isinstance(entry["_id"], str) or not isinstance(entry.get("created_at"), datetime)
            or not isinstance(postings, list)
            or not all(isinstance(p, dict) and isinstance(p.get("account"), str)
                       and is_fen(p.get("amount")) for p in postings)):
        return "created_at or postings malformed"
    return None


def fold_order(order: dict[str, Any], seller: str | None, day: str, deltas: Deltas,
               buyers: dict[str, dict[str, Any]]) -> None:
    """Add one paid order to its day: the seller's and the platform's. ``buyers`` holds
    the (owner, buyer) records read for the batch and is updated in place."""
    kind, amount, buyer = order["kind"], int(order["amount"]), order["user_id"]
    for owner in ([PLATFORM, seller] if seller else [PLATFORM]):
        k = field_key(kind)
        deltas.put(owner, day, f"kinds.{k}.kind", kind)
        deltas.add(owner, day, f"kinds.{k}.count", 1)
        deltas.add(owner, day, f"kinds.{k}.amount", amount)
        if kind not in NOT_PRODUCTS:
            p = field_key(kind, order["title"])
            deltas.put(owner, day, f"products.{p}.kind", kind)
            deltas.put(owner, day, f"products.{p}.title", order["title"])
            deltas.add(owner, day, f"products.{p}.count", 1)
            deltas.add(owner, day, f"products.{p}.amount", amount)
        key = f"{owner}|{buyer}"
        record = buyers.get(key)
        if record is None:
            buyers[key] = {"_id": key, "owner": owner, "buyer": buyer,
                           "first_day": day, "last_day": day}
            deltas.add(owner, day, "new", 1)
        elif day < record["first_day"]:
            # Folded out of order (an older order found by a catch-up): the buyer was
            # new on this earlier day instead.
            deltas.add(owner, record["first_day"], "new", -1)
            deltas.add(owner, day, "new", 1)
            record["first_day"] = day
        elif day > record["last_day"]:
            # Back after ``last_day``: kept per previous day, so that a range counts each
            # returning buyer once, on their first day in it (docs/analytics.md).
            deltas.add(owner, day, f"back.{record['last_day']}", 1)
            record["last_day"] = day


def fold_entry(entry: dict[str, Any], day: str, deltas: Deltas) -> None:
    """Add one ledger entry's revenue: per earner, their earnings and the platform fee of
    the entry; for the platform every earner's and the fee."""
    prefix = entry["_id"][:4]
    if prefix not in SALE_KEYS + REFUND_KEYS:
        return
    earned: dict[str, int] = {}
    fee = 0
    for posting in entry["postings"]:
        account, amount = posting["account"], int(posting["amount"])
        if account == accounts.PLATFORM_REVENUE:
            fee += amount
        elif accounts.kind_of(account) == "earnings":
            owner = account.partition(":")[2]
            earned[owner] = earned.get(owner, 0) + amount
    if not earned:
        return
    for owner, gross in [*((o, a + fee) for o, a in earned.items()),
                         (PLATFORM, sum(earned.values()) + fee)]:
        if prefix in SALE_KEYS:
            deltas.add(owner, day, "sales", gross)
        else:
            deltas.add(owner, day, "refunds", -gross)
        deltas.add(owner, day, "fees", fee)


class Rollups:
    """Folds paid orders and ledger entries into ``analytics_daily``."""

    def __init__(self, app: KPay) -> None:
        self.app = app
        self.zone = ZoneInfo(app.settings.server.timezone)
        self.daily = app.store[DAILY]
        self.buyers = app.store[BUYERS]
        self.orders = app.store["orders"]
        self.folded = app.store[FOLDED]
        self.entries = app.store["ledger"]
        # One fold at a time in this process; other nodes are kept apart by the
        # transactions (a document two folds touch makes one of them retry).
        self._lock = asyncio.Lock()
        self._kicked: asyncio.Task | None = None
        #: The start-up catch-up running in the background (tests wait for it).
        self.backfill: asyncio.Task | None = None
        self._again = False
        # Documents of the batches being folded that could not be (see ``_flawed``).
        # (A dict: a retried transaction finds the same ones again.)
        self._flaws: dict[str, str] = {}

    def jobs(self) -> list[PeriodicJob]:
        return [PeriodicJob("analytics_rollups", self.catch_up, 60)]

    def kick(self) -> None:
        """Fold soon, in the background: called after money moved and was committed.
        Like the jobs, only where ``[scheduler] enabled`` (docs/operations.md, "Several
        nodes"; off in tests, where folds run with the jobs and before each read)."""
        # A command-line app (``kpay refund``) has no jobs: it must not leave a fold
        # running when it exits.
        if not (self.app.scheduler.enabled and self.app.scheduler.jobs):
            return
        self._again = True
        if self._kicked is None or self._kicked.done():
            self._kicked = self.app.spawn(self._kicked_catch_up())

    async def _kicked_catch_up(self) -> None:
        # A kick while this runs (past its last look) makes it look once more.
        while self._again:
            self._again = False
            await self.catch_up()

    async def catch_up(self, progress: bool = False) -> int:
        """Fold everything not yet folded, batch by batch; how many were folded.
        Resumable: each batch is marked in the transaction that adds it."""
        done = 0
        while True:
            folded = await self.fold_once()
            done += folded
            if progress and folded:
                log.info("analytics rollups: %d orders and ledger entries folded", done)
            if not folded:
                return done

    async def fold_once(self) -> int:
        """One batch of orders and one of ledger entries, if any wait: two indexed
        reads when nothing does."""
        folded = 0
        async with self._lock:
            self._flaws = {}
            try:
                if await self.orders.find_one(self._pending_orders(), {"_id": 1}):
                    marks = await self._transaction(self._fold_orders)
                    await self._mark_orders(marks)
                    folded += len(marks)
                if await self.entries.find_one({"rolled_up": None}, {"_id": 1}):
                    marks = await self._transaction(self._fold_entries)
                    await self._mark(self.entries, marks)
                    folded += len(marks)
            except TransactionGaveUp:
                log.warning("analytics rollups: the next batch is held by another "
                            "transaction (another fold, or one a stopped node left open "
                            "until the database drops it); folding it on the next run")
            flaws, self._flaws = self._flaws, {}
        for subject, flaw in flaws.items():
            log.error("analytics rollups: %s left out: %s", subject, flaw)
            await self.app.attention.report("analytics.rollups", subject, flaw)
        return folded

    async def _transaction(self, fold: Any) -> dict[Any, Any]:
        return await self.app.store.transaction(fold, give_up_after=FOLD_PATIENCE_SECONDS)

    @staticmethod
    def _pending_orders() -> dict[str, Any]:
        return {"rolled_up": None, "status": {"$in": PAID}}

    async def _fold_orders(self, session: AsyncClientSession) -> dict[Any, Any]:
        """Add up a batch of orders and record each in ``analytics_folded``, in the
        transaction; returns order id -> its mark (True, or "flawed"), which
        ``fold_once`` sets on the orders once the transaction committed. A fold never
        holds an order in an open transaction, so a node killed mid-fold leaves no order
        that a refund or a fulfil must wait for (docs/analytics.md, "Rollups")."""
        docs = await self.orders.find(self._pending_orders(), session=session).sort(
            "paid_at", 1).limit(BATCH).to_list()
        if not docs:
            return {}
        # Folded already but not marked yet (the node stopped right after the commit).
        marks = {d["_id"]: d["mark"] async for d in self.folded.find(
            {"_id": {"$in": [d["_id"] for d in docs]}}, session=session)}
        fresh = [d for d in docs if d["_id"] not in marks]
        flawed = self._flawed("order", fresh, flaw_of_order)
        good = [d for d in fresh if d["_id"] not in flawed]
        sellers = {d["_id"]: d["seller"] if "seller" in d
                   else seller_of([tuple(c) for c in d["credits"]]) for d in good}
        keys = {f"{owner}|{d['user_id']}" for d in good
                for owner in (PLATFORM, sellers[d["_id"]]) if owner is not None}
        buyers = {b["_id"]: b async for b in self.buyers.find(
            {"_id": {"$in": sorted(keys)}}, session=session)}
        before = {k: dict(v) for k, v in buyers.items()}
        deltas = Deltas()
        for doc in good:
            fold_order(doc, sellers[doc["_id"]], local_day(doc["paid_at"], self.zone),
                       deltas, buyers)
        new_marks = {d["_id"]: "flawed" if d["_id"] in flawed else True for d in fresh}
        if new_marks:
            await self.folded.insert_many(
                [{"_id": key, "mark": mark} for key, mark in new_marks.items()],
                session=session)
        changed = [ReplaceOne({"_id": k}, v, upsert=True)
                   for k, v in buyers.items() if before.get(k) != v]
        for collection, writes in ((self.buyers, changed), (self.daily, deltas.writes())):
            if writes:
                await collection.bulk_write(writes, session=session)
        return {**marks, **new_marks}

    @staticmethod
    async def _mark(collection: Any, marks: dict[Any, Any]) -> dict[Any, list[Any]]:
        """After a fold committed: mark its documents ``rolled_up`` (True, or "flawed":
        not tried again), each a short write of its own; if the node stops in between,
        the next fold finds them in ``analytics_folded`` and only marks them. Returns the
        ids by mark."""
        by_mark: dict[Any, list[Any]] = {}
        for key, mark in marks.items():
            by_mark.setdefault(mark, []).append(key)
        # One update per document, not an update_many: SecantusDB runs a multi-document
        # update outside a transaction holding the collection's lock while it retries a
        # conflict, so one racing a refund's open transaction on the same order
        # deadlocked both (seen in a full run: the crash tests hung).
        writes = [UpdateOne({"_id": key, "rolled_up": None}, {"$set": {"rolled_up": mark}})
                  for key, mark in marks.items()]
        if writes:
            await collection.bulk_write(writes, ordered=False)
        return by_mark

    async def _mark_orders(self, marks: dict[Any, Any]) -> None:
        """Mark the folded orders, and name the seller of orders from before ``seller``
        existed (docs/analytics.md)."""
        by_mark = await self._mark(self.orders, marks)
        unnamed = await self.orders.find(
            {"_id": {"$in": by_mark.get(True, [])}, "seller": {"$exists": False}},
            {"credits": 1}).to_list()
        writes = [UpdateOne({"_id": d["_id"]},
                            {"$set": {"seller": seller_of([tuple(c) for c in d["credits"]])}})
                  for d in unnamed]
        if writes:
            await self.orders.bulk_write(writes)

    async def _fold_entries(self, session: AsyncClientSession) -> dict[Any, Any]:
        """As ``_fold_orders`` for ledger entries (``analytics_folded`` ids prefixed
        ``ledger:``): no open fold holds an entry that a refund's booking needs."""
        docs = await self.entries.find({"rolled_up": None}, session=session).sort(
            "created_at", 1).limit(BATCH).to_list()
        if not docs:
            return {}
        marks = {d["_id"].removeprefix(LEDGER): d["mark"] async for d in self.folded.find(
            {"_id": {"$in": [LEDGER + str(d["_id"]) for d in docs]}}, session=session)}
        fresh = [d for d in docs if d["_id"] not in marks]
        deltas = Deltas()
        flawed = self._flawed("ledger", fresh, flaw_of_entry)
        for doc in fresh:
            if doc["_id"] not in flawed:
                fold_entry(doc, local_day(doc["created_at"], self.zone), deltas)
        new_marks = {d["_id"]: "flawed" if d["_id"] in flawed else True for d in fresh}
        if new_marks:
            await self.folded.insert_many(
                [{"_id": LEDGER + str(key), "mark": mark} for key, mark in new_marks.items()],
                session=session)
        if deltas.lines:
            await self.daily.bulk_write(deltas.writes(), session=session)
        return {**marks, **new_marks}

    def _flawed(self, what: str, docs: list[dict[str, Any]], flaw_of: Any) -> set[Any]:
        """The documents of a batch that cannot be folded, kept to be reported once the
        batch is committed: one bad record never stops the rollups for everyone."""
        flawed = {}
        for doc in docs:
            try:
                flaw = flaw_of(doc)
            except Exception as e:  # a document of an unexpected shape
                flaw = repr(e)
            if flaw:
                flawed[doc["_id"]] = flaw
        self._flaws.update((f"{what}:{key}", flaw) for key, flaw in flawed.items())
        return set(flawed)

    async def days(self, owner: str, first: str, last: str | None,
                   projection: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """The owner's daily documents from ``first`` (``""``: the beginning) to
        ``last``, oldest first: one indexed read of at most a document per day."""
        day: dict[str, Any] = {"$gte": first} if last is None else {"$gte": first,
                                                                      "$lte": last}
        cursor = self.daily.find({"owner": owner, "day": day}, projection,
                                 batch_size=5_000).sort("day", 1)
        return await cursor.to_list()
