"""What part of a consultant's earnings may be withdrawn now (docs/money.md, "Payouts").

Money credited to ``earnings:<id>`` is ``pending`` for ``[payouts] hold_days`` after the
ledger entry that credited it (its ``created_at``); a debit (a refund) counts at once,
and money a payout returned was withdrawable before and stays so. ``withdrawable`` is
the balance less what is pending, never below 0.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.client_session import AsyncClientSession

from kpay.core.money import accounts

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Payout states whose money went back to the earnings (not counted in a day's total).
RETURNED = ("failed", "expired", "cancelled")
#: Days are Beijing days (the daily maximum, the dates money frees up).
BEIJING = timezone(timedelta(hours=8))


async def summary(app: KPay, user_id: str,
                  session: AsyncClientSession | None = None) -> dict[str, Any]:
    """``{"balance", "pending", "withdrawable", "frees": [{"date", "amount"}],
    "min_amount", "max_per_day", "withdrawn_today", "hold_days"}`` (three reads; in the
    caller's transaction with ``session``)."""
    settings = app.settings.payouts
    account = accounts.earnings(user_id)
    hold = timedelta(days=settings.hold_days)
    balance = await app.money.ledger.balance(account, session)
    frees: dict[str, int] = {}
    pending = 0
    cursor = app.store["ledger"].find(
        {"postings.account": account, "created_at": {"$gt": app.clock.now() - hold}},
        {"postings": 1, "created_at": 1}, session=session)
    async for entry in cursor:
        if entry["_id"].startswith("payout:"):
            continue  # a payout's return was withdrawable money
        credit = sum(p["amount"] for p in entry["postings"] if p["account"] == account)
        if credit <= 0:
            continue
        pending += credit
        day = (entry["created_at"] + hold).astimezone(BEIJING).date().isoformat()
        frees[day] = frees.get(day, 0) + credit
    return {"balance": balance, "pending": min(pending, max(balance, 0)),
            "withdrawable": max(0, balance - pending),
            "frees": [{"date": d, "amount": a} for d, a in sorted(frees.items())],
            "min_amount": settings.min_amount, "max_per_day": settings.max_per_day,
            "withdrawn_today": await withdrawn_today(app, user_id, session),
            "hold_days": settings.hold_days}


async def withdrawn_today(app: KPay, user_id: str,
                          session: AsyncClientSession | None = None) -> int:
    """Fen of the user's payouts asked for since Beijing midnight, less the returned."""
    local = app.clock.now().astimezone(BEIJING)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    total = 0
    async for payout in app.store["payouts"].find(
            {"user_id": user_id, "created_at": {"$gte": midnight},
             "status": {"$nin": list(RETURNED)}}, {"amount": 1}, session=session):
        total += payout["amount"]
    return total
