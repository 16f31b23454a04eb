"""Tickets (order kind live_ticket): money, one per user, capacity, provider channel."""

import asyncio

import pytest

from kpay.core.money import accounts
from kpay.testing import assert_books_balanced


@pytest.mark.gen_test
async def test_wallet_ticket_pays_the_host_less_the_fee(api, live):
    host = await live.host()
    room = await live.room(host, start=False, ticket_price=990)
    student = await live.student("s1", funds=2000)
    order = await live.buy_ticket(student, room)
    assert order["kind"] == "live_ticket" and order["amount"] == 990
    assert (await live.wallet(student))["balance"] == 1010
    # platform_fee_bps defaults to 2000 (20 %): 198 fen fee, 792 fen earned.
    assert await live.balance(accounts.earnings("host")) == 792
    assert await live.balance(accounts.PLATFORM_REVENUE) == 198
    _status, body = await api.get(f"/api/v1/rooms/{room['id']}", student)
    assert body["me"]["ticket"] == "active" and body["room"]["sold"] == 1
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_second_ticket_is_refused_and_charges_nothing(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=990)
    student = await live.student("s1", room, funds=5000)
    status, body = await live.order(student, {"kind": "live_ticket", "room_id": room["id"]})
    assert status == 409 and body["error"]["code"] == "already_has_ticket"
    assert (await live.wallet(student))["balance"] == 4010
    status, body = await api.get(f"/api/v1/rooms/{room['id']}", host)
    assert body["room"]["sold"] == 1


@pytest.mark.gen_test
async def test_concurrent_second_orders_charge_once(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=990)
    student = await live.student("s1", funds=5000)
    item = {"kind": "live_ticket", "room_id": room["id"]}
    results = await asyncio.gather(*(live.order(student, item) for _ in range(5)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409, 409, 409, 409], results
    assert (await live.wallet(student))["balance"] == 4010
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_capacity_race_exactly_n_succeed(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=300, capacity=5)
    students = [await live.student(f"s{n}", funds=1000) for n in range(12)]
    item = {"kind": "live_ticket", "room_id": room["id"]}
    results = await asyncio.gather(*(live.order(token, item) for token in students))
    won = [body for status, body in results if status == 201]
    lost = [body for status, body in results if status != 201]
    assert len(won) == 5, results
    assert all(body["error"]["code"] == "sold_out" for body in lost), lost
    balances = sorted([(await live.wallet(t))["balance"] for t in students])
    assert balances == [700] * 5 + [1000] * 7
    _status, body = await api.get(f"/api/v1/rooms/{room['id']}", host)
    assert body["room"]["sold"] == 5
    assert await kpay_app.store["live_tickets"].count_documents({"room_id": room["id"]}) == 5
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_ticket_for_an_ended_room_is_refused(api, live):
    host = await live.host()
    room = await live.room(host)
    await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    student = await live.student("s1", funds=2000)
    status, body = await live.order(student, {"kind": "live_ticket", "room_id": room["id"]})
    assert status == 409 and body["error"]["code"] == "room_ended"
    assert (await live.wallet(student))["balance"] == 2000


@pytest.mark.gen_test
async def test_bad_ticket_orders(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=990)
    poor = await live.student("poor", funds=500)
    status, body = await live.order(poor, {"kind": "live_ticket", "room_id": room["id"]})
    assert status == 402 and body["error"]["code"] == "insufficient_balance"
    assert body["error"]["needed"] == 990
    # The aborted order left no ticket behind: after a top-up the purchase works.
    await api.topup(poor, 500)
    await live.buy_ticket(poor, room)

    status, body = await live.order(host, {"kind": "live_ticket", "room_id": room["id"]})
    assert status == 409 and body["error"]["code"] == "host_needs_no_ticket"
    status, body = await live.order(poor, {"kind": "live_ticket", "room_id": "nope"})
    assert status == 404 and body["error"]["code"] == "room_not_found"
    status, body = await live.order(poor, {"kind": "live_ticket"})
    assert status == 400 and body["error"]["field"] == "item.room_id"


@pytest.mark.gen_test
async def test_free_room_ticket(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    student = await live.student("s1")
    order = await live.buy_ticket(student, room)
    assert order["amount"] == 0 and order["status"] == "fulfilled"
    ws = await api.socket(student)
    assert (await ws.request("sub", ch=f"room:{room['id']}"))["ok"] is True


@pytest.mark.gen_test
async def test_provider_ticket_pending_then_paid_through_dev_simulator(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=990)
    student = await live.student("s1")
    status, body = await live.order(student, {"kind": "live_ticket", "room_id": room["id"]},
                                    channel="native")
    assert status == 201 and body["order"]["status"] == "pending"
    assert body["pay"]["code_url"].startswith("weixin://")
    order_id = body["order"]["id"]
    # Pending: no access yet, and no second order.
    ws = await api.socket(student)
    denied = await ws.request("sub", ch=f"room:{room['id']}")
    assert denied["ok"] is False and denied["error"]["code"] == "forbidden"
    status, again = await live.order(student, {"kind": "live_ticket", "room_id": room["id"]},
                                     channel="native")
    assert status == 409 and again["error"]["code"] == "ticket_pending"
    assert again["error"]["order_id"] == order_id

    for _ in range(2):  # a repeated notify pays once
        status, paid = await api.post(f"/api/v1/dev/orders/{order_id}/pay", token=student)
        assert status == 200 and paid["order"]["status"] == "fulfilled"
    assert (await ws.request("sub", ch=f"room:{room['id']}"))["ok"] is True
    assert await live.balance(accounts.earnings("host")) == 792
    assert await live.balance(accounts.external("localpay")) == -990
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_expired_ticket_order_gives_the_seat_back(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=990, capacity=1)
    student = await live.student("s1")
    status, body = await live.order(student, {"kind": "live_ticket", "room_id": room["id"]},
                                    channel="native")
    assert status == 201
    other = await live.student("s2", funds=2000)
    status, sold_out = await live.order(other, {"kind": "live_ticket", "room_id": room["id"]})
    assert status == 409 and sold_out["error"]["code"] == "sold_out"

    await kpay_app.advance_clock(3600)  # past expiry: the settle job closes the order
    status, order = await api.get(f"/api/v1/orders/{body['order']['id']}", student)
    assert order["order"]["status"] == "closed"
    status, room_now = await api.get(f"/api/v1/rooms/{room['id']}", host)
    assert room_now["room"]["sold"] == 0
    await live.buy_ticket(other, room)
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_a_price_adjustment_keeps_the_ticket_a_revoking_refund_does_not(api, live,
                                                                            kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=990)
    student = await live.student("s1", funds=2000)
    order = await live.buy_ticket(student, room)
    orders = kpay_app.money.orders
    # 1 fen back as goodwill: a price adjustment, the ticket stays good.
    refund = await orders.refund(order["id"], 1, "goodwill")
    assert refund["purpose"] == "adjust"
    _status, body = await api.get(f"/api/v1/rooms/{room['id']}", student)
    assert body["me"]["ticket"] == "active"
    # Half back, said to revoke: the ticket stops letting its holder in.
    refund = await orders.refund(order["id"], 495, "removed", purpose="revoke")
    assert refund["purpose"] == "revoke"
    _status, body = await api.get(f"/api/v1/rooms/{room['id']}", student)
    assert body["me"]["ticket"] == "refunded"
    assert (await live.wallet(student))["balance"] == 2000 - 990 + 496
    await assert_books_balanced(live.app)
