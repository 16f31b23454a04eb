"""A consultant's monthly statement: every ledger entry of ``earnings:<id>`` in one month
of the deployment's time zone (``[server] timezone``), grouped by what it was, with the
opening and closing balance (docs/money.md, "Statements").

The statement is computed from the ledger alone, so it matches it to the fen: the
opening balance is the sum of the account's postings before the month, each line is
the account's own posting (``net``), and ``opening + sum(net) == closing``. The platform
fee of a line is derived from the ``platform:revenue`` posting of the same ledger
transaction (shared among its earners in proportion); ``gross = net + fee``.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.errors import BadRequest
from kpay.core.money import accounts
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: The most ledger entries one statement holds; a month with more is refused with
#: ``statement_too_large`` rather than answered slowly or cut short.
MAX_ENTRIES = 20_000
#: What a line is, by the prefix of its ledger key; anything else is ``other``.
#: ``payout:`` is the key prefix of withdrawals (issue 15, payouts).
CATEGORY_PREFIXES = (("order:", "sales"), ("consult:", "consultations"),
                     ("refund:", "refunds"), ("payout:", "payouts"))
CATEGORIES = ("sales", "consultations", "refunds", "payouts", "other")
#: The CSV's words for the categories (the file is for the consultant, in Excel).
CATEGORY_LABELS = {"sales": "销售", "consultations": "咨询计费", "refunds": "退款",
                   "payouts": "提现", "other": "其他"}
CSV_HEADER = ("时间", "类别", "说明", "订单", "流水号", "金额(分)", "平台服务费(分)",
              "净额(分)", "金额(元)", "平台服务费(元)", "净额(元)")
MONTH = re.compile(r"^(\d{4})-(\d{2})$")
#: A spreadsheet runs a cell starting with these as a formula: text cells get a quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def month_bounds(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``YYYY-MM`` (1970-01 to 2200-12) as its first instant and the next month's, UTC."""
    match = MONTH.match(month)
    year, number = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (1970 <= year <= 2200 and 1 <= number <= 12):
        raise BadRequest("month must be YYYY-MM between 1970-01 and 2200-12",
                         code="invalid_field", field="month")
    start = datetime(year, number, 1, tzinfo=zone)
    following = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), following.astimezone(UTC)


def category_of(key: str) -> str:
    for prefix, category in CATEGORY_PREFIXES:
        if key.startswith(prefix):
            return category
    return "other"


def fee_share(postings: list[dict[str, Any]], net: int) -> int:
    """The platform fee that goes with an earner's line ``net`` in one transaction.

    A sale credits the earner and ``platform:revenue``; a refund debits both. The fee is
    the revenue line when it moves the same way as the earner's, shared among the
    transaction's earners moving that way in proportion (rounded toward zero)."""
    revenue = sum(p["amount"] for p in postings if p["account"] == accounts.PLATFORM_REVENUE)
    if not revenue or not net or (revenue > 0) != (net > 0):
        return 0
    earned = sum(p["amount"] for p in postings
                 if accounts.kind_of(p["account"]) == "earnings" and (p["amount"] > 0) == (net > 0))
    share = abs(revenue) * abs(net) // abs(earned)
    return share if net > 0 else -share


def yuan(fen: int) -> str:
    """Integer fen as yuan text with two decimals (no float on the way)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


async def statement(app: KPay, user_id: str, month: str) -> dict[str, Any]:
    """The statement of ``earnings:<user_id>`` for ``month`` (``YYYY-MM``)."""
    zone = ZoneInfo(app.settings.server.timezone)
    start, end = month_bounds(month, zone)
    account = accounts.earnings(user_id)
    ledger = app.money.ledger.entries
    opening = 0
    async for row in await ledger.aggregate([
            {"$match": {"postings.account": account, "created_at": {"$lt": start}}},
            {"$unwind": "$postings"}, {"$match": {"postings.account": account}},
            {"$group": {"_id": None, "total": {"$sum": "$postings.amount"}}}]):
        opening = int(row["total"])
    cursor = ledger.find({"postings.account": account,
                          "created_at": {"$gte": start, "$lt": end}}
                         ).sort([("created_at", 1), ("_id", 1)]).limit(MAX_ENTRIES + 1)
    lines = []
    async for entry in cursor:
        if len(lines) == MAX_ENTRIES:
            raise BadRequest(f"this month has more than {MAX_ENTRIES} entries; ask the "
                             "operator for an export", code="statement_too_large",
                             limit=MAX_ENTRIES)
        net = sum(p["amount"] for p in entry["postings"] if p["account"] == account)
        fee = fee_share(entry["postings"], net)
        lines.append({"key": entry["_id"], "at": entry["created_at"].replace(tzinfo=UTC),
                      "category": category_of(entry["_id"]), "memo": entry.get("memo", ""),
                      "order_id": (entry.get("meta") or {}).get("order_id") or "",
                      "gross": net + fee, "fee": -fee, "net": net})
    totals = {category: 0 for category in CATEGORIES}
    fees = 0
    for line in lines:
        totals[line["category"]] += line["gross"]
        fees += line["fee"]
    net_total = sum(line["net"] for line in lines)
    return {"month": month, "timezone": zone.key, "account": account, "currency": "CNY",
            "from": start, "to": end, "opening_balance": opening,
            "closing_balance": opening + net_total,
            "totals": {**totals, "platform_fees": fees, "net": net_total}, "lines": lines}


def statement_csv(data: dict[str, Any]) -> str:
    """The statement as CSV for Excel: a UTF-8 BOM, a header row, the opening balance,
    one row per ledger entry, the closing balance; fen and yuan columns."""
    zone = ZoneInfo(data["timezone"])
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)

    def local(at: datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    def balance_row(at: datetime, label: str, fen: int) -> list[str]:
        return [local(at), label, "", "", "", "", "", str(fen), "", "", yuan(fen)]

    writer.writerow(balance_row(data["from"], "期初余额", data["opening_balance"]))
    for line in data["lines"]:
        writer.writerow([local(line["at"]), CATEGORY_LABELS[line["category"]],
                         cell(line["memo"]), cell(line["order_id"]), cell(line["key"]),
                         line["gross"], line["fee"], line["net"],
                         yuan(line["gross"]), yuan(line["fee"]), yuan(line["net"])])
    writer.writerow(balance_row(data["to"], "期末余额", data["closing_balance"]))
    return out.getvalue()


def cell(text: str) -> str:
    """Text for a CSV cell that a spreadsheet shows as text, never runs as a formula
    (memos carry titles that consultants wrote)."""
    return "'" + text if text.startswith(FORMULA_START) else text


class StatementTotals(BaseModel):
    """Per category the gross amounts (before the platform fee); ``platform_fees`` is
    the fees taken (negative) or given back; ``net`` = closing - opening balance."""

    sales: int
    consultations: int
    refunds: int
    payouts: int
    other: int
    platform_fees: int
    net: int


class StatementLine(BaseModel):
    key: str
    at: datetime
    category: Literal["sales", "consultations", "refunds", "payouts", "other"]
    memo: str
    order_id: str
    gross: int
    fee: int
    net: int


class Statement(BaseModel):
    month: str
    timezone: str
    account: str
    currency: Literal["CNY"]
    model_config = ConfigDict(populate_by_name=True)

    #: The month's first instant and the next month's (``[server] timezone``).
    from_: datetime = Field(alias="from")
    to: datetime
    opening_balance: int
    closing_balance: int
    totals: StatementTotals
    lines: list[StatementLine]


class StatementHandler(BaseHandler):
    @api("The caller's monthly earnings statement (``month`` YYYY-MM in the server's time "
         "zone, default this month); ``format=csv`` answers it as CSV for Excel",
         query=("month", "format"), response=Statement)
    async def get(self) -> None:
        user = self.require_user()
        zone = ZoneInfo(self.kpay.settings.server.timezone)
        month = self.get_query_argument("month", "") or \
            self.kpay.clock.now().astimezone(zone).strftime("%Y-%m")
        form = self.get_query_argument("format", "json")
        if form not in ("json", "csv"):
            raise BadRequest("format is json or csv", code="invalid_field", field="format")
        data = await statement(self.kpay, user.id, month)
        if form == "json":
            self.write_json(data)
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition",
                        f'attachment; filename="kpay-statement-{month}.csv"')
        self.finish(statement_csv(data).encode())


def statement_routes() -> list[Route]:
    return [Route("/api/v1/earnings/statement", StatementHandler, tags=("money",))]
