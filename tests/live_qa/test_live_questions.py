"""Questions: free and paid (order kind live_question), the queue, 同问, answers."""

import asyncio

import pytest

from kpay.core.money import accounts
from kpay.testing import assert_books_balanced

ESCROW = accounts.escrow("live_qa")


async def setup_room(live, **fields):
    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=500, **fields)
    return host, room


@pytest.mark.gen_test
async def test_free_question_is_broadcast_and_queued(api, live):
    host, room = await setup_room(live)
    student = await live.student("s1", room)
    ws = await api.socket(host)
    assert (await ws.request("sub", ch=f"room:{room['id']}"))["ok"]
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/questions",
                                  {"text": "  简历怎么写？ "}, student)
    assert status == 201, body
    question = body["question"]
    assert question["text"] == "简历怎么写？" and question["bounty"] == 0
    assert question["paid"] is False and question["status"] == "open"
    event = await ws.event("question")
    assert event["data"]["id"] == question["id"] and event["data"]["asker_id"] == "s1"


@pytest.mark.gen_test
async def test_paid_question_escrow_then_answer_pays_host(api, live):
    host, room = await setup_room(live)
    student = await live.student("s1", room, funds=3000)
    status, body = await live.ask_paid(student, room, "跳槽要注意什么？", 800)
    assert status == 201 and body["order"]["status"] == "fulfilled", body
    assert (await live.wallet(student))["balance"] == 2200
    assert await live.balance(ESCROW) == 800
    assert await live.balance(accounts.earnings("host")) == 0

    status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions", host)
    [question] = queue["questions"]
    assert question["paid"] is True and question["bounty"] == 800

    ws = await api.socket(student)
    assert (await ws.request("sub", ch=f"room:{room['id']}"))["ok"]
    path = f"/api/v1/rooms/{room['id']}/questions/{question['id']}/answer"
    status, answered = await api.post(path, {"text": "先想清楚为什么走"}, host)
    assert status == 200, answered
    assert answered["question"]["status"] == "answered"
    assert answered["question"]["answer"]["text"] == "先想清楚为什么走"
    event = await ws.event("answer")
    assert event["data"]["question_id"] == question["id"]
    assert event["data"]["text"] == "先想清楚为什么走"

    assert await live.balance(ESCROW) == 0
    assert await live.balance(accounts.earnings("host")) == 640
    assert await live.balance(accounts.PLATFORM_REVENUE) == 160
    entry = await api.app.store["ledger"].find_one({"_id": f"live_qa:answer:{question['id']}"})
    assert entry is not None and entry["meta"]["room_id"] == room["id"]

    status, twice = await api.post(path, {"text": "again"}, host)
    assert status == 409 and twice["error"]["code"] == "already_answered"
    assert await live.balance(accounts.earnings("host")) == 640
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_concurrent_answers_pay_once(api, live):
    host, room = await setup_room(live)
    student = await live.student("s1", room, funds=3000)
    await live.ask_paid(student, room, "同时回答", 1000)
    _status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions", host)
    path = f"/api/v1/rooms/{room['id']}/questions/{queue['questions'][0]['id']}/answer"
    results = await asyncio.gather(*(api.post(path, {"text": f"a{n}"}, host) for n in range(4)))
    assert sorted(status for status, _ in results) == [200, 409, 409, 409], results
    assert await live.balance(accounts.earnings("host")) == 800
    await assert_books_balanced(live.app)


@pytest.mark.gen_test
async def test_queue_order_paid_by_bounty_then_time(api, live, kpay_app):
    host, room = await setup_room(live)
    students = [await live.student(f"s{n}", room, funds=5000) for n in range(4)]
    await api.post(f"/api/v1/rooms/{room['id']}/questions", {"text": "free 1"}, students[0])
    await kpay_app.advance_clock(1)
    await live.ask_paid(students[1], room, "paid 600", 600)
    await kpay_app.advance_clock(1)
    await api.post(f"/api/v1/rooms/{room['id']}/questions", {"text": "free 2"}, students[2])
    await kpay_app.advance_clock(1)
    await live.ask_paid(students[3], room, "paid 900", 900)
    await kpay_app.advance_clock(1)
    await live.ask_paid(students[0], room, "paid 600 later", 600)
    status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions", host)
    assert [q["text"] for q in queue["questions"]] == [
        "paid 900", "paid 600", "paid 600 later", "free 1", "free 2"]
    # Students see the queue too; strangers do not.
    status, seen = await api.get(f"/api/v1/rooms/{room['id']}/questions", students[1])
    assert status == 200 and len(seen["questions"]) == 5
    stranger = await api.login("stranger")
    status, body = await api.get(f"/api/v1/rooms/{room['id']}/questions", stranger)
    assert status == 403 and body["error"]["code"] == "no_ticket"
    status, body = await api.get(f"/api/v1/rooms/{room['id']}/questions?status=bogus", host)
    assert status == 400 and body["error"]["field"] == "status"


@pytest.mark.gen_test
async def test_bad_questions_change_nothing(api, live):
    host, room = await setup_room(live, free_questions=True)
    student = await live.student("s1", room, funds=5000)
    free = f"/api/v1/rooms/{room['id']}/questions"
    long_text = "问" * 2001
    cases = [
        (await live.ask_paid(student, room, "too cheap", 499), 400, "bounty_too_low"),
        (await live.ask_paid(student, room, "zero", 0), 400, "bounty_too_low"),
        (await live.ask_paid(student, room, "   ", 800), 400, "invalid_field"),
        (await live.ask_paid(student, room, long_text, 800), 400, "text_too_long"),
        (await api.post(free, {"text": ""}, student), 400, "invalid_field"),
        (await api.post(free, {"text": long_text}, student), 400, "text_too_long"),
        (await api.post(free, {}, student), 400, "invalid_field"),
    ]
    for (status, body), want_status, want_code in cases:
        assert status == want_status and body["error"]["code"] == want_code, body
    assert (await live.wallet(student))["balance"] == 5000
    status, queue = await api.get(free, host)
    assert queue["questions"] == []
    # Exactly at the limit is fine.
    status, body = await api.post(free, {"text": "问" * 2000}, student)
    assert status == 201


@pytest.mark.gen_test
async def test_questions_need_a_ticket_and_a_live_room(api, live):
    host = await live.host()
    room = await live.room(host, start=False, ticket_price=0)
    student = await live.student("s1", room, funds=5000)
    stranger = await live.student("stranger", funds=5000)
    path = f"/api/v1/rooms/{room['id']}/questions"

    status, body = await api.post(path, {"text": "early"}, student)
    assert status == 409 and body["error"]["code"] == "room_not_live"
    status, body = await live.ask_paid(student, room, "early", 800)
    assert status == 409 and body["error"]["code"] == "room_not_live"

    await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    status, body = await api.post(path, {"text": "let me in"}, stranger)
    assert status == 403 and body["error"]["code"] == "no_ticket"
    status, body = await live.ask_paid(stranger, room, "let me in", 800)
    assert status == 403 and body["error"]["code"] == "no_ticket"
    assert (await live.wallet(stranger))["balance"] == 5000
    status, body = await api.post(path, {"text": "own room"}, host)
    assert status == 403 and body["error"]["code"] == "host_cannot_ask"

    await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    status, body = await live.ask_paid(student, room, "late", 800)
    assert status == 409 and body["error"]["code"] == "room_ended"
    assert (await live.wallet(student))["balance"] == 5000


@pytest.mark.gen_test
async def test_paid_only_room_refuses_free_questions(api, live):
    _host, room = await setup_room(live, free_questions=False)
    student = await live.student("s1", room)
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/questions", {"text": "hi"},
                                  student)
    assert status == 403 and body["error"]["code"] == "free_questions_off"
    assert body["error"]["min"] == 500


@pytest.mark.gen_test
async def test_answer_refusals(api, live):
    host, room = await setup_room(live)
    student = await live.student("s1", room)
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/questions", {"text": "q"},
                                  student)
    qid = body["question"]["id"]
    path = f"/api/v1/rooms/{room['id']}/questions/{qid}/answer"
    other = await live.host("other")
    status, body = await api.post(path, {"text": "not mine"}, other)
    assert status == 403 and body["error"]["code"] == "not_host"
    status, body = await api.post(path, {"text": "nope"}, student)
    assert status == 403 and body["error"]["code"] == "not_host"
    status, body = await api.post(path, {}, host)
    assert status == 400 and body["error"]["field"] == "text"
    status, body = await api.post(path, {"audio_url": "javascript:alert(1)"}, host)
    assert status == 400 and body["error"]["field"] == "audio_url"
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/questions/qnope/answer",
                                  {"text": "?"}, host)
    assert status == 404 and body["error"]["code"] == "question_not_found"
    status, body = await api.post(path, {"audio_url": "https://cdn.example.com/a.mp3"}, host)
    assert status == 200 and body["question"]["answer"]["audio_url"].endswith("a.mp3")


@pytest.mark.gen_test
async def test_upvote_once_each(api, live):
    host, room = await setup_room(live)
    asker = await live.student("asker", room)
    fans = [await live.student(f"fan{n}", room) for n in range(3)]
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/questions", {"text": "同问?"},
                                  asker)
    path = f"/api/v1/rooms/{room['id']}/questions/{body['question']['id']}/upvote"
    ws = await api.socket(host)
    await ws.request("sub", ch=f"room:{room['id']}")
    for fan in fans:
        status, voted = await api.post(path, token=fan)
        assert status == 200
    assert voted["question"]["upvotes"] == 3
    assert (await ws.event("upvote"))["data"]["upvotes"] == 1
    status, body = await api.post(path, token=fans[0])
    assert status == 409 and body["error"]["code"] == "already_upvoted"
    status, body = await api.post(path, token=asker)
    assert status == 409 and body["error"]["code"] == "own_question"
    stranger = await api.login("stranger")
    status, body = await api.post(path, token=stranger)
    assert status == 403 and body["error"]["code"] == "no_ticket"
    results = await asyncio.gather(*(api.post(path, token=host) for _ in range(3)))
    assert sorted(s for s, _ in results) == [200, 409, 409]
    status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions", host)
    assert queue["questions"][0]["upvotes"] == 4


@pytest.mark.gen_test
async def test_provider_paid_question_opens_when_paid(api, live):
    host, room = await setup_room(live)
    student = await live.student("s1", room)
    status, body = await live.order(student, {"kind": "live_question", "room_id": room["id"],
                                              "text": "扫码付的问题", "bounty": 600}, "native")
    assert status == 201 and body["order"]["status"] == "pending"
    status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions", host)
    assert queue["questions"] == []
    status, paid = await api.post(f"/api/v1/dev/orders/{body['order']['id']}/pay",
                                  token=student)
    assert status == 200 and paid["order"]["status"] == "fulfilled"
    status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions", host)
    assert [q["text"] for q in queue["questions"]] == ["扫码付的问题"]
    assert await live.balance(ESCROW) == 600
    await assert_books_balanced(live.app)
