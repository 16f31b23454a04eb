"""The dashboard's figures: revenue, orders, students and the growth series, read from
the daily rollups (kpay/core/analytics/rollups.py), so their cost follows the number of
days, not of orders (docs/analytics.md, "Dashboards" and "Rollups").

``owner`` is a seller's user id (their own dashboard) or None (the whole platform).
Days are cut in ``[server] timezone``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from kpay.core.analytics.rollups import PLATFORM
from kpay.core.analytics.sections import plugin_sections
from kpay.core.errors import BadRequest

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: The longest range a dashboard covers, in days.
MAX_DAYS = 366
#: The default range when none is given, in days (today included).
DEFAULT_DAYS = 30
#: The growth model's default range: a trend needs more days than a dashboard.
DEFAULT_GROWTH_DAYS = 90
TOP_PRODUCTS = 10


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


def owner_key(owner: str | None) -> str:
    return PLATFORM if owner is None else owner


def revenue(lines: list[dict[str, Any]], span: list[str]) -> list[dict[str, Any]]:
    """Per day: ``sales`` (gross, fen), ``refunds`` (given back), ``fees`` (the platform's
    share kept, net of refunded fees), ``net`` = sales - refunds - fees."""
    by_day = {line["day"]: line for line in lines}
    out = []
    for day in span:
        line = by_day.get(day, {})
        sales, refunds, fees = (int(line.get(f, 0)) for f in ("sales", "refunds", "fees"))
        out.append({"day": day, "sales": sales, "refunds": refunds, "fees": fees,
                    "net": sales - refunds - fees})
    return out


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


def summed(lines: list[dict[str, Any]], field: str, label: tuple[str, ...]
           ) -> list[dict[str, Any]]:
    """The ``kinds`` or ``products`` maps of the days added up, most money first."""
    total: dict[str, dict[str, Any]] = {}
    for line in lines:
        for key, part in line.get(field, {}).items():
            into = total.setdefault(key, {**{f: part.get(f, "") for f in label},
                                          "count": 0, "amount": 0})
            into["count"] += int(part.get("count", 0))
            into["amount"] += int(part.get("amount", 0))
    return sorted(total.values(), key=lambda p: (-p["amount"], -p["count"],
                                                 *(str(p[f]) for f in label)))


def students(lines: list[dict[str, Any]], first: str, span: list[str]) -> dict[str, Any]:
    """New students per day (their first paid order) and how many who had bought before
    the range bought again in it (returning): each is counted on their first day in the
    range, under the day they had bought last before it (docs/analytics.md)."""
    new = {line["day"]: int(line.get("new", 0)) for line in lines}
    returning = sum(int(count) for line in lines
                    for before, count in line.get("back", {}).items() if before < first)
    daily = [{"day": d, "new": new.get(d, 0)} for d in span]
    return {"new": sum(line["new"] for line in daily), "returning": returning,
            "daily": daily}


async def dashboard(app: KPay, owner: str | None, first: date, last: date) -> dict[str, Any]:
    """The figures of ``first``..``last`` from the rollups: a read of pending folds and
    one of at most a document per day, however many orders there are."""
    zone = ZoneInfo(app.settings.server.timezone)
    start, end = instants(first, last, zone)
    span = days(first, last)
    await app.rollups.fold_once()
    lines = await app.rollups.days(owner_key(owner), span[0], span[-1])
    daily = revenue(lines, span)
    return {"scope": "platform" if owner is None else "owner", "owner_id": owner,
            "from": first.isoformat(), "to": last.isoformat(), "timezone": zone.key,
            "revenue": {"daily": daily, "weekly": weekly(daily),
                        "totals": {f: sum(line[f] for line in daily)
                                   for f in ("sales", "refunds", "fees", "net")}},
            "orders_by_kind": summed(lines, "kinds", ("kind",)),
            "students": students(lines, span[0], span),
            "top_products": summed(lines, "products", ("kind", "title"))[:TOP_PRODUCTS],
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
        await app.rollups.fold_once()
        lines = await app.rollups.days(owner_key(owner if series == "students" else None),
                                       "", span[-1], {"day": 1, "new": 1})
        per_day = {line["day"]: int(line.get("new", 0)) for line in lines}
        before = sum(count for day, count in per_day.items() if day < span[0])
    total, out = before, []
    for day in span:
        total += per_day.get(day, 0)
        out.append({"day": day, "count": total})
    return out
