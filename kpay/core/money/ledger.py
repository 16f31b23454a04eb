"""The double-entry ledger with wallet balances and holds.

A ledger transaction is a list of postings ``(account, amount)`` that sum to zero. It
is written in one MongoDB transaction together with every balance it changes, under
a unique idempotency key: writing the same key again returns the first transaction;
the same key with other postings is an error.

Wallet documents keep ``balance`` (all the money in the wallet), ``held`` (reserved by
holds) and ``available`` (balance - held). Spending and holding are guarded in the
update filter (``available >= amount``), never read-then-write, so a wallet cannot go
below zero however many requests race.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from kpay.core import metrics
from kpay.core.errors import ApiError, BadRequest, Conflict, InsufficientBalance
from kpay.core.money import accounts
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay

Postings = Sequence[tuple[str, int]]

INDEXES = [
    IndexSpec.of("ledger", ("postings.account", 1), ("created_at", -1)),
    IndexSpec.of("holds", "wallet", "status"),
]


@dataclass(frozen=True)
class LedgerTransaction:
    key: str
    postings: list[tuple[str, int]]
    memo: str
    created_at: datetime
    meta: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False


def normalise(postings: Postings) -> list[tuple[str, int]]:
    """Validate postings: integer fen, known account names, summing to zero."""
    if not postings:
        raise BadRequest("a ledger transaction needs postings", code="invalid_postings")
    merged: dict[str, int] = {}
    for account, amount in postings:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise BadRequest(f"amount for {account} must be integer fen",
                             code="invalid_postings")
        if ":" not in account:
            raise BadRequest(f"account {account!r} must be '<kind>:<name>'",
                             code="invalid_postings")
        merged[account] = merged.get(account, 0) + amount
    if sum(merged.values()) != 0:
        raise BadRequest("postings must sum to zero", code="unbalanced_postings")
    return sorted((a, v) for a, v in merged.items() if v)


class Ledger:
    def __init__(self, app: KPay) -> None:
        self.app = app
        self.accounts = app.store["accounts"]
        self.entries = app.store["ledger"]
        self.holds = app.store["holds"]

    # -- reading -------------------------------------------------------------------

    async def balance(self, account: str) -> int:
        doc = await self.accounts.find_one({"_id": account}, {"balance": 1})
        return int(doc["balance"]) if doc else 0

    async def wallet(self, user_id: str) -> dict[str, int]:
        doc = await self.accounts.find_one({"_id": accounts.wallet(user_id)}) or {}
        return {"balance": int(doc.get("balance", 0)), "held": int(doc.get("held", 0)),
                "available": int(doc.get("available", 0))}

    async def entries_of(self, account: str, limit: int, before: datetime | None) -> list[dict]:
        query: dict[str, Any] = {"postings.account": account}
        if before is not None:
            query["created_at"] = {"$lt": before}
        cursor = self.entries.find(query).sort("created_at", -1).limit(limit)
        out = []
        async for doc in cursor:
            amount = sum(p["amount"] for p in doc["postings"] if p["account"] == account)
            out.append({"key": doc["_id"], "amount": amount, "memo": doc.get("memo", ""),
                        "created_at": doc["created_at"], "meta": doc.get("meta", {})})
        return out

    # -- writing -------------------------------------------------------------------

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
            return await self._write(session, key, lines, memo, meta or {})
        try:
            return await self.app.store.transaction(
                lambda s: self._write(s, key, lines, memo, meta or {}))
        except DuplicateKeyError:
            return await self.replay(key, lines)

    async def replay(self, key: str, lines: list[tuple[str, int]]) -> LedgerTransaction:
        """The transaction already written under ``key``, if it has these postings."""
        doc = await self.entries.find_one({"_id": key})
        if doc is None:
            raise ApiError("ledger write failed; retry", code="ledger_retry", status=503)
        existing = [(p["account"], p["amount"]) for p in doc["postings"]]
        if existing != lines:
            raise Conflict(f"idempotency key {key!r} was used for other postings",
                           code="idempotency_conflict")
        return LedgerTransaction(key, existing, doc.get("memo", ""), doc["created_at"],
                                 doc.get("meta", {}), replayed=True)

    async def _write(self, session: AsyncClientSession, key: str,
                     lines: list[tuple[str, int]], memo: str,
                     meta: dict[str, Any]) -> LedgerTransaction:
        now = self.app.clock.now()
        await self.entries.insert_one(
            {"_id": key, "postings": [{"account": a, "amount": v} for a, v in lines],
             "memo": memo, "meta": meta, "created_at": now},
            session=session,
        )
        for account, amount in lines:
            await self._apply(session, account, amount, now)
        metrics.LEDGER_TRANSACTIONS.inc()
        return LedgerTransaction(key, lines, memo, now, meta)

    async def _apply(self, session: AsyncClientSession, account: str, amount: int,
                     now: datetime) -> None:
        if accounts.kind_of(account) != accounts.WALLET_KIND:
            await self.accounts.update_one(
                {"_id": account}, {"$inc": {"balance": amount}, "$set": {"updated_at": now}},
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

    # -- holds -----------------------------------------------------------------------

    async def hold(self, key: str, user_id: str, amount: int, memo: str = "") -> dict:
        """Reserve ``amount`` of a wallet under ``key`` (idempotent). The money stays in
        the wallet (``balance``) but cannot be spent (``available``) until the hold is
        captured or released."""
        if not isinstance(amount, int) or amount <= 0:
            raise BadRequest("a hold amount must be positive integer fen", code="invalid_amount")
        wallet = accounts.wallet(user_id)

        async def write(session: AsyncClientSession) -> dict:
            hold = {"_id": key, "wallet": wallet, "amount": amount, "status": "held",
                    "memo": memo, "created_at": self.app.clock.now()}
            await self.holds.insert_one(hold, session=session)
            result = await self.accounts.update_one(
                {"_id": wallet, "available": {"$gte": amount}},
                {"$inc": {"held": amount, "available": -amount}}, session=session)
            if result.matched_count == 0:
                raise await self._shortfall(wallet, amount, session)
            return hold

        try:
            return await self.app.store.transaction(write)
        except DuplicateKeyError:
            existing = await self.holds.find_one({"_id": key})
            if existing is None or existing["amount"] != amount or existing["wallet"] != wallet:
                raise Conflict(f"hold key {key!r} was used for another hold",
                               code="idempotency_conflict") from None
            return existing

    async def capture(self, key: str, amount: int, credits: Postings, memo: str = "") -> dict:
        """Spend ``amount`` (at most the held amount) of hold ``key`` to ``credits`` and
        give the rest back to the wallet's available money. Idempotent."""
        return await self._settle(key, amount, credits, memo)

    async def release(self, key: str) -> dict:
        """Give the whole hold back to the wallet's available money. Idempotent."""
        return await self._settle(key, 0, [], "release")

    async def _settle(self, key: str, amount: int, credits: Postings, memo: str) -> dict:
        if not isinstance(amount, int) or amount < 0:
            raise BadRequest("capture amount must be integer fen", code="invalid_amount")

        async def write(session: AsyncClientSession) -> dict:
            hold = await self.holds.find_one_and_update(
                {"_id": key, "status": "held"},
                {"$set": {"status": "captured" if amount else "released",
                          "captured": amount, "settled_at": self.app.clock.now()}},
                session=session, return_document=True)
            if hold is None:
                return await self._settled(key, session)
            if amount > hold["amount"]:
                raise BadRequest(f"capture of {amount} exceeds hold of {hold['amount']}",
                                 code="invalid_amount")
            await self.accounts.update_one(
                {"_id": hold["wallet"]},
                {"$inc": {"held": -hold["amount"], "available": hold["amount"]}},
                session=session)
            if amount:
                await self._write(session, f"hold:{key}:capture",
                                  normalise([(hold["wallet"], -amount), *credits]), memo,
                                  {"hold": key})
            return hold

        return await self.app.store.transaction(write)

    async def _settled(self, key: str, session: AsyncClientSession) -> dict:
        hold = await self.holds.find_one({"_id": key}, session=session)
        if hold is None:
            raise ApiError(f"no hold {key!r}", code="not_found", status=404)
        return hold
