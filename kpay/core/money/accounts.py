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

PLATFORM_REVENUE = "platform:revenue"
PLATFORM_PROMOTIONS = "platform:promotions"
WALLET_KIND = "wallet"


def wallet(user_id: str) -> str:
    return f"wallet:{user_id}"


def earnings(user_id: str) -> str:
    return f"earnings:{user_id}"


def escrow(name: str) -> str:
    return f"escrow:{name}"


def external(provider: str) -> str:
    return f"external:{provider}"


def late(provider: str) -> str:
    return f"late:{provider}"


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
