"""Check the books: ``kpay reconcile`` and the test suite's final check.

- every ledger transaction's postings are integer fen and sum to zero;
- every account balance equals the sum of its postings;
- no wallet is negative, held + available == balance, and held is 0 (nothing holds
  money);
- a paid order's payment is in the ledger (``order:<id>:pay``), a pending or closed
  order's is not;
- every paid order is fulfilled or refunded (paid and left for over 10 minutes is a
  break: the fulfil job retries every minute);
- no order is refunded beyond its amount, and its ``refunded`` matches its refunds;
- each payout's postings match its state (``payout:<id>:reserve`` always, ``:paid`` only
  when succeeded, ``:return`` only when failed, expired or cancelled), and
  ``payouts:in_flight`` holds exactly the open payouts.

Warnings are listed but are not breaks: an ``earnings:`` account below zero (a refund
after a payout; later earnings make up for it, docs/money.md "Payouts").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from kpay.core.money.accounts import WALLET_KIND, account_of, kind_of

STALE_PAID = timedelta(minutes=10)


@dataclass
class ReconcileReport:
    transactions: int = 0
    accounts: int = 0
    orders: int = 0
    breaks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.breaks

    def text(self) -> str:
        lines = [f"transactions: {self.transactions}", f"accounts: {self.accounts}",
                 f"orders: {self.orders}",
                 "clean" if self.clean else f"{len(self.breaks)} break(s):"]
        lines += [f"  - {b}" for b in self.breaks]
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)


def is_fen(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def reconcile(db: AsyncDatabase, now: datetime) -> ReconcileReport:
    report = ReconcileReport()
    sums = await _check_ledger(db, report)
    await _check_accounts(db, report, sums)
    await _check_orders(db, report, now)
    await _check_payouts(db, report, sums)
    return report


async def _check_ledger(db: AsyncDatabase, report: ReconcileReport) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    async for entry in db["ledger"].find({}, {"postings": 1}):
        report.transactions += 1
        total = 0
        for posting in entry.get("postings", []):
            amount = posting.get("amount")
            if not is_fen(amount):
                report.breaks.append(f"ledger {entry['_id']}: non-integer amount {amount!r}")
                continue
            sums[posting["account"]] += amount
            total += amount
        if total != 0:
            report.breaks.append(f"ledger {entry['_id']}: postings sum to {total}, not 0")
    return sums


async def _check_accounts(db: AsyncDatabase, report: ReconcileReport,
                          sums: dict[str, int]) -> None:
    """Each account's balance (the sum of its documents: a spread account has several,
    docs/money.md "Hot accounts") against its postings; each wallet's own fields."""
    balances: dict[str, int] = defaultdict(int)
    async for account in db["accounts"].find({}):
        name = account_of(account)
        balance = account.get("balance", 0)
        balances[name] += balance
        if kind_of(name) != WALLET_KIND:
            continue
        held, available = account.get("held", 0), account.get("available", 0)
        if balance < 0 or available < 0 or held < 0:
            report.breaks.append(f"wallet {name} is negative: balance {balance}, "
                                 f"held {held}, available {available}")
        if held + available != balance:
            report.breaks.append(
                f"wallet {name}: held {held} + available {available} != balance {balance}")
        if held != 0:
            report.breaks.append(f"wallet {name}: held {held} but nothing holds money")
    report.accounts = len(balances)
    for name, balance in sorted(balances.items()):
        if balance != sums.get(name, 0):
            report.breaks.append(
                f"account {name}: balance {balance} but postings sum to {sums.get(name, 0)}")
        if kind_of(name) == "earnings" and balance < 0:
            report.warnings.append(f"{name} is negative: {balance} fen "
                                   "(made up from later earnings)")
    for name in set(sums) - set(balances):
        if sums[name]:
            report.breaks.append(f"account {name}: postings of {sums[name]} but no balance")


async def _check_orders(db: AsyncDatabase, report: ReconcileReport, now: datetime) -> None:
    pay_keys = set()
    async for entry in db["ledger"].find({"_id": {"$regex": "^order:"}}, {"_id": 1}):
        pay_keys.add(entry["_id"])
    refunded: dict[str, int] = defaultdict(int)
    async for refund in db["refunds"].find({"status": {"$in": ["pending", "succeeded"]}},
                                           {"order_id": 1, "amount": 1}):
        refunded[refund["order_id"]] += refund["amount"]
    stale = now - STALE_PAID
    async for order in db["orders"].find({}, {"status": 1, "paid_at": 1, "amount": 1,
                                              "refunded": 1}):
        report.orders += 1
        oid, status, amount = order["_id"], order.get("status"), order.get("amount", 0)
        if not is_fen(amount) or amount < 0:
            report.breaks.append(f"order {oid}: amount {amount!r} is not integer fen")
            continue
        booked = f"order:{oid}:pay" in pay_keys
        if status in ("paid", "fulfilled", "refunded") and amount and not booked:
            report.breaks.append(f"order {oid}: {status} but its payment is not in the ledger")
        if status in ("pending", "closed") and booked:
            report.breaks.append(f"order {oid}: {status} but a payment is in the ledger")
        if status == "paid" and order.get("paid_at") and order["paid_at"] < stale:
            report.breaks.append(f"order {oid}: paid but not fulfilled")
        if order.get("refunded", 0) > amount:
            report.breaks.append(f"order {oid}: refunded more than paid")
        if order.get("refunded", 0) != refunded.get(oid, 0):
            report.breaks.append(f"order {oid}: refunded {order.get('refunded', 0)} but "
                                 f"its refunds total {refunded.get(oid, 0)}")


PAYOUT_RETURNED = ("failed", "expired", "cancelled")


async def _check_payouts(db: AsyncDatabase, report: ReconcileReport,
                         sums: dict[str, int]) -> None:
    keys = {entry["_id"] async for entry in db["ledger"].find(
        {"_id": {"$regex": "^payout:"}}, {"_id": 1})}
    open_total = 0
    async for payout in db["payouts"].find({}, {"status": 1, "amount": 1}):
        pid, status = payout["_id"], payout.get("status")
        expected = {"reserve": True, "paid": status == "succeeded",
                    "return": status in PAYOUT_RETURNED}
        for step, wanted in expected.items():
            if (f"payout:{pid}:{step}" in keys) != wanted:
                report.breaks.append(f"payout {pid}: {status} but payout:{pid}:{step} is "
                                     f"{'missing from' if wanted else 'in'} the ledger")
        if status not in ("succeeded", *PAYOUT_RETURNED):
            open_total += payout.get("amount", 0)
    if sums.get("payouts:in_flight", 0) != open_total:
        report.breaks.append(f"payouts:in_flight holds {sums.get('payouts:in_flight', 0)} but "
                             f"the open payouts total {open_total}")
