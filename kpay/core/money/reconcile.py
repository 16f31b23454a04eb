"""Check the books: ``kpay reconcile`` and the test suite's final check.

- every ledger transaction's postings sum to zero;
- every account balance equals the sum of its postings;
- no wallet is negative, and held + available == balance;
- every paid order is fulfilled or refunded (paid and left for over 10 minutes is a break).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from kpay.core.money.accounts import WALLET_KIND, kind_of


@dataclass
class ReconcileReport:
    transactions: int = 0
    accounts: int = 0
    orders: int = 0
    breaks: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.breaks

    def text(self) -> str:
        lines = [f"transactions: {self.transactions}", f"accounts: {self.accounts}",
                 f"orders: {self.orders}",
                 "clean" if self.clean else f"{len(self.breaks)} break(s):"]
        lines += [f"  - {b}" for b in self.breaks]
        return "\n".join(lines)


async def reconcile(db: AsyncDatabase, now: datetime) -> ReconcileReport:
    report = ReconcileReport()
    sums: dict[str, int] = defaultdict(int)
    async for entry in db["ledger"].find({}, {"postings": 1}):
        report.transactions += 1
        total = 0
        for posting in entry["postings"]:
            amount = posting["amount"]
            if not isinstance(amount, int):
                report.breaks.append(f"ledger {entry['_id']}: non-integer amount {amount!r}")
                continue
            sums[posting["account"]] += amount
            total += amount
        if total != 0:
            report.breaks.append(f"ledger {entry['_id']}: postings sum to {total}, not 0")
    seen = set()
    async for account in db["accounts"].find({}):
        report.accounts += 1
        name = account["_id"]
        seen.add(name)
        balance = account.get("balance", 0)
        if balance != sums.get(name, 0):
            report.breaks.append(
                f"account {name}: balance {balance} but postings sum to {sums.get(name, 0)}")
        if kind_of(name) == WALLET_KIND:
            held, available = account.get("held", 0), account.get("available", 0)
            if balance < 0 or available < 0 or held < 0:
                report.breaks.append(f"wallet {name} is negative: {account}")
            if held + available != balance:
                report.breaks.append(
                    f"wallet {name}: held {held} + available {available} != balance {balance}")
    for name in set(sums) - seen:
        if sums[name]:
            report.breaks.append(f"account {name}: postings of {sums[name]} but no balance")
    stale = now - timedelta(minutes=10)
    async for order in db["orders"].find({}, {"status": 1, "paid_at": 1, "amount": 1,
                                              "refunded": 1}):
        report.orders += 1
        if order["status"] == "paid" and order.get("paid_at") and order["paid_at"] < stale:
            report.breaks.append(f"order {order['_id']}: paid but not fulfilled")
        if order.get("refunded", 0) > order["amount"]:
            report.breaks.append(f"order {order['_id']}: refunded more than paid")
    return report
