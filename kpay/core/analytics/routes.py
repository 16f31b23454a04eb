"""``/api/v1/analytics/*``: the dashboard and the growth model, as JSON or as CSV
(docs/api.md "Analytics")."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.analytics import dashboard as figures
from kpay.core.analytics.growth import fit_growth
from kpay.core.errors import BadRequest, Forbidden
from kpay.core.money.statements import cell, yuan
from kpay.core.web import BaseHandler, Route, api

SERIES = ("users", "paying", "students")
#: Each chart's CSV: its header (Chinese, for Excel) and which fields are fen.
CHARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "revenue_daily": (("day", "sales", "refunds", "fees", "net"),
                      ("日期", "销售额(元)", "退款(元)", "平台服务费(元)", "净收入(元)"),
                      ("sales", "refunds", "fees", "net")),
    "revenue_weekly": (("week", "sales", "refunds", "fees", "net"),
                       ("周(周一)", "销售额(元)", "退款(元)", "平台服务费(元)", "净收入(元)"),
                       ("sales", "refunds", "fees", "net")),
    "orders_by_kind": (("kind", "count", "amount"), ("类型", "订单数", "金额(元)"), ("amount",)),
    "students": (("day", "new"), ("日期", "新学员"), ()),
    "top_products": (("title", "kind", "count", "amount"),
                     ("商品", "类型", "订单数", "金额(元)"), ("amount",)),
}


def to_csv(header: tuple[str, ...], lines: list[list[Any]]) -> bytes:
    """CSV for Excel (UTF-8 BOM); text cells that a spreadsheet would run as a formula
    get a quote (titles are written by sellers)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for line in lines:
        writer.writerow([cell(v) if isinstance(v, str) else v for v in line])
    return out.getvalue().encode()


def chart_lines(data: dict[str, Any], chart: str) -> list[dict[str, Any]]:
    return {"revenue_daily": data["revenue"]["daily"],
            "revenue_weekly": data["revenue"]["weekly"],
            "orders_by_kind": data["orders_by_kind"], "students": data["students"]["daily"],
            "top_products": data["top_products"]}[chart]


class AnalyticsHandler(BaseHandler):
    def range(self, default_days: int = figures.DEFAULT_DAYS) -> tuple[date, date]:
        zone = ZoneInfo(self.kpay.settings.server.timezone)
        today = self.kpay.clock.now().astimezone(zone).date()
        return figures.parse_range(self.get_query_argument("from", ""),
                                   self.get_query_argument("to", ""), today, default_days)

    def owner(self) -> str | None:
        """The caller's own figures, or the platform's (``scope=platform``, admins)."""
        user = self.require_user("consultant", "admin")
        scope = self.get_query_argument("scope", "own")
        if scope not in ("own", "platform"):
            raise BadRequest("scope is own or platform", code="invalid_field", field="scope")
        if scope == "platform":
            if not user.has_role("admin"):
                raise Forbidden("only admins see the whole platform", code="forbidden")
            return None
        return user.id

    def format(self) -> str:
        form = self.get_query_argument("format", "json")
        if form not in ("json", "csv"):
            raise BadRequest("format is json or csv", code="invalid_field", field="format")
        return form

    def send_csv(self, name: str, body: bytes) -> None:
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="kpay-{name}.csv"')
        self.finish(body)


class RevenueLine(BaseModel):
    day: str
    sales: int
    refunds: int
    fees: int
    net: int


class RevenueWeek(BaseModel):
    week: str
    sales: int
    refunds: int
    fees: int
    net: int


class RevenueTotals(BaseModel):
    sales: int
    refunds: int
    fees: int
    net: int


class Revenue(BaseModel):
    daily: list[RevenueLine]
    weekly: list[RevenueWeek]
    totals: RevenueTotals


class KindLine(BaseModel):
    kind: str
    count: int
    amount: int


class ProductLine(BaseModel):
    kind: str
    title: str
    count: int
    amount: int


class NewStudents(BaseModel):
    day: str
    new: int


class Students(BaseModel):
    new: int
    returning: int
    daily: list[NewStudents]


class SectionItem(BaseModel):
    label: str
    value: float
    note: str | None = None


class Section(BaseModel):
    """What a plugin adds (hook ``analytics_sections``): a bar chart."""

    key: str
    title: str
    unit: Literal["count", "minutes", "fen"]
    items: list[SectionItem]


class Dashboard(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    scope: Literal["owner", "platform"]
    owner_id: str | None
    from_: str = Field(alias="from")
    to: str
    timezone: str
    revenue: Revenue
    orders_by_kind: list[KindLine]
    students: Students
    top_products: list[ProductLine]
    sections: list[Section]


class DashboardHandler(AnalyticsHandler):
    @api("The caller's dashboard (``scope=platform``: the whole platform, admins) for "
         "``from``..``to`` (YYYY-MM-DD, server time zone, at most 366 days, default the "
         "last 30); ``format=csv`` with ``chart`` answers one chart's data as CSV",
         roles=("consultant", "admin"), query=("from", "to", "scope", "format", "chart"),
         response=Dashboard)
    async def get(self) -> None:
        owner, (first, last), form = self.owner(), self.range(), self.format()
        chart = self.get_query_argument("chart", "revenue_daily")
        if chart not in CHARTS:
            raise BadRequest(f"chart is one of {', '.join(CHARTS)}", code="invalid_field",
                             field="chart")
        data = await figures.dashboard(self.kpay, owner, first, last)
        if form == "json":
            self.write_json(data)
            return
        fields, header, fen = CHARTS[chart]
        lines = [[yuan(line[f]) if f in fen else line[f] for f in fields]
                 for line in chart_lines(data, chart)]
        self.send_csv(f"{chart}-{first}-{last}", to_csv(header, lines))


class Projection(BaseModel):
    days: int
    n: float
    low: float
    high: float


class GrowthPoint(BaseModel):
    day: str
    count: int


class GrowthFit(BaseModel):
    ok: bool
    days: int
    reason: str | None = None
    message: str | None = None
    n0: float | None = None
    r: float | None = None
    r_month: float | None = None
    doubling_days: float | None = None
    r2: float | None = None
    r_low: float | None = None
    r_high: float | None = None
    level: float | None = None
    projections: list[Projection] = []
    fitted: list[float] = []


class Growth(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    series: Literal["users", "paying", "students"]
    scope: Literal["owner", "platform"]
    from_: str = Field(alias="from")
    to: str
    points: list[GrowthPoint]
    fit: GrowthFit


class GrowthHandler(AnalyticsHandler):
    @api("The growth model N(t) = N0·e^(rt) fitted to a cumulative count per day "
         "(``series`` users or paying: the platform, admins with ``scope=platform``; "
         "students: the caller's own), with r's 95% interval and projections, or the "
         "reason it refuses; ``format=csv`` answers the points and projections as CSV",
         roles=("consultant", "admin"), query=("series", "from", "to", "scope", "format"),
         response=Growth)
    async def get(self) -> None:
        owner, form = self.owner(), self.format()
        series = self.get_query_argument("series", "students")
        if series not in SERIES:
            raise BadRequest("series is users, paying or students", code="invalid_field",
                             field="series")
        if (series == "students") != (owner is not None):
            raise BadRequest("students are a consultant's own; users and paying are the "
                             "platform's (scope=platform)", code="invalid_field",
                             field="series")
        first, last = self.range(figures.DEFAULT_GROWTH_DAYS)
        points = await figures.cumulative_series(self.kpay, series, owner, first, last)
        # The series starts on its first day above zero: days before anyone came say
        # nothing of the growth rate (docs/analytics.md).
        started = next((i for i, p in enumerate(points) if p["count"] > 0), 0)
        points = points[started:]
        fit = fit_growth([p["count"] for p in points])
        if form == "json":
            self.write_json({"series": series, "scope": "owner" if owner else "platform",
                             "from": first.isoformat(), "to": last.isoformat(),
                             "points": points, "fit": fit})
            return
        fitted = fit.get("fitted") or []
        lines = [[p["day"], p["count"], round(fitted[i], 1) if fitted else "", "", ""]
                 for i, p in enumerate(points)]
        for projection in fit.get("projections", []):
            lines.append([f"+{projection['days']}天", "", round(projection["n"], 1),
                          round(projection["low"], 1), round(projection["high"], 1)])
        self.send_csv(f"growth-{series}-{first}-{last}",
                      to_csv(("日期", "累计人数", "模型值", "95%下限", "95%上限"), lines))


def analytics_routes() -> list[Route]:
    return [Route("/api/v1/analytics/dashboard", DashboardHandler, tags=("analytics",)),
            Route("/api/v1/analytics/growth", GrowthHandler, tags=("analytics",))]
