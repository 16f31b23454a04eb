"""Buying, gifting and the lock, through the real server; the books must reconcile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from drip_helpers import NotificationRecorder, daily_lessons, lesson

from kpay.testing import FakeProvider, FakeProviderPlugin, assert_books_balanced


@pytest.fixture
def kpay_extra_plugins(recorder: NotificationRecorder) -> list[tuple[str, Any]]:
    # Orders on the provider's channel stay pending until the dev payer pays them.
    return [("notification_recorder", recorder),
            ("qrpay", FakeProviderPlugin(FakeProvider("qrpay", ("native",))))]


async def wallet(api, token):
    status, body = await api.get("/api/v1/wallet", token)
    assert status == 200
    return body["balance"]


@pytest.mark.gen_test
async def test_buying_a_course_pays_the_author_and_enrolls(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(3), price=9999)
    student = await drip.student("stu", money=20000)
    status, body = await drip.order(student, course["id"])
    assert status == 201 and body["order"]["status"] == "fulfilled", body
    assert body["order"]["amount"] == 9999
    assert await wallet(api, student) == 20000 - 9999
    ledger = kpay_app.money.ledger
    # 20% platform fee, rounded down: the author gets the odd fen.
    assert await ledger.balance("earnings:teacher") == 9999 - 1999
    assert await ledger.balance("platform:revenue") == 1999
    lessons = await drip.lessons(student, course["id"])
    assert [x["unlocked"] for x in lessons] == [True, False, False]
    status, body = await api.get("/api/v1/me/courses", student)
    assert [c["course"]["id"] for c in body["courses"]] == [course["id"]]
    assert body["courses"][0]["progress"]["total"] == 3
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_sale_is_told_to_the_buyer_and_the_author_once(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(1), price=1990)
    student = await api.login("stu", "student", name="小王")
    await api.topup(student, 1990)
    status, body = await drip.order(student, course["id"])
    assert status == 201 and body["order"]["status"] == "fulfilled", body

    async def told(token):
        _, listed = await api.get("/api/v1/notifications", token)
        return [(n["title"], n["body"], n["link"]) for n in listed["notifications"]]

    assert await told(student) == [("购买成功：《Drip course》", "点击开始学习。",
                                    f"/static/course.html?id={course['id']}")]
    assert await told(author) == [("《Drip course》有新学员", "小王 购买了课程，实付 ¥19.90。",
                                   "/static/console.html#courses")]
    # Fulfilling again (a restart re-running it) tells nobody a second time.
    orders = kpay_app.money.orders
    await orders.kinds["course"].fulfil(kpay_app, await orders.get(body["order"]["id"]))
    assert len(await told(student)) == 1 and len(await told(author)) == 1


@pytest.mark.kpay_now("2026-03-02T02:50:00+08:00")
@pytest.mark.gen_test
async def test_a_student_paying_at_0250_reads_day_0_at_once(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(3, at="08:00"))
    student = await drip.student("night-owl", course)
    lessons = await drip.lessons(student, course["id"])
    assert [x["unlocked"] for x in lessons] == [True, False, False]
    assert lessons[0]["unlocks_at"].startswith("2026-03-02T02:50")
    # ``at`` counts from day 1: the next calendar day at 08:00, then the one after.
    assert [x["unlocks_at"] for x in lessons[1:]] == ["2026-03-03T08:00:00+08:00",
                                                       "2026-03-04T08:00:00+08:00"]
    status, body = await api.get(
        f"/api/v1/courses/{course['id']}/lessons/{lessons[0]['id']}", student)
    assert status == 200, body


@pytest.mark.gen_test
async def test_enrolling_twice_is_409_and_charges_nothing(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2), price=500)
    student = await drip.student("stu", course, money=5000)
    assert await wallet(api, student) == 4500
    status, body = await drip.order(student, course["id"])
    assert status == 409 and body["error"]["code"] == "already_enrolled"
    assert await wallet(api, student) == 4500
    assert await kpay_app.store["orders"].count_documents({"kind": "course"}) == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_two_orders_racing_enroll_once(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2), price=700)
    student = await drip.student("stu", money=5000)
    results = await asyncio.gather(*(drip.order(student, course["id"]) for _ in range(4)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409, 409, 409], results
    assert await wallet(api, student) == 5000 - 700
    assert await kpay_app.store["course_enrollments"].count_documents({}) == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_bad_course_orders(drip, api, kpay_app):
    author = await drip.author()
    draft = await drip.course(author, daily_lessons(1), publish=False)
    student = await drip.student("stu", money=5000)
    cases = [
        ({"kind": "course"}, 400, "invalid_field"),
        ({"kind": "course", "course_id": 5}, 400, "invalid_field"),
        ({"kind": "course", "course_id": "nope"}, 404, "course_not_found"),
        ({"kind": "course", "course_id": draft["id"]}, 404, "course_not_found"),
    ]
    for item, status_wanted, code in cases:
        status, body = await api.post("/api/v1/orders", {"item": item, "channel": "wallet"},
                                      student)
        assert status == status_wanted and body["error"]["code"] == code, (item, body)
    status, body = await drip.order(author, draft["id"])
    assert status == 409 and body["error"]["code"] == "own_course"
    poor = await drip.student("poor", money=10)
    course = await drip.course(author, daily_lessons(1), price=500)
    status, body = await drip.order(poor, course["id"])
    assert status == 402 and body["error"]["code"] == "insufficient_balance"
    assert await kpay_app.store["course_enrollments"].count_documents({}) == 0
    assert await wallet(api, student) == 5000
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_pending_order_reserves_until_paid_or_closed(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2), price=300)
    student = await api.login("stu", "student")
    order_body = {"item": {"kind": "course", "course_id": course["id"]}, "channel": "native"}
    status, first = await api.post("/api/v1/orders", order_body, student)
    assert status == 201 and first["order"]["status"] == "pending"
    assert first["pay"]["code_url"].startswith("weixin://")
    status, body = await api.post("/api/v1/orders", order_body, student)
    assert status == 409 and body["error"]["code"] == "enrollment_pending"
    status, body = await api.get(f"/api/v1/courses/{course['id']}/lessons", student)
    assert status == 403 and body["error"]["code"] == "not_enrolled"
    # Abandoned: closing the order frees the reservation, and a new order may be paid.
    await kpay_app.money.orders.close(first["order"]["id"], "expired")
    status, second = await api.post("/api/v1/orders", order_body, student)
    assert status == 201, second
    await drip.advance(240)  # paid minutes later: the drip counts from payment
    status, paid = await api.post(f"/api/v1/dev/orders/{second['order']['id']}/pay",
                                  token=student)
    assert status == 200 and paid["order"]["status"] == "fulfilled", paid
    enrollment = await kpay_app.store["course_enrollments"].find_one({})
    assert enrollment["status"] == "active" and enrollment["order_id"] == second["order"]["id"]
    assert enrollment["enrolled_at"] == (await kpay_app.money.orders.get(
        second["order"]["id"]))["paid_at"]
    # Paying the same order again (a replayed notify) changes nothing.
    status, again = await api.post(f"/api/v1/dev/orders/{second['order']['id']}/pay",
                                   token=student)
    assert status == 200 and again["order"]["status"] == "fulfilled"
    assert await kpay_app.money.ledger.balance("earnings:teacher") == 240
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_full_refund_revokes_and_allows_buying_again(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2), price=800)
    student = await drip.student("stu", course, money=800)
    order = await kpay_app.store["orders"].find_one({"kind": "course"})
    await kpay_app.money.orders.refund(order["_id"], 300, "goodwill")
    assert len(await drip.lessons(student, course["id"])) == 2  # a partial refund keeps it
    await kpay_app.money.orders.refund(order["_id"], 500, "changed mind")
    status, body = await api.get(f"/api/v1/courses/{course['id']}/lessons", student)
    assert status == 403 and body["error"]["code"] == "not_enrolled"
    assert await wallet(api, student) == 800
    status, body = await drip.order(student, course["id"])
    assert status == 201 and body["order"]["status"] == "fulfilled", body
    assert len(await drip.lessons(student, course["id"])) == 2
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_partial_refund_said_to_revoke_revokes(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2), price=800)
    student = await drip.student("stu", course, money=800)
    order = await kpay_app.store["orders"].find_one({"kind": "course"})
    await kpay_app.money.orders.refund(order["_id"], 400, "half back, access ends",
                                       purpose="revoke")
    status, body = await api.get(f"/api/v1/courses/{course['id']}/lessons", student)
    assert status == 403 and body["error"]["code"] == "not_enrolled"
    assert await wallet(api, student) == 400
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_gift_enrollment(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2), price=800)
    status, body = await api.post(f"/api/v1/courses/{course['id']}/enrollments",
                                  {"user_id": "friend"}, author)
    assert status == 201 and body["progress"]["source"] == "gift", body
    friend = await api.login("friend", "student")
    lessons = await drip.lessons(friend, course["id"])
    assert [x["unlocked"] for x in lessons] == [True, False]
    status, body = await api.post(f"/api/v1/courses/{course['id']}/enrollments",
                                  {"user_id": "friend"}, author)
    assert status == 409 and body["error"]["code"] == "already_enrolled"
    status, body = await drip.order(friend, course["id"])
    assert status == 409 and body["error"]["code"] == "already_enrolled"
    for bad in ({"user_id": ""}, {"user_id": "a b"}, {}, {"user_id": "teacher"}):
        status, body = await api.post(f"/api/v1/courses/{course['id']}/enrollments", bad,
                                      author)
        assert status == 400, (bad, body)
    status, body = await api.get(f"/api/v1/courses/{course['id']}/enrollments", author)
    assert [e["user_id"] for e in body["enrollments"]] == ["friend"]
    assert await kpay_app.money.ledger.balance("earnings:teacher") == 0
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_the_lock_is_on_the_server(drip, api):
    author = await drip.author()
    secret = "SECRET-BODY-OF-DAY-2"
    course = await drip.course(author, [
        lesson("Day 0", {"after_days": 0}, "open"),
        lesson("Day 2", {"after_days": 2, "at": "08:00"}, secret)])
    cid, open_id, locked_id = (course["id"], course["lessons"][0]["id"],
                               course["lessons"][1]["id"])
    student = await drip.student("stu", course)
    status, body = await api.get(f"/api/v1/courses/{cid}/lessons/{locked_id}", student)
    assert status == 403 and body["error"]["code"] == "lesson_locked", body
    assert body["error"]["unlocks_at"].endswith("T08:00:00+08:00")
    opens = body["error"]["unlocks_at"]
    assert secret not in str(body)
    status, body = await api.get(f"/api/v1/courses/{cid}/lessons/{open_id}", student)
    assert status == 200 and body["lesson"]["body_html"] == "<p>open</p>"
    # Completing a locked lesson is refused too, and records nothing.
    status, body = await api.post(f"/api/v1/courses/{cid}/lessons/{locked_id}/complete",
                                  token=student)
    assert status == 403 and body["error"]["code"] == "lesson_locked"
    status, body = await api.get(f"/api/v1/courses/{cid}/progress", student)
    assert body["progress"]["completed"] == 0
    # A student without enrollment sees neither list nor lesson nor progress.
    stranger = await api.login("stranger", "student")
    for path in (f"/api/v1/courses/{cid}/lessons", f"/api/v1/courses/{cid}/lessons/{open_id}",
                 f"/api/v1/courses/{cid}/progress"):
        status, body = await api.get(path, stranger)
        assert status == 403 and body["error"]["code"] == "not_enrolled", (path, body)
    status, body = await api.post(f"/api/v1/courses/{cid}/lessons/{open_id}/complete",
                                  token=stranger)
    assert status == 403 and body["error"]["code"] == "not_enrolled"
    status, body = await api.get(f"/api/v1/courses/{cid}/lessons")
    assert status == 401
    status, body = await api.get(f"/api/v1/courses/{cid}/lessons/nope", student)
    assert status == 404 and body["error"]["code"] == "lesson_not_found"
    # On day 2 at 08:00 the lesson opens, body and all.
    await drip.advance_past(opens)
    status, body = await api.get(f"/api/v1/courses/{cid}/lessons/{locked_id}", student)
    assert status == 200 and secret in body["lesson"]["body_html"]
