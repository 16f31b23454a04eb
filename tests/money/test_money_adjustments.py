"""Price adjustments (docs/money.md, "Price adjustments"): who funds a discount, the
reservation taken with the order and given back when it closes or is fully refunded,
refund purposes, and the books after each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from money_fakes import SELLER, Gadget, MoneyTestPlugin
from pymongo.errors import DuplicateKeyError

from kpay import hookimpl
from kpay.core.errors import BadRequest, Conflict
from kpay.core.money.adjustments import Adjustment, PriceAdjuster, adjusted_credits
from kpay.core.money.refunds import reversal

ORDERS = "/api/v1/orders"
COUPONS = "test_coupons"


class Deal(Gadget):
    """The money tests' gadget, with adjustable prices."""

    name = "test_deal"
    adjustable = True


class Voucher(PriceAdjuster):
    """A small coupon: ``{"_id": code, "off", "funded_by", "max_uses", "owners"}``."""

    name = "voucher"

    async def adjust(self, app: Any, user_id: str, target: Any, value: Any) -> Adjustment | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > 16:
            raise BadRequest("a voucher is a short code", code="invalid_voucher",
                             field="adjust.voucher")
        coupon = await app.store[COUPONS].find_one({"_id": value})
        if coupon is None:
            raise BadRequest(f"no voucher {value}", code="invalid_voucher", field="adjust.voucher")
        return Adjustment(coupon["off"], f"优惠券 {value}", coupon["funded_by"],
                          ref={"code": value})

    async def reserve(self, app: Any, owner: str, user_id: str, adjustment: dict[str, Any],
                      session: Any) -> None:
        code = adjustment["ref"]["code"]
        taken = await app.store[COUPONS].update_one(
            {"_id": code, "owners": {"$ne": owner},
             "$expr": {"$lt": [{"$size": "$owners"}, "$max_uses"]}},
            {"$push": {"owners": owner}}, session=session)
        if taken.matched_count == 0:
            raise Conflict(f"voucher {code} is used up", code="voucher_used_up")

    async def release(self, app: Any, owner: str, adjustment: dict[str, Any]) -> None:
        await app.store[COUPONS].update_one({"_id": adjustment["ref"]["code"]},
                                            {"$pull": {"owners": owner}})


class DealPlugin:
    @hookimpl
    def register_collections(self, app: Any) -> list[str]:
        return [COUPONS]

    @hookimpl
    def register_order_kinds(self, app: Any) -> list:
        return [Deal()]

    @hookimpl
    def register_price_adjusters(self, app: Any) -> list:
        return [Voucher()]


@pytest.fixture
def kpay_extra_plugins(money_plugin: MoneyTestPlugin) -> list[tuple[str, Any]]:
    return [("money_test", money_plugin), ("deals", DealPlugin())]


async def voucher(app: Any, code: str, off: int, funded_by: str, max_uses: int = 10) -> None:
    try:
        await app.store[COUPONS].insert_one({"_id": code, "off": off, "funded_by": funded_by,
                                             "max_uses": max_uses, "owners": []})
    except DuplicateKeyError:
        pass


async def uses(app: Any, code: str) -> int:
    return len((await app.store[COUPONS].find_one({"_id": code}))["owners"])


async def balances(app: Any, *accounts: str) -> list[int]:
    return [await app.money.ledger.balance(a) for a in accounts]


def deal(sku: str = "g250") -> dict[str, Any]:
    return {"kind": "test_deal", "sku": sku}


EARNED, FEE, PROMO = f"earnings:{SELLER}", "platform:revenue", "platform:promotions"


@pytest.mark.gen_test
@pytest.mark.parametrize(("funded_by", "expected"), [
    # 250 fen, fee 20%: 200 earned, 50 fee. 30 off:
    ("seller", {EARNED: 170, FEE: 50, PROMO: 0}),
    ("platform", {EARNED: 200, FEE: 50, PROMO: -30}),
    ("pro_rata", {EARNED: 176, FEE: 44, PROMO: 0}),
])
async def test_who_funds_a_discount(api, kpay_app, funded_by, expected):
    await voucher(kpay_app, "V30", 30, funded_by)
    token = await api.login("amy")
    await api.topup(token, 1000)
    status, body = await api.post(ORDERS, {"item": deal(), "channel": "wallet",
                                           "adjust": {"voucher": "V30"}}, token)
    assert status == 201, body
    order = body["order"]
    assert (order["amount"], order["list_amount"]) == (220, 250)
    assert order["adjustments"] == [{"adjuster": "voucher", "amount": 30, "label": "优惠券 V30",
                                     "funded_by": funded_by, "free_units": 0, "max_total": None}]
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 780
    assert await balances(kpay_app, *expected) == list(expected.values())
    assert await uses(kpay_app, "V30") == 1


@pytest.mark.gen_test
async def test_bad_adjustments_write_nothing(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 1000)
    cases = [
        ({"coupon": "X"}, deal(), 400, "unknown_adjustment", "adjust.coupon"),
        ({"voucher": "NOPE"}, deal(), 400, "invalid_voucher", "adjust.voucher"),
        ({"voucher": 5}, deal(), 400, "invalid_voucher", "adjust.voucher"),
        ({"voucher": "V1"}, {"kind": "test_gadget", "sku": "g250"}, 400, "not_adjustable",
         "adjust"),
        ({f"k{i}": 1 for i in range(9)}, deal(), 400, "invalid_field", "adjust"),
    ]
    await voucher(kpay_app, "V1", 1, "seller")
    for adjust, item, status_wanted, code, field in cases:
        status, body = await api.post(ORDERS, {"item": item, "channel": "wallet",
                                               "adjust": adjust}, token)
        assert (status, body["error"]["code"], body["error"].get("field")) == (
            status_wanted, code, field), adjust
    assert await kpay_app.money.orders.collection.count_documents({"kind": "test_deal"}) == 0
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 1000


@pytest.mark.gen_test(timeout=60)
async def test_max_uses_hold_under_20_concurrent_redemptions(api, kpay_app):
    await voucher(kpay_app, "FIVE", 50, "platform", max_uses=5)
    tokens = [await api.login(f"buyer{i}") for i in range(20)]
    for token in tokens:
        await api.topup(token, 500)
    results = await asyncio.gather(*[
        api.post(ORDERS, {"item": deal(), "channel": "wallet", "adjust": {"voucher": "FIVE"}},
                 token) for token in tokens])
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 5 + [409] * 15
    assert {body["error"]["code"] for status, body in results if status == 409} == {
        "voucher_used_up"}
    assert await uses(kpay_app, "FIVE") == 5
    assert await balances(kpay_app, PROMO, EARNED) == [-250, 1000]


@pytest.mark.gen_test
async def test_an_unpaid_order_that_closes_gives_the_use_back(api, kpay_app):
    await voucher(kpay_app, "ONE", 100, "seller", max_uses=1)
    token = await api.login("amy")
    status, body = await api.post(ORDERS, {"item": deal(), "channel": "native",
                                           "adjust": {"voucher": "ONE"}}, token)
    assert status == 201 and body["order"]["amount"] == 150
    assert await uses(kpay_app, "ONE") == 1
    status, again = await api.post(ORDERS, {"item": deal(), "channel": "native",
                                            "adjust": {"voucher": "ONE"}}, token)
    assert status == 409 and again["error"]["code"] == "voucher_used_up"
    await kpay_app.money.orders.close(body["order"]["id"], "expired")
    await kpay_app.money.orders.close(body["order"]["id"], "expired")  # idempotent
    assert await uses(kpay_app, "ONE") == 0


@pytest.mark.gen_test
async def test_a_full_refund_returns_the_use_a_partial_one_does_not(api, kpay_app,
                                                                    money_plugin):
    await voucher(kpay_app, "HALF", 125, "platform")
    token = await api.login("amy")
    await api.topup(token, 1000)
    status, body = await api.post(ORDERS, {"item": deal(), "channel": "wallet",
                                           "adjust": {"voucher": "HALF"}}, token)
    assert status == 201 and body["order"]["amount"] == 125
    order_id = body["order"]["id"]
    orders = kpay_app.money.orders
    first = await orders.refund(order_id, 25, "goodwill")
    assert first["purpose"] == "adjust"
    assert await uses(kpay_app, "HALF") == 1
    # 25 of 125 paid: the platform gets back its share (25) and the credits give 50.
    assert await balances(kpay_app, PROMO, EARNED, FEE) == [-100, 160, 40]
    rest = await orders.refund(order_id, 100, "cancelled", key="rest")
    assert rest["purpose"] == "revoke"
    assert (await orders.get(order_id))["status"] == "refunded"
    assert await uses(kpay_app, "HALF") == 0
    assert await balances(kpay_app, PROMO, EARNED, FEE) == [0, 0, 0]
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 1000
    purposes = [r["purpose"] async for r in orders.refunds.find({"order_id": order_id})]
    assert sorted(purposes) == ["adjust", "revoke"]


@pytest.mark.gen_test
async def test_a_purpose_can_be_said_and_is_checked(api, kpay_app):
    token = await api.login("amy")
    await api.topup(token, 1000)
    _, body = await api.post(ORDERS, {"item": deal("g100"), "channel": "wallet"}, token)
    orders = kpay_app.money.orders
    with pytest.raises(BadRequest):
        await orders.refund(body["order"]["id"], 10, "x", purpose="cancel")
    refund = await orders.refund(body["order"]["id"], 10, "x", purpose="revoke")
    assert refund["purpose"] == "revoke"


@pytest.mark.gen_test
async def test_a_free_order_still_books_what_the_platform_pays(api, kpay_app):
    await voucher(kpay_app, "ALL", 10_000, "platform")
    token = await api.login("amy")
    status, body = await api.post(ORDERS, {"item": deal(), "channel": "native",
                                           "adjust": {"voucher": "ALL"}}, token)
    assert status == 201, body
    order = body["order"]
    assert (order["amount"], order["status"], order["adjustments"][0]["amount"]) == (
        0, "fulfilled", 250)
    assert await balances(kpay_app, PROMO, EARNED, FEE) == [-250, 200, 50]


@pytest.mark.gen_test
async def test_a_replayed_order_with_its_key_takes_one_use(api, kpay_app):
    await voucher(kpay_app, "KEY", 10, "seller")
    token = await api.login("amy")
    await api.topup(token, 1000)
    request = {"item": deal(), "channel": "wallet", "adjust": {"voucher": "KEY"}}
    replies = await asyncio.gather(*[
        api.request("POST", ORDERS, request, token=token, headers={"Idempotency-Key": "k1"})
        for _ in range(5)])
    assert {status for status, _ in replies} <= {201, 409}
    assert await uses(kpay_app, "KEY") == 1
    assert (await kpay_app.money.ledger.wallet("amy"))["balance"] == 760
    # The same key without the voucher is another request.
    status, body = await api.request("POST", ORDERS, {**request, "adjust": {}}, token=token,
                                     headers={"Idempotency-Key": "k1"})
    assert status == 409 and body["error"]["code"] == "idempotency_conflict"


def test_funding_splits_add_up():
    credits = [(EARNED, 200), (FEE, 50)]
    for funded_by in ("seller", "platform", "pro_rata"):
        paid, lines = adjusted_credits(credits, 250, [{"amount": 300, "funded_by": funded_by}])
        assert paid == 0 and sum(v for _, v in lines) == 0
    paid, lines = adjusted_credits(credits, 250, [
        {"amount": 30, "funded_by": "seller"}, {"amount": 20, "funded_by": "platform"}])
    assert paid == 200 and dict(lines) == {EARNED: 170, FEE: 50, PROMO: -20}


def test_max_total_caps_what_an_adjustment_takes_off_in_all():
    credits = [(EARNED, 80), (FEE, 20)]
    capped = {"amount": 30, "funded_by": "platform", "free_units": 2, "max_total": 250}
    offs = [100 - adjusted_credits(credits, 100, [capped], unit=m)[0] for m in range(1, 7)]
    assert offs == [100, 100, 30, 20, 0, 0] and sum(offs) == 250
    paid, lines = adjusted_credits(credits, 100, [{**capped, "free_units": 0, "amount": 90,
                                                   "max_total": 40}])
    assert paid == 60 and dict(lines) == {EARNED: 80, FEE: 20, PROMO: -40}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=4), st.integers(0, 100),
       st.lists(st.integers(1, 100), min_size=1, max_size=5))
def test_refunds_of_a_discounted_order_undo_every_line(values, percent_off, steps):
    """Any order of partial refunds balances each time, takes back no more than each
    account holds, and a 100% refund undoes every line exactly."""
    credits = [[f"earnings:u{i}", v] for i, v in enumerate(values)]
    listed = sum(values)
    paid, lines = adjusted_credits([tuple(c) for c in credits], listed,
                                   [{"amount": listed * percent_off // 100,
                                     "funded_by": "platform"}])
    assume(paid > 0)  # a free order has nothing to refund
    lines = [list(x) for x in lines]
    reversed_so_far: dict[str, int] = {}
    booked = 0
    for step in steps:
        if booked == paid:
            break
        amount = min(paid - booked, max(1, paid * step // 100))
        postings = reversal(lines, [[a, v] for a, v in reversed_so_far.items()], amount, paid,
                            booked)
        assert sum(v for _, v in postings) + amount == 0
        for account, value in postings:
            reversed_so_far[account] = reversed_so_far.get(account, 0) - value
        booked += amount
    if booked < paid:
        postings = reversal(lines, [[a, v] for a, v in reversed_so_far.items()], paid - booked,
                            paid, booked)
        for account, value in postings:
            reversed_so_far[account] = reversed_so_far.get(account, 0) - value
    assert reversed_so_far == {a: v for a, v in lines if v}


@pytest.mark.gen_test
async def test_racing_partial_refunds_that_empty_an_order_revoke_once(api, kpay_app):
    """Each refund's unsaid purpose is judged inside its own reservation: of two halves
    racing, the one that takes the last fen revokes (found by a review: both used to
    read the order first and both 'adjust', so the buyer kept what was fully refunded)."""
    token = await api.login("amy")
    await api.topup(token, 1000)
    _, body = await api.post(ORDERS, {"item": deal("g250"), "channel": "wallet"}, token)
    order_id = body["order"]["id"]
    orders = kpay_app.money.orders
    first, second = await asyncio.gather(orders.refund(order_id, 125, "a", key="half-a"),
                                         orders.refund(order_id, 125, "b", key="half-b"))
    assert sorted([first["purpose"], second["purpose"]]) == ["adjust", "revoke"]
    stored = sorted([r["purpose"] async for r in orders.refunds.find({"order_id": order_id})])
    assert stored == ["adjust", "revoke"]
