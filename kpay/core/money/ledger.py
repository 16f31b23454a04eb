"""The double-entry ledger with wallet balances.

A ledger transaction is a list of postings ``(account, amount)`` that sum to zero. It
is written in one MongoDB transaction together with every balance it changes, under
a unique idempotency key: writing the same key again returns the first transaction;
the same key with other postings is an error.

Wallet documents keep ``balance`` (all the money in the wallet), ``held`` and
``available`` (balance - held). Nothing holds money today, so ``held`` stays 0 (the
field is kept: the wallet API shows it). Spending is guarded in the update filter
(``available >= amount``), never read-then-write, so a wallet cannot go below zero
however many requests race.

Every other account is spread (docs/money.md, "Hot accounts"): a credit lands on one
of ``accounts.BALANCE_SHARDS`` documents picked at random, so concurrent orders of one
seller do not all write one document and abort each other; the balance is their sum
(``balance``), and an earnings debit always writes the account's own document
(``accounts.spreads``, ``guard_debit``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kpay.core import metrics
from kpay.core.errors import ApiError, BadRequest, Conflict, InsufficientBalance
from kpay.core.money import accounts
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay

Postings = Sequence[tuple[str, int]]

INDEXES = [
    IndexSpec.of("ledger", ("postings.account", 1), ("created_at", -1), ("_id", -1)),
]


@dataclass(frozen=True)
class Movement:
    """A ledger transaction to write: what ``Ledger.post_many`` takes."""

    key: str
    postings: Postings
    memo: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerTransaction:
    key: str
    postings: list[tuple[str, int]]
    memo: str
    created_at: datetime
    meta: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False


@dataclass(frozen=True)
class Batch:
    """What ``Ledger.post_many`` wrote: the movements posted, those left out because a
    wallet could not pay, and each wallet's ``available`` after the batch."""

    posted: list[LedgerTransaction]
    short: list[Movement]
    wallets: dict[str, int]


class StaleBatch(Exception):
    """A batch met a change made since its read (a wallet moved, a key was used, an
    account appeared): abort the MongoDB transaction and post one by one."""


def normalise(postings: Postings) -> list[tuple[str, int]]:
    """Validate postings: integer fen, ``<kind>:<name>`` accounts, summing to zero.

    Postings to one account are merged and zero lines dropped; the result is sorted,
    so one movement always has the same lines (that is what a replay compares).
    """
    merged: dict[str, int] = {}
    for account, amount in postings:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise BadRequest(f"amount for {account} must be integer fen",
                             code="invalid_postings")
        kind, _, name = account.partition(":") if isinstance(account, str) else ("", "", "")
        if not kind or not name:
            raise BadRequest(f"account {account!r} must be '<kind>:<name>'",
                             code="invalid_postings")
        merged[account] = merged.get(account, 0) + amount
    if sum(merged.values()) != 0:
        raise BadRequest("postings must sum to zero", code="unbalanced_postings")
    lines = sorted((a, v) for a, v in merged.items() if v)
    if not lines:
        raise BadRequest("a ledger transaction needs postings that move money",
                         code="invalid_postings")
    return lines


def balance_change(account: str, amount: int, now: datetime
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and upsert update that add ``amount`` to a non-wallet account: on a
    random shard document when the posting spreads, else on the account's own."""
    change: dict[str, Any] = {"$inc": {"balance": amount}, "$set": {"updated_at": now}}
    if not accounts.spreads(account, amount):
        return {"_id": account}, change
    shard = random.randrange(1, accounts.BALANCE_SHARDS)
    return {"_id": f"{account}#{shard}"}, {**change, "$setOnInsert": {"account": account}}


def entry_document(key: str, lines: list[tuple[str, int]], memo: str,
                   meta: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"_id": key, "postings": [{"account": a, "amount": v} for a, v in lines],
            "memo": memo, "meta": meta, "created_at": now}


class Ledger:
    def __init__(self, app: KPay) -> None:
        self.app = app
        self.accounts = app.store["accounts"]
        self.entries = app.store["ledger"]

    # -- reading -------------------------------------------------------------------

    async def balance(self, account: str, session: AsyncClientSession | None = None) -> int:
        """The account's balance: the sum of its documents (one read)."""
        parts = await self._balances(account, session)
        return sum(parts.values())

    async def _balances(self, account: str, session: AsyncClientSession | None
                        ) -> dict[str, int]:
        ids = accounts.balance_documents(account)
        cursor = self.accounts.find({"_id": {"$in": ids}}, {"balance": 1}, session=session,
                                    batch_size=len(ids) + 1)
        return {doc["_id"]: int(doc.get("balance", 0)) async for doc in cursor}

    async def wallet(self, user_id: str) -> dict[str, int]:
        doc = await self.accounts.find_one({"_id": accounts.wallet(user_id)}) or {}
        return {"balance": int(doc.get("balance", 0)), "held": int(doc.get("held", 0)),
                "available": int(doc.get("available", 0))}

    async def entries_of(self, account: str, limit: int,
                         before: datetime | str | None = None) -> list[dict[str, Any]]:
        """The account's ledger lines, newest first.

        ``before`` is a time (entries strictly older) or the ``key`` of an entry
        (entries after it in this order: the cursor of the next page, exact even when
        many entries share one millisecond). A key not in this ledger is a 400.
        """
        query: dict[str, Any] = {"postings.account": account}
        if isinstance(before, datetime):
            query["created_at"] = {"$lt": before}
        elif isinstance(before, str):
            anchor = await self.entries.find_one(
                {"_id": before, "postings.account": account}, {"created_at": 1})
            if anchor is None:
                raise BadRequest(f"before: no entry {before!r} in this ledger",
                                 code="invalid_field", field="before")
            at = anchor["created_at"]
            query["$or"] = [{"created_at": {"$lt": at}},
                            {"created_at": at, "_id": {"$lt": before}}]
        cursor = self.entries.find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit)
        out = []
        async for doc in cursor:
            amount = sum(p["amount"] for p in doc["postings"] if p["account"] == account)
            out.append({"key": doc["_id"], "amount": amount, "memo": doc.get("memo", ""),
                        "created_at": doc["created_at"], "meta": doc.get("meta", {})})
        return out

    # -- writing -------------------------------------------------------------------

    async def guard_debit(self, session: AsyncClientSession, account: str, amount: int,
                          keep: int = 0) -> bool:
        """In the caller's transaction: whether ``account`` (not a wallet) can pay
        ``amount`` and still hold ``keep``, checked so that it holds until the commit.

        The sum is read with the session; then the account's own document is written,
        guarded on its balance as read. Every debit of the account writes that document
        (``accounts.spreads``), so a debit since the read fails the guard (False) and
        one racing the commit conflicts with it (the driver retries, reading again);
        credits, in the shards, only add to what was read.
        """
        parts = await self._balances(account, session)
        if sum(parts.values()) < amount + keep:
            return False
        try:
            await self.accounts.update_one(
                {"_id": account, "balance": parts.get(account, 0)},
                {"$set": {"updated_at": self.now()}}, upsert=True, session=session)
        except DuplicateKeyError:
            return False  # the account's own document changed since the read
        return True

    async def post(self, key: str, postings: Postings, memo: str = "",
                   meta: dict[str, Any] | None = None,
                   session: AsyncClientSession | None = None) -> LedgerTransaction:
        """Write one balanced transaction under ``key``, exactly once.

        With ``session``, it joins the caller's MongoDB transaction (the caller owns
        commit and retry); without, it runs in a transaction of its own. Raises
        InsufficientBalance when a wallet cannot pay (nothing is written).
        """
        lines = normalise(postings)
        if session is not None:
            # The caller's transaction: a used key aborts it with DuplicateKeyError.
            return await self._write(session, key, lines, memo, meta or {})
        for _attempt in range(3):
            try:
                return await self.app.store.transaction(
                    lambda s: self._write(s, key, lines, memo, meta or {}))
            except DuplicateKeyError:
                replayed = await self.replay(key, lines)
                if replayed is not None:
                    return replayed
                # Nothing under the key: the duplicate was a racing first insert of an
                # account document (upsert). The transaction rolled back; run it again.
        raise ApiError("ledger write failed; retry", code="ledger_retry", status=503)

    async def replay(self, key: str, lines: list[tuple[str, int]]) -> LedgerTransaction | None:
        """The transaction already written under ``key`` (None if there is none).
        Raises Conflict ``idempotency_conflict`` if it has other postings."""
        doc = await self.entries.find_one({"_id": key})
        if doc is None:
            return None
        existing = [(p["account"], p["amount"]) for p in doc["postings"]]
        if existing != lines:
            raise Conflict(f"idempotency key {key!r} was used for other postings",
                           code="idempotency_conflict", key=key)
        return LedgerTransaction(key, existing, doc.get("memo", ""), doc["created_at"],
                                 doc.get("meta", {}), replayed=True)

    async def _write(self, session: AsyncClientSession, key: str,
                     lines: list[tuple[str, int]], memo: str,
                     meta: dict[str, Any]) -> LedgerTransaction:
        now = self.now()
        await self.entries.insert_one(entry_document(key, lines, memo, meta, now),
                                      session=session)
        for account, amount in lines:
            await self._apply(session, account, amount, now)
        metrics.LEDGER_TRANSACTIONS.inc()
        return LedgerTransaction(key, lines, memo, now, meta)

    def now(self) -> datetime:
        # BSON keeps milliseconds: return the time exactly as a replay will read it.
        now = self.app.clock.now()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    async def post_many(self, session: AsyncClientSession,
                        movements: Sequence[Movement]) -> Batch:
        """Write many ledger transactions in the caller's MongoDB transaction with three
        commands, however many there are: read the wallets they touch, apply the summed
        balance changes in one bulk update, insert their entries.

        A movement that a wallet cannot pay (after the movements before it) is left
        out, in ``Batch.short``. Each wallet's update is guarded on the ``available``
        that was read, so a wallet cannot go below zero and the balances returned are
        exact. Raises StaleBatch when anything changed since the read or a key was
        used before: the caller aborts and posts one by one with ``post``, which tells
        a replay from a conflict.
        """
        prepared = [(m, normalise(m.postings)) for m in movements]
        if len({m.key for m in movements}) != len(movements):
            raise BadRequest("a batch cannot post one key twice", code="invalid_postings")
        wallets = sorted({a for _, lines in prepared for a, _ in lines
                          if accounts.kind_of(a) == accounts.WALLET_KIND})
        # One more than can match, so the first batch is never full and no getMore follows.
        read = self.accounts.find({"_id": {"$in": wallets}}, {"available": 1},
                                  session=session, batch_size=len(wallets) + 1)
        before = {doc["_id"]: int(doc["available"]) async for doc in read}
        available = {w: before.get(w, 0) for w in wallets}
        changes: dict[str, int] = {}
        posted: list[tuple[Movement, list[tuple[str, int]]]] = []
        short: list[Movement] = []
        for movement, lines in prepared:
            if any(available[a] + v < 0 for a, v in lines if a in available):
                short.append(movement)
                continue
            for account, amount in lines:
                changes[account] = changes.get(account, 0) + amount
                if account in available:
                    available[account] += amount
            posted.append((movement, lines))
        if not posted:
            return Batch([], short, available)
        now = self.now()
        updates = [self._summed_update(account, amount, before, now)
                   for account, amount in sorted(changes.items()) if amount]
        try:
            if updates:
                result = await self.accounts.bulk_write(updates, ordered=True,
                                                        session=session)
                if result.matched_count + result.upserted_count != len(updates):
                    raise StaleBatch("a wallet changed since the batch read it")
            await self.entries.insert_many(
                [entry_document(m.key, lines, m.memo, m.meta, now) for m, lines in posted],
                ordered=True, session=session)
        except BulkWriteError as e:
            # A key used before, or an account document inserted since the read.
            raise StaleBatch(f"the batch met an earlier write: {e}") from None
        metrics.LEDGER_TRANSACTIONS.inc(len(posted))
        return Batch([LedgerTransaction(m.key, lines, m.memo, now, m.meta)
                      for m, lines in posted], short, available)

    @staticmethod
    def _summed_update(account: str, amount: int, before: dict[str, int],
                       now: datetime) -> UpdateOne:
        """One account's summed change; a wallet guarded on the ``available`` read."""
        if accounts.kind_of(account) != accounts.WALLET_KIND:
            return UpdateOne(*balance_change(account, amount, now), upsert=True)
        change = {"$inc": {"balance": amount, "available": amount},
                  "$set": {"updated_at": now}}
        if account in before:
            return UpdateOne({"_id": account, "available": before[account]}, change)
        # Only a credit reaches a wallet that did not exist at the read.
        return UpdateOne({"_id": account}, {**change, "$setOnInsert": {"held": 0}},
                         upsert=True)

    async def _apply(self, session: AsyncClientSession, account: str, amount: int,
                     now: datetime) -> None:
        if accounts.kind_of(account) != accounts.WALLET_KIND:
            await self.accounts.update_one(*balance_change(account, amount, now),
                                           upsert=True, session=session)
            return
        change = {"$inc": {"balance": amount, "available": amount},
                  "$set": {"updated_at": now}}
        if amount > 0:
            await self.accounts.update_one({"_id": account}, {**change,
                                           "$setOnInsert": {"held": 0}},
                                           upsert=True, session=session)
            return
        result = await self.accounts.update_one(
            {"_id": account, "available": {"$gte": -amount}}, change, session=session)
        if result.matched_count == 0:
            raise await self._shortfall(account, -amount, session)

    async def _shortfall(self, account: str, needed: int,
                         session: AsyncClientSession) -> InsufficientBalance:
        doc = await self.accounts.find_one({"_id": account}, session=session) or {}
        return InsufficientBalance(needed=needed, balance=int(doc.get("available", 0)))
