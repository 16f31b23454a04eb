"""Ending a room refunds every unanswered paid question to the wallet, exactly once."""

import asyncio

import pytest

from kpay.core.money import accounts
from kpay.testing import assert_books_balanced

ESCROW = accounts.escrow("live_qa")


async def questions_of(api, room, token, status="all"):
    code, body = await api.get(f"/api/v1/rooms/{room['id']}/questions?status={status}", token)
    assert code == 200, body
    return {q["text"]: q for q in body["questions"]}


@pytest.mark.gen_test
async def test_end_refunds_unanswered_paid_questions_once(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=300)
    alice = await live.student("alice", room, funds=5000)
    bob = await live.student("bob", room, funds=5000)
    alice_ws = await api.socket(alice)
    assert (await alice_ws.request("sub", ch="user:alice"))["ok"]
    await live.ask_paid(alice, room, "alice unanswered", 700)
    await live.ask_paid(alice, room, "alice answered", 400)
    await live.ask_paid(bob, room, "bob unanswered", 1200)
    await api.post(f"/api/v1/rooms/{room['id']}/questions", {"text": "free one"}, bob)
    asked = await questions_of(api, room, host)
    await api.post(f"/api/v1/rooms/{room['id']}/questions/{asked['alice answered']['id']}"
                   "/answer", {"text": "ok"}, host)
    assert await live.balance(ESCROW) == 1900

    status, ended = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert status == 200 and ended["refunded"] == 2
    assert (await live.wallet(alice))["balance"] == 5000 - 400
    assert (await live.wallet(bob))["balance"] == 5000
    assert await live.balance(ESCROW) == 0
    assert await live.balance(accounts.earnings("host")) == 320

    notice = await alice_ws.event("question_refunded")
    assert notice["data"]["amount"] == 700 and notice["data"]["reason"] == "room_ended"
    assert notice["data"]["question_id"] == asked["alice unanswered"]["id"]
    after = await questions_of(api, room, host)
    assert after["alice unanswered"]["status"] == "refunded"
    assert after["bob unanswered"]["status"] == "refunded"
    assert after["alice answered"]["status"] == "answered"
    assert after["free one"]["status"] == "open"
    status, order = await api.get(
        f"/api/v1/orders/{'o' + asked['bob unanswered']['id'][2:]}", bob)
    assert order["order"]["status"] == "refunded" and order["order"]["refunded"] == 1200

    # Ending again, and the sweep job, refund nothing more.
    status, again = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert status == 409 and again["error"]["code"] == "room_ended"
    await api.app.advance_clock(120)
    assert (await live.wallet(bob))["balance"] == 5000
    assert await api.app.store["refunds"].count_documents({}) == 2
    # Answering after the end is refused and moves nothing.
    status, body = await api.post(
        f"/api/v1/rooms/{room['id']}/questions/{asked['free one']['id']}/answer",
        {"text": "late"}, host)
    assert status == 409 and body["error"]["code"] == "room_ended"
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_concurrent_end_requests_refund_once(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=100)
    students = [await live.student(f"s{n}", room, funds=1000) for n in range(5)]
    for token in students:
        await live.ask_paid(token, room, "unanswered", 1000)
    results = await asyncio.gather(*(api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
                                     for _ in range(3)))
    assert sorted(status for status, _ in results) == [200, 409, 409]
    for token in students:
        assert (await live.wallet(token))["balance"] == 1000
    assert await api.app.store["refunds"].count_documents({}) == 5
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_sweep_finishes_refunds_after_a_crash(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=100)
    student = await live.student("s1", room, funds=1000)
    await live.ask_paid(student, room, "first", 300)
    await live.ask_paid(student, room, "second", 200)
    # The crash: the room was marked ended, one question claimed, nothing refunded.
    await kpay_app.store["live_rooms"].update_one(
        {"_id": room["id"]}, {"$set": {"state": "ended", "refunds_done": False}})
    await kpay_app.store["live_questions"].update_one(
        {"room_id": room["id"], "text": "first"}, {"$set": {"status": "refunding"}})
    assert (await live.wallet(student))["balance"] == 500
    for _ in range(2):
        await kpay_app.advance_clock(60)
        assert (await live.wallet(student))["balance"] == 1000
    room_doc = await kpay_app.store["live_rooms"].find_one({"_id": room["id"]})
    assert room_doc["refunds_done"] is True
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_crash_after_the_refund_before_marking_does_not_refund_twice(api, live,
                                                                          kpay_app):
    from plugins.live_qa.refunds import REFUND_REASON, refund_key

    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=100)
    student = await live.student("s1", room, funds=1000)
    await live.ask_paid(student, room, "refunded, then the node died", 400)
    question = await kpay_app.store["live_questions"].find_one({"room_id": room["id"]})
    # The crash: the refund was booked, the question still says refunding.
    await kpay_app.store["live_rooms"].update_one(
        {"_id": room["id"]}, {"$set": {"state": "ended", "refunds_done": False}})
    await kpay_app.store["live_questions"].update_one(
        {"_id": question["_id"]}, {"$set": {"status": "refunding"}})
    await kpay_app.money.orders.refund(question["order_id"], 400, REFUND_REASON,
                                       to="wallet", key=refund_key(question["_id"]))
    assert (await live.wallet(student))["balance"] == 1000
    await kpay_app.advance_clock(60)
    assert (await live.wallet(student))["balance"] == 1000
    done = await kpay_app.store["live_questions"].find_one({"_id": question["_id"]})
    assert done["status"] == "refunded"
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_question_paid_after_the_end_is_refunded_at_once(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=100)
    student = await live.student("s1", room)
    ws = await api.socket(student)
    await ws.request("sub", ch="user:s1")
    status, body = await live.order(student, {"kind": "live_question", "room_id": room["id"],
                                              "text": "slow payer", "bounty": 800}, "native")
    assert status == 201
    status, ended = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert ended["refunded"] == 0
    status, paid = await api.post(f"/api/v1/dev/orders/{body['order']['id']}/pay",
                                  token=student)
    assert status == 200 and paid["order"]["status"] == "refunded"
    notice = await ws.event("question_refunded")
    assert notice["data"]["amount"] == 800
    # Paid by scan, refunded to the wallet (the rule for unanswered questions).
    assert (await live.wallet(student))["balance"] == 800
    assert await live.balance(ESCROW) == 0
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_removed_user_still_gets_unanswered_bounty_back(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=300, question_min_price=100)
    student = await live.student("s1", room, funds=1000)
    await live.ask_paid(student, room, "then I was removed", 400)
    status, _ = await api.request("DELETE", f"/api/v1/rooms/{room['id']}/members/s1",
                                  token=host)
    assert status == 200
    status, ended = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert status == 200 and ended["refunded"] == 1
    # The ticket is kept (removal is for abuse), the unanswered bounty comes back.
    assert (await live.wallet(student))["balance"] == 700
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_expired_question_order_closes_the_question(api, live, kpay_app):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    student = await live.student("s1", room)
    status, body = await live.order(student, {"kind": "live_question", "room_id": room["id"],
                                              "text": "never paid", "bounty": 800}, "native")
    assert status == 201 and body["order"]["status"] == "pending"
    await kpay_app.advance_clock(3600)
    question = await kpay_app.store["live_questions"].find_one({"room_id": room["id"]})
    assert question["status"] == "closed"
    _status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions?status=all", host)
    assert queue["questions"] == []
