"""A room's seats on shard documents (plugins/live_qa/seats.py, docs/live_qa.md "Seats"):
never more sold than the capacity, never a refusal while a seat is left, seats given
back by refunds, capacity edits, and rooms from before the shards."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kpay.testing import assert_books_balanced
from plugins.live_qa import seats
from plugins.live_qa.kinds import LiveTicket

#: Ticket states that hold a seat (a host's removal keeps it; a refund gives it back).
HOLDING = ["pending", "active", "revoked"]


async def seat_books(app: Any, room_id: str) -> tuple[int, int]:
    """Check that the room's seat documents agree with its tickets and its capacity;
    returns (sold, left)."""
    shards = await app.store["live_seats"].find({"room_id": room_id}).to_list(None)
    room = await app.store["live_rooms"].find_one({"_id": room_id})
    held = await app.store["live_tickets"].count_documents(
        {"room_id": room_id, "status": {"$in": HOLDING}})
    sold, left = sum(s["sold"] for s in shards), sum(s["left"] for s in shards)
    assert len(shards) == seats.SHARDS, shards
    assert all(s["left"] >= 0 and s["sold"] >= 0 for s in shards), shards
    assert sold == held and sold + left == room["capacity"], (sold, left, held, room)
    assert "sold" not in room and "seats_left" not in room, room
    return sold, left


async def shown_sold(api: Any, token: str, room_id: str) -> int:
    status, body = await api.get(f"/api/v1/rooms/{room_id}", token)
    assert status == 200, body
    return body["room"]["sold"]


def ticket(room: dict) -> dict:
    return {"kind": "live_ticket", "room_id": room["id"]}


@pytest.mark.gen_test(timeout=60)
async def test_more_buyers_than_seats_buy_exactly_the_capacity(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=300, capacity=9)
    students = [await live.student(f"s{n}", funds=1000) for n in range(24)]
    results = await asyncio.gather(*(live.order(token, ticket(room)) for token in students))
    won = [body for status, body in results if status == 201]
    lost = [body for status, body in results if status != 201]
    assert len(won) == 9, results
    assert {body["error"]["code"] for body in lost} == {"sold_out"}, lost
    assert {body["error"]["message"] for body in lost} == {"the room is sold out"}
    balances = sorted([(await live.wallet(t))["balance"] for t in students])
    assert balances == [700] * 9 + [1000] * 15
    assert await seat_books(kpay_app, room["id"]) == (9, 0)
    assert await shown_sold(api, host, room["id"]) == 9
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_every_seat_sells_wherever_it_is_left(api, live, kpay_app):
    """More seats than shards, bought one after another: each buyer finds a seat until
    the very last, whichever shards the earlier ones emptied."""
    host = await live.host()
    capacity = seats.SHARDS + 3
    room = await live.room(host, ticket_price=0, capacity=capacity)
    for n in range(capacity):
        status, body = await live.order(await api.login(f"s{n}"), ticket(room))
        assert status == 201, (n, body)
    status, body = await live.order(await api.login("late"), ticket(room))
    assert status == 409 and body["error"]["code"] == "sold_out"
    assert await seat_books(kpay_app, room["id"]) == (capacity, 0)


@pytest.mark.gen_test
async def test_a_revoking_refund_gives_the_seat_back_once(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=990, capacity=1)
    first = await live.student("s1", funds=2000)
    order = await live.buy_ticket(first, room)
    second = await live.student("s2", funds=2000)
    status, body = await live.order(second, ticket(room))
    assert status == 409 and body["error"]["code"] == "sold_out"

    refund = await kpay_app.money.orders.refund(order["id"], 990, "removed", purpose="revoke")
    assert await seat_books(kpay_app, room["id"]) == (0, 1)
    # on_refund runs at least once: again (after a crash, say), no second seat.
    stored = await kpay_app.money.orders.collection.find_one({"_id": order["id"]})
    await LiveTicket().on_refund(kpay_app, stored, refund)
    assert await seat_books(kpay_app, room["id"]) == (0, 1)
    await live.buy_ticket(second, room)
    assert await seat_books(kpay_app, room["id"]) == (1, 0)
    assert await shown_sold(api, host, room["id"]) == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_capacity_edits_move_the_seats_left(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=0, capacity=2)
    path = f"/api/v1/rooms/{room['id']}"
    for n in range(2):
        await live.student(f"s{n}", room)
    status, body = await api.request("PATCH", path, {"capacity": 40}, host)
    assert status == 200 and body["room"]["capacity"] == 40 and body["room"]["sold"] == 2
    assert await seat_books(kpay_app, room["id"]) == (2, 38)
    status, body = await api.request("PATCH", path, {"capacity": 1}, host)
    assert status == 409 and body["error"]["code"] == "capacity_below_sold"
    assert body["error"]["sold"] == 2
    status, body = await api.request("PATCH", path, {"capacity": 3}, host)
    assert status == 200 and body["room"]["capacity"] == 3
    assert await seat_books(kpay_app, room["id"]) == (2, 1)
    await live.student("s2", room)
    status, body = await live.order(await api.login("s3"), ticket(room))
    assert status == 409 and body["error"]["code"] == "sold_out"
    assert await seat_books(kpay_app, room["id"]) == (3, 0)


@pytest.mark.gen_test(timeout=60)
async def test_a_capacity_cut_racing_sales_never_leaves_more_sold_than_capacity(
        api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=0, capacity=20)
    buyers = [await api.login(f"s{n}") for n in range(20)]
    sales = [asyncio.ensure_future(live.order(t, ticket(room))) for t in buyers]
    # The cut goes in once sales have begun, while the others are under way.
    for _ in range(500):
        if await kpay_app.store["live_tickets"].count_documents({"room_id": room["id"]}):
            break
        await asyncio.sleep(0.01)
    edit = await api.request("PATCH", f"/api/v1/rooms/{room['id']}", {"capacity": 10}, host)
    sold = sum(1 for status, _ in await asyncio.gather(*sales) if status == 201)
    # Either the cut came while at most 10 were sold (then 10 sell in all), or it came
    # later and was refused (then all 20 did).
    if edit[0] == 200:
        assert sold == 10, (edit, sold)
    else:
        assert edit[1]["error"]["code"] == "capacity_below_sold" and sold == 20, edit
    assert await seat_books(kpay_app, room["id"]) == (sold, 0)


async def from_before_the_shards(app: Any, room_id: str) -> None:
    """Make a room as the code before the shards left it: its counts in its own
    document, its tickets without a seat, no seat documents."""
    sold = await app.store["live_tickets"].count_documents(
        {"room_id": room_id, "status": {"$in": HOLDING}})
    room = await app.store["live_rooms"].find_one({"_id": room_id})
    await app.store["live_seats"].delete_many({"room_id": room_id})
    await app.store["live_tickets"].update_many({"room_id": room_id}, {"$unset": {"seat": ""}})
    await app.store["live_rooms"].update_one(
        {"_id": room_id}, {"$set": {"sold": sold, "seats_left": room["capacity"] - sold}})


@pytest.mark.gen_test(timeout=90)
async def test_rooms_from_before_the_shards_get_them_at_their_first_seat_change(
        api, live, kpay_app):
    host = await live.host()
    bought, refunded, edited = [await live.room(host, ticket_price=500, capacity=6)
                                for _ in range(3)]
    orders = {}
    for room in (bought, refunded, edited):
        for n in range(2):
            token = await live.student(f"{room['id']}s{n}", funds=1000)
            orders[room["id"], n] = await live.buy_ticket(token, room)
        await from_before_the_shards(kpay_app, room["id"])
        # Shown from the room's own document, and reading it changes nothing.
        assert await shown_sold(api, host, room["id"]) == 2
        assert await kpay_app.store["live_seats"].count_documents({"room_id": room["id"]}) == 0

    # Bought: eight buyers at once for the 4 seats left, the first of them moves the
    # counts into shards (once: the others conflict on the room and find them).
    buyers = [await live.student(f"b{n}", funds=1000) for n in range(8)]
    results = await asyncio.gather(*(live.order(t, ticket(bought)) for t in buyers))
    assert sorted(status for status, _ in results) == [201] * 4 + [409] * 4, results
    assert await seat_books(kpay_app, bought["id"]) == (6, 0)
    assert await shown_sold(api, host, bought["id"]) == 6

    # Refunded: a ticket without a seat gives it back to the shard counting those.
    await kpay_app.money.orders.refund(orders[refunded["id"], 0]["id"], 500, "removed",
                                       purpose="revoke")
    assert await seat_books(kpay_app, refunded["id"]) == (1, 5)

    # Edited: the capacity edit moves the counts, and still refuses below what is sold.
    path = f"/api/v1/rooms/{edited['id']}"
    status, body = await api.request("PATCH", path, {"capacity": 1}, host)
    assert status == 409 and body["error"]["code"] == "capacity_below_sold"
    status, body = await api.request("PATCH", path, {"capacity": 3}, host)
    assert status == 200 and body["room"]["sold"] == 2
    assert await seat_books(kpay_app, edited["id"]) == (2, 1)
    await assert_books_balanced(kpay_app)
