"""Coupons on orders (live tickets and courses) against a real kpay server and database:
the order's amounts, who funds the discount, refusals, concurrent redemptions, and the
use given back by a closed order or a full refund. The books balance after each."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from coupon_helpers import (
    EARNED,
    FEE,
    ORDERS,
    PROMO,
    balances,
    course,
    make_coupon,
    open_room,
    orders_of,
    publish_course,
    ticket,
    uses,
)

from kpay.core.plugins import available_plugins
from kpay.testing import assert_books_balanced


def test_installed_through_the_entry_point():
    assert available_plugins()["coupons"].module == "kpay_coupons"


# A 990 fen ticket or a 2000 fen course of carol's; the platform keeps 20%.
@pytest.mark.gen_test
@pytest.mark.parametrize(("what", "maker", "off", "paid", "label", "expected"), [
    ("ticket", "consultant", {"off_fen": 500}, 490, "减 5.00 元",
     {EARNED: 292, FEE: 198, PROMO: 0}),
    ("ticket", "admin", {"off_fen": 500, "funded_by": "platform"}, 490, "减 5.00 元",
     {EARNED: 792, FEE: 198, PROMO: -500}),
    ("course", "consultant", {"off_percent": 15}, 1700, "8.5 折",
     {EARNED: 1300, FEE: 400, PROMO: 0}),
    ("course", "admin", {"off_percent": 20, "funded_by": "platform"}, 1600, "8 折",
     {EARNED: 1600, FEE: 400, PROMO: -400}),
])
async def test_a_coupon_lowers_the_price_and_its_funder_pays(
        kpay_app, student, consultant, admin, what, maker, off, paid, label, expected):
    await make_coupon(kpay_app, admin if maker == "admin" else consultant, "SPRING", **off)
    if what == "ticket":
        listed, body = 990, ticket(await open_room(consultant), "spring")  # any case
    else:
        listed, body = 2000, course(await publish_course(consultant), "SPRING")
    await student.topup(3000)
    status, reply = await student.post(ORDERS, body)
    assert status == 201, reply
    order = reply["order"]
    assert (order["amount"], order["list_amount"], order["status"]) == (
        paid, listed, "fulfilled")
    assert order["adjustments"] == [{
        "adjuster": "coupon", "amount": listed - paid, "label": f"优惠券 SPRING {label}",
        "funded_by": "seller" if maker == "consultant" else "platform", "free_units": 0,
        "max_total": None if maker == "consultant" else 5_000}]
    assert (await student.wallet())["balance"] == 3000 - paid
    assert await balances(kpay_app, *expected) == list(expected.values())
    assert await uses(kpay_app, "SPRING") == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_refusals_are_clear_and_write_nothing(kpay_app, api, clock, student, consultant):
    dave = await api.as_user("dave", "consultant")
    room_id = await open_room(consultant)
    await make_coupon(kpay_app, consultant, "SOON",
                      expires_at=(clock.now() + timedelta(hours=1)).isoformat())
    await make_coupon(kpay_app, consultant, "GONE")
    assert (await consultant.post("/api/v1/coupons/GONE/disable"))[0] == 200
    await make_coupon(kpay_app, dave, "DAVE")
    await make_coupon(kpay_app, consultant, "LARGE", min_amount=1000)
    await make_coupon(kpay_app, consultant, "COURSES", kinds=["course"])
    await make_coupon(kpay_app, consultant, "MINUTES", free_minutes=3)
    await clock.advance(3601)
    await student.topup(3000)
    refused = [
        ("NOPE", 404, "coupon_not_found"),
        ("ab", 400, "invalid_coupon"),
        ("A" * 17, 400, "invalid_coupon"),
        ("SPR!NG", 400, "invalid_coupon"),
        (5, 400, "invalid_coupon"),
        ("SOON", 409, "coupon_expired"),
        ("GONE", 409, "coupon_disabled"),
        ("DAVE", 400, "coupon_not_applicable"),
        ("LARGE", 400, "coupon_min_amount"),
        ("COURSES", 400, "coupon_not_applicable"),
        ("MINUTES", 400, "coupon_not_applicable"),
    ]
    for code, status, error in refused:
        got, reply = await student.post(ORDERS, ticket(room_id, code))
        assert (got, reply["error"]["code"], reply["error"]["field"]) == (
            status, error, "adjust.coupon"), (code, reply)
    _, reply = await student.post(ORDERS, ticket(room_id, "LARGE"))
    assert reply["error"]["min_amount"] == 1000
    got, reply = await student.post(ORDERS, {**ticket(room_id), "adjust": {"cupon": "GONE"}})
    assert (got, reply["error"]["code"]) == (400, "unknown_adjustment")
    assert await orders_of(student) == []
    assert (await student.wallet())["balance"] == 3000
    for code in ("SOON", "GONE", "DAVE", "LARGE", "COURSES", "MINUTES"):
        assert await uses(kpay_app, code) == 0
    assert await balances(kpay_app, EARNED, FEE, PROMO) == [0, 0, 0]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=120)
async def test_20_concurrent_redemptions_of_5_uses_make_exactly_5_orders(
        kpay_app, api, consultant, admin):
    await make_coupon(kpay_app, admin, "FIVE", off_fen=100, funded_by="platform", max_uses=5)
    room_id = await open_room(consultant)
    buyers = [await api.as_user(f"buyer{i}") for i in range(20)]
    for buyer in buyers:
        await buyer.topup(890)
    results = await asyncio.gather(*[buyer.post(ORDERS, ticket(room_id, "FIVE"))
                                     for buyer in buyers])
    assert sorted(status for status, _ in results) == [201] * 5 + [409] * 15, results
    assert {body["error"]["code"] for status, body in results if status == 409} == {
        "coupon_used_up"}
    assert await uses(kpay_app, "FIVE") == 5
    assert await balances(kpay_app, PROMO, EARNED) == [-500, 5 * 792]
    assert [(await buyer.wallet())["balance"] for buyer in buyers].count(0) == 5
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_per_user_uses_hold_for_one_buyer_racing_themselves(kpay_app, api, student,
                                                                   consultant):
    await make_coupon(kpay_app, consultant, "TWICE", off_percent=50, per_user=2)
    rooms = [await open_room(consultant, 200) for _ in range(5)]
    await student.topup(1000)
    results = await asyncio.gather(*[student.post(ORDERS, ticket(room_id, "TWICE"))
                                     for room_id in rooms])
    assert sorted(status for status, _ in results) == [201, 201, 409, 409, 409], results
    assert {body["error"]["code"] for status, body in results if status == 409} == {
        "coupon_already_used"}
    assert [o["amount"] for o in await orders_of(student)] == [100, 100]
    # Another buyer still may.
    bob = await api.as_user("bob")
    await bob.topup(200)
    status, body = await bob.post(ORDERS, ticket(rooms[0], "TWICE"))
    assert status == 201 and body["order"]["amount"] == 100
    assert await uses(kpay_app, "TWICE") == 3
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_replayed_order_takes_one_use(kpay_app, api, student, consultant):
    await make_coupon(kpay_app, consultant, "KEYED")
    room_id = await open_room(consultant)
    await student.topup(2000)
    replies = await asyncio.gather(*[
        api.request("POST", ORDERS, ticket(room_id, "KEYED"), token=student.token,
                    headers={"Idempotency-Key": "t-1"}) for _ in range(4)])
    assert {status for status, _ in replies} <= {201, 409}, replies
    assert len(await orders_of(student)) == 1
    assert await uses(kpay_app, "KEYED") == 1
    assert (await student.wallet())["balance"] == 1510
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_an_unpaid_order_that_closes_gives_the_use_back(kpay_app, api, clock, student,
                                                              consultant, fake_wechat):
    await make_coupon(kpay_app, consultant, "ONCE", max_uses=1)
    room_id = await open_room(consultant)
    status, body = await student.post(ORDERS, ticket(room_id, "ONCE", channel="native"))
    assert status == 201, body
    order = body["order"]
    assert (order["status"], order["amount"]) == ("pending", 490)
    assert fake_wechat.orders[order["out_trade_no"]].total_fee == 490
    bob = await api.as_user("bob")
    await bob.topup(990)
    status, body = await bob.post(ORDERS, ticket(room_id, "ONCE"))
    assert status == 409 and body["error"]["code"] == "coupon_used_up"
    # Never paid: the expiry sweep closes it at WeChat and here, and the use comes back.
    await clock.advance(kpay_app.settings.money.order_expiry_seconds + 60)
    assert (await orders_of(student))[0]["status"] == "closed"
    assert await uses(kpay_app, "ONCE") == 0
    status, body = await bob.post(ORDERS, ticket(room_id, "ONCE"))
    assert status == 201 and body["order"]["amount"] == 490
    assert await uses(kpay_app, "ONCE") == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_full_refund_gives_the_use_back_a_partial_one_does_not(kpay_app, student,
                                                                       consultant):
    await make_coupon(kpay_app, consultant, "BACK", off_percent=50)
    course_id = await publish_course(consultant)
    await student.topup(1000)
    status, body = await student.post(ORDERS, course(course_id, "BACK"))
    assert status == 201 and body["order"]["amount"] == 1000, body
    order_id = body["order"]["id"]
    orders = kpay_app.money.orders
    await orders.refund(order_id, 300, "goodwill")
    assert await uses(kpay_app, "BACK") == 1
    assert (await student.wallet())["balance"] == 300
    await assert_books_balanced(kpay_app)
    await orders.refund(order_id, 700, "cancelled", key="rest")
    assert (await orders.get(order_id))["status"] == "refunded"
    assert await uses(kpay_app, "BACK") == 0
    assert (await student.wallet())["balance"] == 1000
    assert await balances(kpay_app, EARNED, FEE, PROMO) == [0, 0, 0]
    await assert_books_balanced(kpay_app)
