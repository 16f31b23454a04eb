"""Coupons on consultation minutes: percent off every minute or free minutes, fixed at
accept for the session. First the adjuster alone through the core's
``app.money.adjustments``, then whole consultations through consult_billing's API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from coupon_helpers import EARNED, FEE, PROMO, balances, coupon_body, make_coupon, uses

from kpay.core.errors import ApiError
from kpay.core.money.adjustments import PriceTarget
from kpay.testing import assert_books_balanced
from plugins.consult_billing import pricing


def minutes_of(rate: int, seller: str = "carol") -> PriceTarget:
    return PriceTarget("consultation", {"consultant_id": seller}, rate, seller=seller,
                       unit="minute")


async def refusal(app: Any, target: PriceTarget, code: str) -> str:
    with pytest.raises(ApiError) as refused:
        await app.money.adjustments.price("alice", target, {"coupon": code})
    return refused.value.code


@pytest.mark.gen_test
async def test_the_adjuster_prices_minutes(kpay_app, consultant, admin):
    await make_coupon(kpay_app, consultant, "MIN20", off_percent=20, min_amount=100)
    await make_coupon(kpay_app, admin, "FREE3", free_minutes=3, funded_by="platform")
    await make_coupon(kpay_app, consultant, "FIVEYUAN", off_fen=500)
    price = kpay_app.money.adjustments.price
    assert await price("alice", minutes_of(301), {"coupon": "MIN20"}) == [{
        "adjuster": "coupon", "amount": 60, "label": "优惠券 MIN20 8 折",
        "funded_by": "seller", "free_units": 0, "max_total": None, "ref": {"code": "MIN20"}}]
    assert await price("alice", minutes_of(301, "dave"), {"coupon": "FREE3"}) == [{
        "adjuster": "coupon", "amount": 0, "label": "优惠券 FREE3 免费 3 分钟",
        "funded_by": "platform", "free_units": 3, "max_total": 5_000,
        "ref": {"code": "FREE3"}}]
    assert await price("alice", minutes_of(301), {}) == []
    assert await refusal(kpay_app, minutes_of(99), "MIN20") == "coupon_min_amount"
    assert await refusal(kpay_app, minutes_of(300, "dave"), "MIN20") == "coupon_not_applicable"
    assert await refusal(kpay_app, minutes_of(300), "FIVEYUAN") == "coupon_not_applicable"
    assert await uses(kpay_app, "MIN20") == 0  # pricing writes nothing


@pytest.mark.gen_test
async def test_a_consultation_takes_one_use_however_often_reserved(kpay_app, consultant):
    await make_coupon(kpay_app, consultant, "MIN20", off_percent=20, max_uses=1)
    adjustments = await kpay_app.money.adjustments.price("alice", minutes_of(300),
                                                         {"coupon": "MIN20"})

    async def reserve(session: Any) -> None:
        await kpay_app.money.adjustments.reserve("consultation:c1", "alice", adjustments,
                                                 session)

    for _ in range(2):  # the same owner again (a retried transaction): still one use
        await kpay_app.store.transaction(reserve)
    assert await uses(kpay_app, "MIN20") == 1
    with pytest.raises(ApiError) as refused:
        await kpay_app.store.transaction(
            lambda s: kpay_app.money.adjustments.reserve("consultation:c2", "bob",
                                                         adjustments, s))
    assert refused.value.code == "coupon_used_up"
    for _ in range(2):
        await kpay_app.money.adjustments.release("consultation:c1", adjustments)
    assert await uses(kpay_app, "MIN20") == 0


# -- whole consultations --------------------------------------------------------------

async def consultation(api: Any, consultant: Any, student: Any, code: str,
                       rate: int = 100) -> tuple[str, tuple[int, Any], list[Any]]:
    """Request with the coupon, both parties on consult:<id>, accepted: the id, the
    accept's reply and the sockets (kept open so the meter bills on)."""
    status, body = await consultant.put("/api/v1/consultants/me", {
        "rate_per_minute": rate, "min_minutes": 1, "max_minutes": 60})
    assert status == 200, body
    status, body = await student.post("/api/v1/consultations", {
        "consultant_id": consultant.id, "adjust": {"coupon": code}})
    assert status == 201, body
    cid = body["consultation"]["id"]
    sockets = [await party.socket() for party in (student, consultant)]
    for ws in sockets:
        assert (await ws.request("sub", ch=f"consult:{cid}"))["ok"] is True
    await until(student, cid, lambda c: all(c["present"].values()))
    return cid, await consultant.post(f"/api/v1/consultations/{cid}/accept"), sockets


async def until(client: Any, cid: str, check: Any) -> dict[str, Any]:
    for _ in range(250):
        status, body = await client.get(f"/api/v1/consultations/{cid}")
        assert status == 200, body
        if check(body):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"consultation never got there: {body}")


async def three_minutes(kpay_app: Any, student: Any, cid: str) -> dict[str, Any]:
    for _ in range(2):
        await kpay_app.advance_clock(60)
    return await until(student, cid, lambda c: c["billed_minutes"] == 3)


async def receipt(student: Any, cid: str) -> list[int]:
    status, body = await student.get(f"/api/v1/consultations/{cid}/receipt")
    assert status == 200, body
    assert body["receipt"]["booked"] == body["receipt"]["charged"]
    return [m["amount"] for m in body["receipt"]["minutes"]]


@pytest.mark.gen_test(timeout=60)
async def test_twenty_percent_off_every_minute_from_the_seller(kpay_app, api, student,
                                                               consultant):
    await make_coupon(kpay_app, consultant, "MIN20", off_percent=20)
    await student.topup(1000)
    cid, (status, body), _ = await consultation(api, consultant, student, "MIN20")
    assert status == 200, body
    assert body["consultation"]["adjustments"] == [{
        "adjuster": "coupon", "amount": 20, "label": "优惠券 MIN20 8 折",
        "funded_by": "seller", "free_units": 0, "max_total": None}]
    c = await three_minutes(kpay_app, student, cid)
    assert (c["charged"], c["discount"], c["consultant_earned"], c["platform_fee"]) == (
        240, 60, 180, 60)
    assert await receipt(student, cid) == [80, 80, 80]
    assert (await student.wallet())["balance"] == 760
    assert await balances(kpay_app, EARNED, FEE, PROMO) == [180, 60, 0]
    assert await uses(kpay_app, "MIN20") == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_two_free_minutes_from_the_platform(kpay_app, api, student, consultant, admin):
    await make_coupon(kpay_app, admin, "FREE2", free_minutes=2, funded_by="platform")
    await student.topup(1000)
    cid, (status, body), _ = await consultation(api, consultant, student, "free2")
    assert status == 200 and body["consultation"]["charged"] == 0, body
    c = await three_minutes(kpay_app, student, cid)
    assert (c["charged"], c["discount"]) == (100, 200)
    assert await receipt(student, cid) == [0, 0, 100]
    assert await balances(kpay_app, EARNED, FEE, PROMO) == [240, 60, -200]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_a_coupon_used_up_by_accept_time_ends_the_request(kpay_app, api, student,
                                                                consultant, admin):
    await make_coupon(kpay_app, admin, "LAST", off_percent=50, funded_by="platform",
                      max_uses=1)
    dave, bob = await api.as_user("dave", "consultant"), await api.as_user("bob")
    for buyer in (student, bob):
        await buyer.topup(1000)
    # bob asks dave while the one use is still there; then carol accepts alice.
    status, body = await dave.put("/api/v1/consultants/me", {"rate_per_minute": 100})
    assert status == 200, body
    status, body = await bob.post("/api/v1/consultations", {
        "consultant_id": "dave", "adjust": {"coupon": "LAST"}})
    assert status == 201, body
    late = body["consultation"]["id"]
    _, (status, body), _ = await consultation(api, consultant, student, "LAST")
    assert status == 200 and body["consultation"]["charged"] == 50, body
    status, body = await dave.post(f"/api/v1/consultations/{late}/accept")
    assert (status, body["error"]["code"], body["error"]["reason"]) == (
        409, "adjustment_refused", "coupon_used_up"), body
    status, body = await bob.post("/api/v1/consultations", {
        "consultant_id": "dave", "adjust": {"coupon": "LAST"}})
    assert (status, body["error"]["code"]) == (409, "coupon_used_up"), body
    assert (await bob.wallet())["balance"] == 1000
    assert await uses(kpay_app, "LAST") == 1
    assert await balances(kpay_app, PROMO) == [-50]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_platform_coupon_costs_the_platform_at_most_its_cap(kpay_app, admin):
    """Free minutes at the top rate, bought by a consultant's second account, used to be
    paid by the platform without bound (found by a review): max_off_fen caps one use."""
    status, body = await admin.post("/api/v1/coupons", {
        **coupon_body(kpay_app, "NOCAP", free_minutes=3, funded_by="platform"),
        "max_off_fen": None})
    assert status == 400 and body["error"]["field"] == "max_off_fen"
    await make_coupon(kpay_app, admin, "FREE3CAP", free_minutes=3, funded_by="platform",
                      max_off_fen=300)
    rate = 100_000
    [adjustment] = await kpay_app.money.adjustments.price(
        "alice", minutes_of(rate, "dave"), {"coupon": "FREE3CAP"})
    doc = {"rate_per_minute": rate, "adjustments": [adjustment], "minute": 3,
           "credits": [list(c) for c in kpay_app.money.earnings_credits(rate, "dave")]}
    assert pricing.totals(doc)["discount"] == 300
    assert pricing.minute_price(doc, 1)[0] == rate - 300
