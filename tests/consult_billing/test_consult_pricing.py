"""A consultation's per-minute rate priced through the price adjusters at accept and
fixed for the session (docs/consult_billing.md, "Coupons and discounts"): percent off
every minute, free minutes, who funds them, the receipt, and the books per minute."""

from __future__ import annotations

from typing import Any

import pytest
from consult_helpers import join, make_pair, state, wait_for_state, wallet

from kpay import hookimpl
from kpay.core.errors import BadRequest, Conflict
from kpay.core.money.adjustments import Adjustment, PriceAdjuster
from kpay.testing import assert_books_balanced as assert_books

USES = "test_minute_deal_uses"


class MinuteDeal(PriceAdjuster):
    """``{"percent": P, "free": N, "funded_by": F, "limit": L}``: P% off each minute and
    the first N minutes free; at most L sessions use it (reserved at accept)."""

    name = "deal"

    async def adjust(self, app: Any, user_id: str, target: Any, value: Any) -> Adjustment | None:
        if value is None:
            return None
        if not isinstance(value, dict) or target.unit != "minute":
            raise BadRequest("bad deal", code="invalid_deal", field="adjust.deal")
        if value.get("expired"):
            raise Conflict("the deal has expired", code="deal_expired")
        off = target.amount * value.get("percent", 0) // 100
        return Adjustment(off, "限时优惠", value.get("funded_by", "seller"),
                          free_units=value.get("free", 0), ref={"limit": value.get("limit", 99)},
                          max_total=value.get("cap"))

    async def reserve(self, app: Any, owner: str, user_id: str, adjustment: dict[str, Any],
                      session: Any) -> None:
        if await app.store[USES].count_documents({}, session=session) >= adjustment["ref"]["limit"]:
            raise Conflict("the deal is used up", code="deal_used_up")
        await app.store[USES].update_one({"_id": owner}, {"$set": {"user_id": user_id}},
                                         upsert=True, session=session)


class DealPlugin:
    @hookimpl
    def register_collections(self, app: Any) -> list[str]:
        return [USES]

    @hookimpl
    def register_price_adjusters(self, app: Any) -> list:
        return [MinuteDeal()]


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("deals", DealPlugin())]


async def start(api: Any, adjust: dict[str, Any], **options: Any) -> tuple[Any, dict, list]:
    pair = await make_pair(api, **options)
    status, body = await api.post("/api/v1/consultations",
                                  {"consultant_id": pair.consultant.user_id, "adjust": adjust},
                                  pair.student.token)
    assert status == 201, body
    pair.consultation_id = body["consultation"]["id"]
    sockets = [await join(api, pair.student, pair), await join(api, pair.consultant, pair)]
    await wait_for_state(api, pair, lambda b: all(b["present"].values()))
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    return pair, body, sockets


async def receipt(api: Any, pair: Any) -> dict[str, Any]:
    status, body = await api.get(pair.path + "/receipt", pair.student.token)
    assert status == 200, body
    return body["receipt"]


EARNED, FEE, PROMO = "earnings:con", "platform:revenue", "platform:promotions"


async def balances(app: Any) -> list[int]:
    return [await app.money.ledger.balance(a) for a in (EARNED, FEE, PROMO)]


@pytest.mark.gen_test(timeout=30)
async def test_twenty_percent_off_every_minute_seller_funded(api, kpay_app):
    pair, accepted, _ = await start(api, {"deal": {"percent": 20}}, rate=100)
    assert accepted["consultation"]["adjustments"] == [{
        "adjuster": "deal", "amount": 20, "label": "限时优惠", "funded_by": "seller",
        "free_units": 0, "max_total": None}]
    for _ in range(2):
        await kpay_app.advance_clock(60)
    body = await wait_for_state(api, pair, lambda b: b["billed_minutes"] == 3)
    c = body
    assert (c["charged"], c["discount"], c["consultant_earned"], c["platform_fee"]) == (
        240, 60, 180, 60)
    assert await wallet(api, pair.student) == 10_000 - 240
    assert await balances(kpay_app) == [180, 60, 0]
    r = await receipt(api, pair)
    assert [m["amount"] for m in r["minutes"]] == [80, 80, 80]
    assert r["booked"] == r["charged"] == 240
    await assert_books(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_two_free_minutes_platform_funded(api, kpay_app):
    pair, accepted, _ = await start(api, {"deal": {"free": 2, "funded_by": "platform"}},
                                    rate=100)
    assert accepted["consultation"]["charged"] == 0
    for _ in range(2):
        await kpay_app.advance_clock(60)
    body = await wait_for_state(api, pair, lambda b: b["billed_minutes"] == 3)
    c = body
    assert (c["charged"], c["discount"], c["consultant_earned"], c["platform_fee"]) == (
        100, 200, 240, 60)
    assert await wallet(api, pair.student) == 10_000 - 100
    assert await balances(kpay_app) == [240, 60, -200]
    assert [m["amount"] for m in (await receipt(api, pair))["minutes"]] == [0, 0, 100]
    await assert_books(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_free_minutes_stop_at_the_adjustments_cap(api, kpay_app):
    """Free minutes at a high rate would let the platform pay without bound (found by a
    review): ``max_total`` caps what one use takes off the whole session."""
    pair, accepted, _ = await start(api, {"deal": {"free": 3, "funded_by": "platform",
                                                   "cap": 150}}, rate=100)
    assert accepted["consultation"]["adjustments"][0]["max_total"] == 150
    for _ in range(3):
        await kpay_app.advance_clock(60)
    body = await wait_for_state(api, pair, lambda b: b["billed_minutes"] == 4)
    assert (body["charged"], body["discount"]) == (250, 150)
    assert [m["amount"] for m in (await receipt(api, pair))["minutes"]] == [0, 50, 100, 100]
    assert await balances(kpay_app) == [320, 80, -150]
    await assert_books(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_a_seller_funded_free_minute_moves_no_money(api, kpay_app):
    pair, accepted, _ = await start(api, {"deal": {"free": 1}}, rate=100)
    assert accepted["consultation"]["charged"] == 0
    await kpay_app.advance_clock(60)
    body = await wait_for_state(api, pair, lambda b: b["billed_minutes"] == 2)
    assert body["charged"] == 100
    r = await receipt(api, pair)
    assert [(m["minute"], m["amount"], m["key"] is None) for m in r["minutes"]] == [
        (1, 0, True), (2, 100, False)]
    assert r["booked"] == 100
    await assert_books(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_the_minimum_is_judged_at_the_discounted_price(api, kpay_app):
    pair = await make_pair(api, rate=100, wallet=250, min_minutes=5)
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                  pair.student.token)
    assert status == 402
    status, body = await api.post("/api/v1/consultations", {
        "consultant_id": "con", "adjust": {"deal": {"free": 3}}}, pair.student.token)
    assert status == 201, body


@pytest.mark.gen_test(timeout=30)
async def test_bad_adjustments_are_refused_at_request(api, kpay_app):
    pair = await make_pair(api)
    for adjust, code in (({"coupon": "X"}, "unknown_adjustment"),
                         ({"deal": "x"}, "invalid_deal"),
                         ({"deal": {"pad": "x" * 2000}}, "invalid_field")):
        status, body = await api.post("/api/v1/consultations", {
            "consultant_id": "con", "adjust": adjust}, pair.student.token)
        assert (status, body["error"]["code"]) == (400, code), body
    assert (await api.get("/api/v1/consultations", pair.student.token))[1][
        "consultations"] == []


@pytest.mark.gen_test(timeout=30)
async def test_a_deal_used_up_by_accept_time_ends_the_request(api, kpay_app):
    await kpay_app.store[USES].insert_one({"_id": "someone else", "user_id": "x"})
    pair, body, _ = await start(api, {"deal": {"percent": 50, "limit": 1}})
    assert body["error"]["code"] == "adjustment_refused", body
    assert body["error"]["reason"] == "deal_used_up"
    now = await state(api, pair)
    assert (now["status"], now["end_reason"], now["billed_minutes"]) == (
        "ended", "adjustment_refused", 0)
    assert await wallet(api, pair.student) == 10_000
    assert await kpay_app.store[USES].count_documents({}) == 1
    await assert_books(kpay_app)
