"""A consultant's monthly statement (JSON and CSV) matches the ledger to the fen: random
sales, consultation minutes, refunds, payouts and other movements over three months,
then every month's lines sum to its balance change and the months chain."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from kpay.core.money import statements
from kpay.core.money.statements import month_bounds

STATEMENT = "/api/v1/earnings/statement"
SELLER = "seller1"  # the test gadget's seller (tests/money/money_fakes.py)
BEIJING = ZoneInfo("Asia/Shanghai")


def this_month(app) -> str:
    """The month of the app's clock in Beijing (tests run at several pinned instants)."""
    return app.clock.now().astimezone(BEIJING).strftime("%Y-%m")


def test_months_are_cut_in_the_deployment_time_zone():
    zone = ZoneInfo("Asia/Shanghai")
    assert month_bounds("2026-03", zone) == (datetime(2026, 2, 28, 16, tzinfo=UTC),
                                             datetime(2026, 3, 31, 16, tzinfo=UTC))
    assert month_bounds("2200-12", zone)[1] == datetime(2200, 12, 31, 16, tzinfo=UTC)
    assert month_bounds("1970-01", ZoneInfo("UTC"))[0] == datetime(1970, 1, 1, tzinfo=UTC)


async def post(app, key, lines, memo="", **meta):
    await app.money.ledger.post(key, lines, memo=memo, meta=meta)


@pytest.mark.gen_test(timeout=120)
async def test_random_activity_statements_match_the_ledger(api, kpay_app):
    rng = random.Random(15)
    amy = await api.login("amy")
    await api.topup(amy, 100_000)
    earnings = f"earnings:{SELLER}"
    orders = []
    for step in range(60):
        # Tokens expire while the clock runs on: log in again.
        amy, root = await api.login("amy"), await api.login("root", "admin")
        what = rng.choice(["sale", "sale", "minute", "refund", "payout", "other"])
        if what == "sale":
            sku = rng.choice(["g100", "g250", "g999", "g1"])
            status, body = await api.post("/api/v1/orders", {
                "item": {"kind": "test_gadget", "sku": sku}, "channel": "wallet"}, amy)
            assert status == 201, body
            orders.append(body["order"])
        elif what == "minute":
            rate = rng.randint(1, 500)
            await post(kpay_app, f"consult:c{step}:1", [
                ("wallet:amy", -rate), *kpay_app.money.earnings_credits(rate, SELLER)],
                "咨询第 1 分钟")
        elif what == "refund" and orders:
            order = await kpay_app.money.orders.get(rng.choice(orders)["id"])
            if order["refundable"]:
                amount = rng.randint(1, order["refundable"])
                status, body = await api.post(
                    f"/api/v1/admin/orders/{order['_id']}/refund",
                    {"amount": amount, "reason": f"退款{step}", "to": "wallet"}, root)
                assert status == 200, body
        elif what == "payout":
            balance = await kpay_app.money.ledger.balance(earnings)
            if balance > 0:
                amount = rng.randint(1, balance)
                await post(kpay_app, f"payout:p{step}",
                           [(earnings, -amount), ("external:transfers", amount)], "提现")
        else:
            await post(kpay_app, f"question:q{step}:answered",
                       [("escrow:question:q", -300), *kpay_app.money.earnings_credits(300, SELLER)],
                       "=HYPERLINK(\"http://x\")")
            await post(kpay_app, f"question:q{step}:funded", [("wallet:amy", -300),
                                                               ("escrow:question:q", 300)])
        # Hours to days apart: the activity spans March, April and May (Beijing time).
        await kpay_app.advance_clock(rng.randint(3600, 3 * 86400))
    assert kpay_app.clock.now() > datetime(2026, 5, 1, tzinfo=UTC)

    seller = await api.login(SELLER, "consultant")
    months = ["2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
    closing = 0
    for month in months:
        status, data = await api.get(f"{STATEMENT}?month={month}", seller)
        assert status == 200, data
        assert data["opening_balance"] == closing  # the months chain
        lines = data["lines"]
        assert data["closing_balance"] - data["opening_balance"] == sum(
            line["net"] for line in lines) == data["totals"]["net"]
        totals = data["totals"]
        assert sum(totals[c] for c in (*statements.CATEGORIES, "platform_fees")) == totals["net"]
        for line in lines:
            assert line["gross"] + line["fee"] == line["net"]
            start, end = data["from"], data["to"]
            assert start <= line["at"] < end
        closing = data["closing_balance"]
    assert closing == await kpay_app.money.ledger.balance(earnings)
    status, march = await api.get(f"{STATEMENT}?month=2026-03", seller)
    assert march["totals"]["sales"] > 0 and march["totals"]["platform_fees"] < 0
    categories = {line["category"] for m in months for line in
                  (await api.get(f"{STATEMENT}?month={m}", seller))[1]["lines"]}
    assert categories == set(statements.CATEGORIES)
    # Someone else's earnings are not in the caller's statement.
    status, own = await api.get(f"{STATEMENT}?month=2026-03", amy)
    assert own["lines"] == [] and own["account"] == "earnings:amy"


@pytest.mark.gen_test
async def test_the_csv_is_for_excel_and_sums_to_the_same(api, kpay_app):
    amy = await api.login("amy")
    seller = await api.login(SELLER, "consultant")
    await api.topup(amy, 10_000)
    for sku in ("g999", "g250"):
        await api.post("/api/v1/orders", {"item": {"kind": "test_gadget", "sku": sku},
                                          "channel": "wallet"}, amy)
    await post(kpay_app, "question:q:answered", [("escrow:question:q", -300),
               *kpay_app.money.earnings_credits(300, SELLER)], "=cmd|' /C calc'!A0")
    await post(kpay_app, "question:q:funded", [("wallet:amy", -300), ("escrow:question:q", 300)])
    month = this_month(kpay_app)
    status, data = await api.get(f"{STATEMENT}?month={month}", seller)
    assert status == 200, data
    response = await api.http.fetch(f"{api.base}{STATEMENT}?month={month}&format=csv",
                                    headers={"Authorization": f"Bearer {seller}"})
    assert response.headers["Content-Type"].startswith("text/csv")
    assert f"kpay-statement-{month}.csv" in response.headers["Content-Disposition"]
    assert response.body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"))))
    assert rows[0] == list(statements.CSV_HEADER)
    opening, *entries, closing = rows[1:]
    assert opening[1] == "期初余额" and closing[1] == "期末余额"
    assert int(closing[7]) - int(opening[7]) == sum(int(r[7]) for r in entries)
    assert int(closing[7]) == data["closing_balance"] == 999 + 250 + 300 - sum(
        -line["fee"] for line in data["lines"])
    for row in entries:
        for fen, yuan in ((row[5], row[8]), (row[6], row[9]), (row[7], row[10])):
            assert statements.yuan(int(fen)) == yuan
    assert [r[2] for r in entries if r[2].startswith("'")] == ["'=cmd|' /C calc'!A0"]
    first = datetime.fromisoformat(data["lines"][0]["at"]).astimezone(BEIJING)
    assert entries[0][0] == first.strftime("%Y-%m-%d %H:%M:%S")  # Beijing time


@pytest.mark.gen_test
async def test_statement_requests_are_bounded(api, kpay_app, monkeypatch):
    seller = await api.login(SELLER, "consultant")
    for query in ("month=1969-12", "month=2201-01", "month=2026-13", "month=2026-00",
                  "month=2026-3", "month=march", "month=2026-03&format=xml"):
        status, body = await api.get(f"{STATEMENT}?{query}", seller)
        assert status == 400 and body["error"]["code"] == "invalid_field", (query, body)
    status, body = await api.get(STATEMENT)
    assert status == 401
    status, body = await api.get(STATEMENT, seller)  # this month by default
    assert status == 200 and body["month"] == this_month(kpay_app)
    assert body["timezone"] == "Asia/Shanghai"
    amy = await api.login("amy")
    await api.topup(amy, 1000)
    for _ in range(3):
        await api.post("/api/v1/orders", {"item": {"kind": "test_gadget", "sku": "g1"},
                                          "channel": "wallet"}, amy)
    monkeypatch.setattr(statements, "MAX_ENTRIES", 2)
    status, body = await api.get(f"{STATEMENT}?month={this_month(kpay_app)}", seller)
    assert status == 400 and body["error"]["code"] == "statement_too_large"
    assert body["error"]["limit"] == 2
