"""The daily bill check (API v3 only): download WeChat's trade bill of a Beijing day
(申请交易账单, ``GET /v3/bill/tradebill``), check its SHA1, and put every difference
from kpay's orders and refunds on the needs-attention list (source
``wechat_pay.bill_check``). docs/wechat_pay.md, "The daily bill check".

The periodic job ``wechat_pay.bill_check`` checks the previous day once the Beijing
hour reaches ``[wechat_pay] bill_check_hour`` (WeChat makes the bill around 10:00),
and before that hour the day before (a day missed while no node ran). Each day is
claimed with an insert in ``wechat_bill_checks`` before it is checked, so two nodes
or a restart check it once; a claim whose node died is taken over after
``STALE_CLAIM``, and a bill that could not be fetched or believed is tried again
``RETRY_AFTER`` later, at most ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pymongo.errors import DuplicateKeyError

from kpay.core.digits import parse_digits
from plugins.wechat_pay.provider import CHINA
from plugins.wechat_pay.v3_client import V3NoAnswer, V3Refused

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from plugins.wechat_pay.client import WeChatRuntime
    from plugins.wechat_pay.v3_client import V3Runtime

log = logging.getLogger("kpay.wechat_pay.bills")

SOURCE = "wechat_pay.bill_check"
CHECKS = "wechat_bill_checks"
JOB_SECONDS = 600
MAX_BILL_BYTES = 32 * 1024 * 1024
MAX_ROWS = 200_000
#: A day's orders paid this close to midnight may be in the neighbouring day's bill
#: (WeChat's success time and kpay's booking differ by the notify's delay).
MIDNIGHT_SLACK = timedelta(minutes=15)
STALE_CLAIM = timedelta(hours=1)
RETRY_AFTER = timedelta(hours=1)
MAX_ATTEMPTS = 5
PAID = ("paid", "fulfilled", "refunded")
CHUNK = 1000  # numbers per lookup (the core's read methods take at most 1000)


class BillNotReady(Exception):
    """WeChat has not made the bill yet (``STATEMENT_CREATING``): try later, quietly."""


class BillRefused(Exception):
    """No bill to believe: unreachable, refused, hash mismatch, too big, unreadable."""


@dataclass
class BillRow:
    line: int
    out_trade_no: str
    state: str
    amount: int  # fen: 订单金额 of a payment, 申请退款金额 of a refund
    transaction_id: str = ""
    out_refund_no: str = ""
    refund_status: str = ""
    at: str = ""

    def said(self) -> dict[str, Any]:
        return {"line": self.line, "state": self.state, "amount": self.amount,
                "transaction_id": self.transaction_id, "out_refund_no": self.out_refund_no,
                "refund_status": self.refund_status, "time": self.at}


@dataclass
class Bill:
    payments: dict[str, BillRow] = field(default_factory=dict)
    refunds: dict[str, BillRow] = field(default_factory=dict)
    #: (line number, why): rows that could not be read; the others are still compared.
    malformed: list[tuple[int, str]] = field(default_factory=list)
    other_rows: int = 0  # rows of states kpay does not compare (REVOKED ...)
    declared_rows: int | None = None  # 总交易单数 of the summary lines

    @property
    def rows(self) -> int:
        return (len(self.payments) + len(self.refunds) + len(self.malformed)
                + self.other_rows)


def fen(text: str) -> int:
    """Yuan with at most two decimals (``5.00``) as fen; ValueError otherwise."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"amount {text!r} is not a number") from None
    cents = value * 100
    if not value.is_finite() or value < 0 or cents != cents.to_integral_value():
        raise ValueError(f"amount {text!r} is not yuan in fen")
    return int(cents)


def cells(line: str) -> list[str]:
    # Every field of a WeChat bill starts with a backquote (so spreadsheets keep digits).
    return [cell.strip().removeprefix("`") for cell in next(csv.reader([line]), [])]


def parse_bill(data: bytes, max_rows: int = MAX_ROWS) -> Bill:
    """A trade bill of type ALL. A row that cannot be read is listed in ``malformed``
    and the rest is read; a file that is not a bill raises BillRefused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BillRefused("the bill is not UTF-8") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BillRefused("the bill is empty")
    header = cells(lines[0])
    column = {name: i for i, name in enumerate(header)}
    amount_col = column.get("订单金额", column.get("应结订单金额"))
    refund_col = column.get("申请退款金额", column.get("退款金额"))
    needed = ("商户订单号", "交易状态", "商户退款单号", "退款状态")
    if amount_col is None or refund_col is None or any(n not in column for n in needed):
        raise BillRefused("the bill's header lacks the columns kpay reads")
    bill = Bill()
    for number, line in enumerate(lines[1:], start=2):
        row = cells(line)
        if row and row[0] == "总交易单数":
            summary = cells(lines[number]) if number < len(lines) else []
            bill.declared_rows = parse_digits(summary[0]) if summary else None
            break
        if bill.rows >= max_rows:
            raise BillRefused(f"the bill has more than {max_rows} rows")
        try:
            read_row(bill, number, row, header, column, amount_col, refund_col)
        except (ValueError, IndexError) as e:
            bill.malformed.append((number, str(e) or type(e).__name__))
    return bill


def read_row(bill: Bill, number: int, row: list[str], header: list[str],
             column: dict[str, int], amount_col: int, refund_col: int) -> None:
    if len(row) != len(header):
        raise ValueError(f"{len(row)} fields where the header has {len(header)}")
    state, out_trade_no = row[column["交易状态"]], row[column["商户订单号"]]
    if not out_trade_no:
        raise ValueError("no 商户订单号")
    extra = {"transaction_id": row[column["微信订单号"]] if "微信订单号" in column else "",
             "at": row[column["交易时间"]] if "交易时间" in column else ""}
    if state == "SUCCESS":
        if out_trade_no in bill.payments:
            raise ValueError(f"{out_trade_no} is paid twice in the bill")
        bill.payments[out_trade_no] = BillRow(number, out_trade_no, state,
                                              fen(row[amount_col]), **extra)
    elif state == "REFUND":
        out_refund_no = row[column["商户退款单号"]]
        if not out_refund_no or out_refund_no in bill.refunds:
            raise ValueError(f"refund number {out_refund_no!r} is empty or repeated")
        bill.refunds[out_refund_no] = BillRow(
            number, out_trade_no, state, fen(row[refund_col]), out_refund_no=out_refund_no,
            refund_status=row[column["退款状态"]], **extra)
    else:
        bill.other_rows += 1


# -- fetching ---------------------------------------------------------------------------

async def fetch_bill(v3: V3Runtime, day: date) -> Bill:
    """The bill of ``day`` from WeChat, hash checked; empty when WeChat has none (no
    trade that day)."""
    try:
        answer = await v3.client.request(
            "GET", f"v3/bill/tradebill?bill_date={day.isoformat()}&bill_type=ALL")
    except V3Refused as e:
        if e.code == "NO_STATEMENT_EXIST":
            return Bill()
        if e.code == "STATEMENT_CREATING":
            raise BillNotReady(str(e)) from None
        raise BillRefused(str(e)) from None
    except V3NoAnswer as e:
        raise BillRefused(str(e)) from None
    url = str(answer.get("download_url", ""))
    hash_type, hash_value = str(answer.get("hash_type", "")), str(answer.get("hash_value", ""))
    # The download is signed with the merchant's key: only ever to WeChat's own host.
    if urlsplit(url).netloc != urlsplit(v3.merchant.base_url).netloc:
        raise BillRefused(f"download_url {url[:200]!r} is not on the API's host")
    if hash_type.upper() != "SHA1" or not hash_value:
        raise BillRefused(f"unsupported bill hash {hash_type!r}")
    try:
        data = await v3.client.download(url, MAX_BILL_BYTES)
    except V3NoAnswer as e:
        raise BillRefused(str(e)) from None
    if hashlib.sha1(data).hexdigest() != hash_value.lower():
        raise BillRefused("the downloaded bill does not match its SHA1 hash: not believed")
    return parse_bill(data)


# -- comparing --------------------------------------------------------------------------

def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), CHINA)
    return start, start + timedelta(days=1)


def chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


async def compare(app: KPay, day: date, bill: Bill, providers: list[str],
                  day_before: Callable[[], Awaitable[Bill]]) -> dict[str, int]:
    """Report every difference between ``bill`` and kpay; returns the counts.
    ``day_before`` fetches the previous day's bill, for an order kpay booked just after
    midnight that WeChat counted just before."""
    orders = app.money.orders
    start, end = day_bounds(day)
    ours = {o["out_trade_no"]: o async for o in orders.paid_between(
        providers, start - MIDNIGHT_SLACK, end + MIDNIGHT_SLACK)}
    unknown = [n for n in bill.payments if n not in ours]
    for part in chunks(unknown):
        ours.update(await orders.by_out_trade_no(part))
    differences = 0

    async def differ(subject: str, message: str, wechat: dict[str, Any],
                     kpay: dict[str, Any] | None) -> None:
        nonlocal differences
        differences += 1
        await app.attention.report(SOURCE, f"bill:{day.isoformat()}:{subject}", message,
                                   wechat=wechat, kpay=kpay)

    for number, row in bill.payments.items():
        order = ours.get(number)
        said = said_of(order)
        if order is None:
            await differ(number, "paid at WeChat, no such order in kpay", row.said(), None)
        elif order.get("provider") not in providers:
            await differ(number, "paid at WeChat, but kpay's order is not a WeChat Pay one",
                         row.said(), said)
        elif order["status"] not in PAID:
            await differ(number, f"paid at WeChat, but {order['status']} in kpay",
                         row.said(), said)
        elif order["amount"] != row.amount:
            await differ(number, f"WeChat says {row.amount} fen, kpay {order['amount']} fen",
                         row.said(), said)
    earlier: Bill | None = None
    for number, order in ours.items():
        if (number in bill.payments or order.get("provider") not in providers
                or order["status"] not in PAID or not start <= order["paid_at"] < end):
            continue
        if order["paid_at"] < start + MIDNIGHT_SLACK:
            earlier = earlier or await day_before()
            if number in earlier.payments:
                continue  # matched (amount and all) when the day before was checked
        await differ(number, "paid in kpay, not in WeChat's bill", {}, said_of(order))

    theirs: dict[str, dict[str, Any]] = {}
    for part in chunks(list(bill.refunds)):
        theirs.update(await orders.refunding.by_out_refund_no(part))
    for number, row in bill.refunds.items():
        refund = theirs.get(number)
        kpay = None if refund is None else {
            "refund_id": refund["_id"], "order_id": refund["order_id"],
            "amount": refund["amount"], "status": refund["status"]}
        subject = f"{row.out_trade_no}/{number}"
        if refund is None:
            await differ(subject, "refunded at WeChat, no such refund in kpay", row.said(), None)
        elif refund["amount"] != row.amount:
            await differ(subject, f"WeChat refunded {row.amount} fen, kpay {refund['amount']} fen",
                         row.said(), kpay)
        elif row.refund_status == "SUCCESS" and refund["status"] != "succeeded":
            await differ(subject, f"refund succeeded at WeChat, {refund['status']} in kpay",
                         row.said(), kpay)
    for line, why in bill.malformed:
        await differ(f"line:{line}", f"line {line} of WeChat's bill is malformed: {why}",
                     {"line": line}, None)
    if bill.declared_rows is not None and bill.declared_rows != bill.rows:
        await differ("summary", f"the bill declares {bill.declared_rows} rows and holds "
                     f"{bill.rows}", {"declared_rows": bill.declared_rows}, None)
    return {"payments": len(bill.payments), "refunds": len(bill.refunds),
            "malformed": len(bill.malformed), "differences": differences}


def said_of(order: dict[str, Any] | None) -> dict[str, Any] | None:
    if order is None:
        return None
    return {"order_id": order["_id"], "status": order["status"], "amount": order["amount"],
            "provider": order.get("provider"), "transaction_id": order.get("transaction_id"),
            "paid_at": order["paid_at"].isoformat() if order.get("paid_at") else None}


# -- the job ----------------------------------------------------------------------------

def due_day(now: datetime, hour: int) -> date:
    """The day to check at ``now``: yesterday (Beijing) from ``hour`` on, else the day
    before (checked already, unless no node ran then)."""
    local = now.astimezone(CHINA)
    return local.date() - timedelta(days=1 if local.hour >= hour else 2)


def providers_checked(runtime: WeChatRuntime) -> list[str]:
    """The providers whose payments the merchant's bill lists: v3, and v2 after a switch
    (one merchant, one bill); in dev mode v2's fake is another merchant."""
    v3 = runtime.v3
    assert v3 is not None
    if v3.fake is not None:
        return [v3.provider.identifier]
    return [p.identifier for p in runtime.providers()]


async def claim(app: KPay, day: str) -> dict[str, Any] | None:
    """Take ``day`` to check (None when it is checked, or being checked elsewhere)."""
    checks, now = app.store[CHECKS], app.clock.now()
    record = {"_id": day, "status": "checking", "claimed_at": now, "node": app.node_id,
              "attempts": 0}
    try:
        await checks.insert_one(record)
        return record
    except DuplicateKeyError:
        pass
    return await checks.find_one_and_update(
        {"_id": day, "$or": [{"status": "checking", "claimed_at": {"$lt": now - STALE_CLAIM}},
                             {"status": "retry", "retry_at": {"$lte": now}}]},
        {"$set": {"status": "checking", "claimed_at": now, "node": app.node_id}},
        return_document=True)


async def check(app: KPay) -> None:
    """The job: check the due day, once across nodes and restarts."""
    from plugins.wechat_pay import runtime_of

    runtime = runtime_of(app)
    if runtime.v3 is None:
        return  # v2 has its own bill API, not checked here (docs/wechat_pay.md)
    day = due_day(app.clock.now(), runtime.settings.bill_check_hour)
    record = await claim(app, day.isoformat())
    if record is None:
        return
    checks = app.store[CHECKS]
    try:
        bill = await fetch_bill(runtime.v3, day)
        counts = await compare(app, day, bill, providers_checked(runtime),
                               partial(fetch_bill, runtime.v3, day - timedelta(days=1)))
    except BillNotReady as e:
        log.info("bill check %s: WeChat's bill is not ready (%s); later", day, e)
        await checks.update_one({"_id": record["_id"], "status": "checking"},
                                {"$set": {"status": "retry",
                                          "retry_at": app.clock.now() + RETRY_AFTER}})
        return
    except Exception as e:
        # Refused, too many orders, or a bug: the day is reported and tried again.
        attempts = record.get("attempts", 0) + 1
        last = attempts >= MAX_ATTEMPTS
        expected = isinstance(e, BillRefused | OverflowError)
        log.error("bill check %s failed (attempt %d): %s", day, attempts, e,
                  exc_info=None if expected else e)
        await app.attention.report(SOURCE, f"bill:{day.isoformat()}:file",
                                   str(e) if expected else e, attempts=attempts, gave_up=last)
        await checks.update_one({"_id": record["_id"], "status": "checking"}, {"$set": {
            "status": "failed" if last else "retry", "attempts": attempts,
            "error": str(e)[:500], "retry_at": app.clock.now() + RETRY_AFTER}})
        return
    await checks.update_one({"_id": record["_id"]}, {"$set": {
        "status": "done", "checked_at": app.clock.now(), **counts}})
    if counts["differences"]:
        log.warning("bill check %s: %d differences on the attention list (%s)", day,
                    counts["differences"], counts)
    else:
        log.info("bill check %s: clean, %d payments and %d refunds match", day,
                 counts["payments"], counts["refunds"])
