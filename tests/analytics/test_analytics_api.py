"""The dashboard and growth routes on data made through the real APIs: wallet orders, an
operator's refund, sign-ups over days; scoping, CSV and bounds (docs/api.md "Analytics")."""

from __future__ import annotations

import math
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from kpay.core.analytics.routes import to_csv
from kpay.testing import assert_books_balanced

DASHBOARD = "/api/v1/analytics/dashboard"
GROWTH = "/api/v1/analytics/growth"
BEIJING = ZoneInfo("Asia/Shanghai")
DAY = 86_400


def today(app) -> str:
    return app.clock.now().astimezone(BEIJING).date().isoformat()


async def buy(api, token, sku):
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "test_gadget", "sku": sku}, "channel": "wallet"}, token)
    assert status == 201, body
    return body["order"]


@pytest.mark.gen_test(timeout=60)
async def test_a_consultant_sees_their_sales_refunds_fees_and_students(api, kpay_app):
    amy, bob = await api.login("amy"), await api.login("bob")
    await api.topup(amy, 5000)
    await api.topup(bob, 5000)
    first_day = today(kpay_app)
    await buy(api, amy, "g999")
    small = await buy(api, amy, "g100")
    await buy(api, bob, "g250")
    kpay_app.clock.advance(DAY)
    amy, bob = await api.login("amy"), await api.login("bob")
    await buy(api, amy, "g250")
    root = await api.login("root", "admin")
    status, body = await api.request("POST", f"/api/v1/admin/orders/{small['id']}/refund",
                                     {"amount": 100, "reason": "测试退款"}, root)
    assert status == 200, body
    second_day = today(kpay_app)
    seller = await api.login("seller1", "consultant")
    status, data = await api.get(f"{DASHBOARD}?from={first_day}&to={second_day}", seller)
    assert status == 200, data
    assert data["scope"] == "owner" and data["owner_id"] == "seller1"
    day1, day2 = data["revenue"]["daily"]
    # Fee 20% (default), rounded down per order: 199 + 20 + 50.
    assert day1 == {"day": first_day, "sales": 1349, "refunds": 0, "fees": 269, "net": 1080}
    # 250 sold (fee 50), 100 refunded with its 20 fee given back.
    assert day2 == {"day": second_day, "sales": 250, "refunds": 100, "fees": 30, "net": 120}
    assert data["revenue"]["totals"]["net"] == 1200
    assert await kpay_app.money.ledger.balance("earnings:seller1") == 1200
    assert sum(w["net"] for w in data["revenue"]["weekly"]) == 1200
    assert data["orders_by_kind"] == [{"kind": "test_gadget", "count": 4, "amount": 1599}]
    assert data["top_products"][0] == {"kind": "test_gadget", "title": "gadget g999",
                                       "count": 1, "amount": 999}
    assert data["students"]["new"] == 2 and data["students"]["returning"] == 0
    assert [d["new"] for d in data["students"]["daily"]] == [2, 0]
    # What a plugin adds (hook analytics_sections), for the same range.
    assert data["sections"] == [{"key": "test_days", "title": "测试区间", "unit": "count",
                                 "items": [{"label": "天数", "value": 2, "note": "本人"}]}]

    # The next day alone: amy bought before, so she is returning, not new.
    status, later = await api.get(f"{DASHBOARD}?from={second_day}&to={second_day}", seller)
    assert later["students"]["new"] == 0 and later["students"]["returning"] == 1

    # Another consultant sees none of it; students and non-admins get no platform.
    carl = await api.login("carl", "consultant")
    status, theirs = await api.get(f"{DASHBOARD}?from={first_day}&to={second_day}", carl)
    assert status == 200 and theirs["revenue"]["totals"]["sales"] == 0
    assert theirs["orders_by_kind"] == [] and theirs["students"]["new"] == 0
    assert (await api.get(DASHBOARD, amy))[0] == 403
    assert (await api.get(f"{DASHBOARD}?scope=platform", seller))[0] == 403
    status, platform = await api.get(
        f"{DASHBOARD}?scope=platform&from={first_day}&to={second_day}", root)
    assert status == 200 and platform["scope"] == "platform"
    kinds = {line["kind"]: line for line in platform["orders_by_kind"]}
    assert kinds["test_gadget"]["count"] == 4 and "wallet_topup" in kinds
    assert platform["revenue"]["totals"]["net"] == 1200

    # Every chart as CSV, in yuan, for Excel.
    status, text, headers = await api.exchange(
        "GET", f"{DASHBOARD}?from={first_day}&to={second_day}&format=csv&chart=revenue_daily",
        token=seller)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    lines = text.lstrip("\ufeff").splitlines()
    assert lines[0] == "日期,销售额(元),退款(元),平台服务费(元),净收入(元)"
    assert lines[1] == f"{first_day},13.49,0.00,2.69,10.80"
    status, text, _ = await api.exchange(
        "GET", f"{DASHBOARD}?from={first_day}&to={second_day}&format=csv&chart=top_products",
        token=seller)
    assert "gadget g999,test_gadget,1,9.99" in text

    # Paying users (first paid order, a top-up too) and the seller's students, per day.
    status, paying = await api.get(
        f"{GROWTH}?series=paying&scope=platform&from={first_day}&to={second_day}", root)
    assert status == 200 and [p["count"] for p in paying["points"]] == [2, 2]
    assert paying["fit"]["reason"] == "too_few_days"
    status, mine = await api.get(
        f"{GROWTH}?series=students&from={first_day}&to={second_day}", seller)
    assert [p["count"] for p in mine["points"]] == [2, 2]
    status, theirs = await api.get(
        f"{GROWTH}?series=students&from={first_day}&to={second_day}", carl)
    assert theirs["points"] == [{"day": first_day, "count": 0}, {"day": second_day, "count": 0}]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize(("query", "code"), [
    ("from=2026-03-02&to=2026-03-01", "invalid_field"),
    ("from=2025-01-01&to=2026-01-02", "range_too_long"),
    ("from=yesterday", "invalid_field"),
    ("from=1066-10-14&to=1066-10-15", "invalid_field"),
    ("format=xml", "invalid_field"),
    ("format=csv&chart=secrets", "invalid_field"),
    ("scope=everyone", "invalid_field")])
async def test_bad_ranges_and_options_are_refused(api, query, code):
    seller = await api.login("seller1", "consultant")
    status, body = await api.get(f"{DASHBOARD}?{query}", seller)
    assert status == 400 and body["error"]["code"] == code, body


def test_csv_cells_never_run_as_formulas():
    text = to_csv(("商品", "订单数"), [["=SUM(A1)", 3], ["+1", 0], ["@cmd", -2], ["普通", 1]])
    assert text.decode().lstrip("\ufeff").splitlines() == [
        "商品,订单数", "'=SUM(A1),3", "'+1,0", "'@cmd,-2", "普通,1"]


@pytest.mark.gen_test(timeout=120)
async def test_growth_of_sign_ups_is_fitted_and_short_series_refused(api, kpay_app):
    # Sign-ups growing 10% a day for 20 days, made through the dev login.
    start = today(kpay_app)
    made = 0
    for day in range(20):
        target = round(5 * math.exp(0.1 * day))
        while made < target:
            await api.login(f"u{made}")
            made += 1
        if day < 19:
            kpay_app.clock.advance(DAY)
    end = today(kpay_app)
    root = await api.login("root", "admin")
    status, body = await api.get(f"{GROWTH}?series=users&scope=platform&from={start}&to={end}",
                                 root)
    assert status == 200, body
    counts = [p["count"] for p in body["points"]]
    assert counts[0] == 5 and counts[-1] == made + 1  # root signed up on the last day
    fit = body["fit"]
    assert fit["ok"], fit
    assert abs(fit["r"] - 0.1) < 0.01
    assert fit["r_low"] < fit["r"] < fit["r_high"]
    assert [p["days"] for p in fit["projections"]] == [30, 90]
    # Too few days: refused in words for the page.
    week_ago = (kpay_app.clock.now().astimezone(BEIJING).date() - timedelta(days=6)).isoformat()
    status, body = await api.get(f"{GROWTH}?series=users&scope=platform&from={week_ago}&to={end}",
                                 root)
    assert body["fit"]["ok"] is False and body["fit"]["message"].startswith("数据不足")
    # A consultant's students are theirs; users are the platform's.
    seller = await api.login("seller1", "consultant")
    status, body = await api.get(f"{GROWTH}?series=students&from={start}&to={end}", seller)
    assert status == 200 and body["fit"]["ok"] is False
    assert (await api.get(f"{GROWTH}?series=users", seller))[0] == 400
    assert (await api.get(f"{GROWTH}?series=users&scope=platform", seller))[0] == 403
    status, text, _ = await api.exchange(
        "GET", f"{GROWTH}?series=users&scope=platform&from={start}&to={end}&format=csv",
        token=root)
    assert status == 200 and text.lstrip("\ufeff").startswith("日期,累计人数,模型值")
    assert "+90天" in text
