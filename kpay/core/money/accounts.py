"""Ledger account names and the fee split. An account is a string ``<kind>:<name>``.

- ``wallet:<user>``   a user's prepaid wallet; never below zero (guarded in the update)
- ``earnings:<user>`` what a consultant or author has earned
- ``platform:revenue`` the platform's fees
- ``platform:promotions`` what the platform gives away (platform-funded price
  adjustments); it goes negative by what it paid
- ``escrow:<name>``   money set aside by a feature until it is earned or returned
- ``external:<provider>`` the clearing account money enters and leaves through; it
  goes negative by exactly what came in from outside
- ``late:<provider>`` money paid for an order after it was closed, booked when an
  operator refunds it and sent back out by that refund (kpay/core/money/operator.py)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PLATFORM_REVENUE = "platform:revenue"
PLATFORM_PROMOTIONS = "platform:promotions"
WALLET_KIND = "wallet"
EARNINGS_KIND = "earnings"

#: The documents a spread account's balance is kept in: the account's own document and
#: ``<account>#1`` .. ``#<BALANCE_SHARDS - 1>`` (docs/money.md, "Hot accounts"). Readers
#: sum exactly these, so the number may grow but never shrink.
BALANCE_SHARDS = 32


def spreads(account: str, amount: int) -> bool:
    """Whether a posting may land on any shard of the account's balance, so that
    concurrent orders crediting one seller or the platform write different documents.

    Everything but a wallet (whose guard is in the update of its one document) and an
    earnings debit: every debit of earnings goes to the account's own document, which
    the payout guard (``Ledger.guard_debit``) also writes, so debits stay serialised
    while credits, which only add, run side by side.
    """
    kind = kind_of(account)
    return kind != WALLET_KIND and (amount > 0 or kind != EARNINGS_KIND)


def balance_documents(account: str) -> list[str]:
    """The ``_id`` of every document that may hold part of the account's balance
    (account names never contain ``#``: user ids are ``[A-Za-z0-9_.-]``)."""
    if kind_of(account) == WALLET_KIND:
        return [account]
    return [account, *(f"{account}#{k}" for k in range(1, BALANCE_SHARDS))]


def wallet(user_id: str) -> str:
    return f"wallet:{user_id}"


def earnings(user_id: str) -> str:
    return f"{EARNINGS_KIND}:{user_id}"


def escrow(name: str) -> str:
    return f"escrow:{name}"


def external(provider: str) -> str:
    return f"external:{provider}"


def late(provider: str) -> str:
    return f"late:{provider}"


def account_of(doc: Mapping[str, Any]) -> str:
    """The account a document of ``accounts`` holds (part of) the balance of."""
    return str(doc.get("account", doc["_id"]))


def kind_of(account: str) -> str:
    return account.partition(":")[0]


def split_fee(amount: int, fee_bps: int) -> tuple[int, int]:
    """Split ``amount`` fen into (earned, platform fee) with no fen lost.

    The fee is rounded down, so ``earned + fee == amount`` always and the earner gets
    the odd fen.
    """
    if amount < 0:
        raise ValueError("amount must not be negative")
    fee = amount * fee_bps // 10_000
    return amount - fee, fee


def earnings_credits(amount: int, earner: str, fee_bps: int) -> list[tuple[str, int]]:
    """Postings that pay ``earner`` and the platform its fee (zero parts left out)."""
    earned, fee = split_fee(amount, fee_bps)
    credits = [(earnings(earner), earned), (PLATFORM_REVENUE, fee)]
    return [(account, value) for account, value in credits if value]
