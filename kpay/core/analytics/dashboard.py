"""The dashboard's figures: revenue, orders, students and the growth series, each a
fixed number of indexed aggregations whatever the number of orders
(docs/analytics.md, "Dashboards").

``owner`` is a seller's user id (their own dashboard) or None (the whole platform).
Days are cut in ``[server] timezone``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from kpay.core.analytics.sections import plugin_sections
from kpay.core.errors import BadRequest
from kpay.core.money import accounts

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: The longest range a dashboard covers, in days.
MAX_DAYS = 366
#: The default range when none is given, in days (today included).
DEFAULT_DAYS = 30
#: The growth model's default range: a trend needs more days than a dashboard.
DEFAULT_GROWTH_DAYS = 90
#: Orders whose money was taken (refunded ones too: their refunds are shown apart).
PAID = ["paid", "fulfilled", "refunded"]
TOP_PRODUCTS = 10
#: Ledger key prefixes (their first four characters) that are revenue.
SALE_KEYS = ("orde", "cons")
REFUND_KEYS = ("refu",)


def parse_range(start: str, end: str, today: date,
                default_days: int = DEFAULT_DAYS) -> tuple[date, date]:
    """``from`` and ``to`` (``YYYY-MM-DD``, both included) checked and bounded; the
    default is the last ``default_days`` days to ``today``."""
    def day(value: str, field: str) -> date:
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise BadRequest(f"{field} must be a date YYYY-MM-DD", code="invalid_field",
                             field=field) from None
    last = day(end, "to") if end else today
    first = day(start, "from") if start else last - timedelta(days=default_days - 1)
    if first > last:
        raise BadRequest("from is after to", code="invalid_field", field="from")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRequest(f"a range is at most {MAX_DAYS} days", code="range_too_long",
                         field="from", limit=MAX_DAYS)
    if first.year < 2000 or last.year > 2200:
        raise BadRequest("dates must be between 2000 and 2200", code="invalid_field",
                         field="from")
    return first, last


def instants(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The first instant of ``first`` and of the day after ``last``, in UTC."""
    start = datetime(first.year, first.month, first.day, tzinfo=zone).astimezone(UTC)
    after = last + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=zone).astimezone(UTC)
    return start, end


def days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def day_of(field: str, zone: ZoneInfo) -> dict[str, Any]:
    return {"$dateToString": {"format": "%Y-%m-%d", "date": field, "timezone": zone.key}}


#: Rows an aggregation answers in its first batch (the default, 101, would take more
#: round trips for a year of days).
BATCH = 5_000


async def rows(collection: Any, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One aggregation, its (small, grouped) result as a list: one round trip."""
    return [row async for row in await collection.aggregate(pipeline, batchSize=BATCH)]


def paid_orders(owner: str | None, start: datetime | None, end: datetime) -> dict[str, Any]:
    """The query of paid orders in a range, on the ``(seller, paid_at)`` or ``(status,
    paid_at)`` index."""
    paid_at: dict[str, Any] = {"$lt": end} if start is None else {"$gte": start, "$lt": end}
    query: dict[str, Any] = {"status": {"$in": PAID}, "paid_at": paid_at}
    if owner is not None:
        query["seller"] = owner
    return query


async def revenue(app: KPay, owner: str | None, start: datetime, end: datetime,
                  zone: ZoneInfo, span: list[str]) -> list[dict[str, Any]]:
    """Per day: ``sales`` (gross, fen), ``refunds`` (given back), ``fees`` (the platform's
    share kept, net of refunded fees), ``net`` = sales - refunds - fees: from the ledger
    entries of the seller's earnings account (every seller's for the platform)."""
    account: Any = accounts.earnings(owner) if owner else {"$regex": "^earnings:"}
    fee = {"postings.account": accounts.PLATFORM_REVENUE}
    mine: dict[str, Any] = {"$or": [{"postings.account": account}, fee]}
    grouped = await rows(app.money.ledger.entries, [
        {"$match": {"postings.account": account, "created_at": {"$gte": start, "$lt": end}}},
        {"$unwind": "$postings"}, {"$match": mine},
        {"$group": {"_id": {"day": day_of("$created_at", zone),
                            "key": {"$substrCP": ["$_id", 0, 4]},
                            "account": "$postings.account"},
                    "amount": {"$sum": "$postings.amount"}}}])
    by_day = {d: {"day": d, "sales": 0, "refunds": 0, "fees": 0, "net": 0} for d in span}
    for row in grouped:
        line = by_day.get(row["_id"]["day"])
        key, amount = row["_id"]["key"], int(row["amount"])
        if line is None or key not in SALE_KEYS + REFUND_KEYS:
            continue
        if key in SALE_KEYS:
            line["sales"] += amount
        else:
            line["refunds"] -= amount
        if row["_id"]["account"] == accounts.PLATFORM_REVENUE:
            line["fees"] += amount
    for line in by_day.values():
        line["net"] = line["sales"] - line["refunds"] - line["fees"]
    return list(by_day.values())


def weekly(daily: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The daily lines summed per week (weeks start on Monday; ``week`` is its Monday)."""
    weeks: dict[str, dict[str, Any]] = {}
    for line in daily:
        day = date.fromisoformat(line["day"])
        monday = (day - timedelta(days=day.weekday())).isoformat()
        week = weeks.setdefault(monday, {"week": monday, "sales": 0, "refunds": 0,
                                         "fees": 0, "net": 0})
        for field in ("sales", "refunds", "fees", "net"):
            week[field] += line[field]
    return list(weeks.values())


async def orders_by_kind(app: KPay, owner: str | None, start: datetime,
                         end: datetime) -> list[dict[str, Any]]:
    grouped = await rows(app.money.orders.collection, [
        {"$match": paid_orders(owner, start, end)},
        {"$group": {"_id": "$kind", "count": {"$sum": 1}, "amount": {"$sum": "$amount"}}},
        {"$sort": {"amount": -1}}])
    return [{"kind": row["_id"], "count": row["count"], "amount": int(row["amount"])}
            for row in grouped]


async def top_products(app: KPay, owner: str | None, start: datetime,
                       end: datetime) -> list[dict[str, Any]]:
    grouped = await rows(app.money.orders.collection, [
        {"$match": paid_orders(owner, start, end)},
        {"$group": {"_id": {"kind": "$kind", "title": "$title"}, "count": {"$sum": 1},
                    "amount": {"$sum": "$amount"}}},
        {"$sort": {"amount": -1, "count": -1}}, {"$limit": TOP_PRODUCTS}])
    return [{"kind": row["_id"]["kind"], "title": row["_id"]["title"],
             "count": row["count"], "amount": int(row["amount"])} for row in grouped]


async def first_orders_per_day(app: KPay, owner: str | None, end: datetime,
                               zone: ZoneInfo) -> dict[str, int]:
    """How many buyers paid their first order (with ``owner``) on each day before
    ``end``: one aggregation, grouped twice on the server."""
    grouped = await rows(app.money.orders.collection, [
        {"$match": paid_orders(owner, None, end)},
        {"$group": {"_id": "$user_id", "first": {"$min": "$paid_at"}}},
        {"$group": {"_id": day_of("$first", zone), "count": {"$sum": 1}}}])
    return {row["_id"]: row["count"] for row in grouped}


async def students(app: KPay, owner: str | None, start: datetime, end: datetime,
                   zone: ZoneInfo, span: list[str]) -> dict[str, Any]:
    """New students per day (their first paid order in the range) and how many who
    had bought before bought again in the range (returning): one aggregation."""
    grouped = await rows(app.money.orders.collection, [
        {"$match": paid_orders(owner, None, end)},
        {"$group": {"_id": "$user_id", "first": {"$min": "$paid_at"},
                    "last": {"$max": "$paid_at"}}},
        {"$match": {"last": {"$gte": start}}},
        {"$group": {"_id": {"$cond": [{"$gte": ["$first", start]},
                                      day_of("$first", zone), "returning"]},
                    "count": {"$sum": 1}}}])
    counts = {row["_id"]: row["count"] for row in grouped}
    daily = [{"day": d, "new": counts.get(d, 0)} for d in span]
    return {"new": sum(line["new"] for line in daily),
            "returning": counts.get("returning", 0), "daily": daily}


async def dashboard(app: KPay, owner: str | None, first: date, last: date) -> dict[str, Any]:
    zone = ZoneInfo(app.settings.server.timezone)
    start, end = instants(first, last, zone)
    span = days(first, last)
    daily = await revenue(app, owner, start, end, zone, span)
    return {"scope": "platform" if owner is None else "owner", "owner_id": owner,
            "from": first.isoformat(), "to": last.isoformat(), "timezone": zone.key,
            "revenue": {"daily": daily, "weekly": weekly(daily),
                        "totals": {f: sum(line[f] for line in daily)
                                   for f in ("sales", "refunds", "fees", "net")}},
            "orders_by_kind": await orders_by_kind(app, owner, start, end),
            "students": await students(app, owner, start, end, zone, span),
            "top_products": await top_products(app, owner, start, end),
            "sections": await plugin_sections(app, owner, start, end)}


async def cumulative_series(app: KPay, series: str, owner: str | None, first: date,
                            last: date) -> list[dict[str, Any]]:
    """The cumulative count at the end of each day: ``users`` (signed up), ``paying``
    (paid a first order), ``students`` (paid a first order with ``owner``)."""
    zone = ZoneInfo(app.settings.server.timezone)
    start, end = instants(first, last, zone)
    span = days(first, last)
    if series == "users":
        users = app.store["users"]
        before = await users.count_documents({"created_at": {"$lt": start}})
        grouped = await rows(users, [
            {"$match": {"created_at": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": day_of("$created_at", zone), "count": {"$sum": 1}}}])
        per_day = {row["_id"]: row["count"] for row in grouped}
    else:
        per_day = await first_orders_per_day(app, owner if series == "students" else None,
                                             end, zone)
        before = sum(count for day, count in per_day.items() if day < span[0])
    total, out = before, []
    for day in span:
        total += per_day.get(day, 0)
        out.append({"day": day, "count": total})
    return out
