"""Release rules, unlock notifications (exactly once, across clock jumps, concurrent
sweeps, a second node and a restart), the override, schedule edits, progress, stats."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from drip_helpers import BEIJING, DAY, daily_lessons, lesson, unlock_events

from kpay.core.app import KPay
from kpay.testing import ApiClient, assert_books_balanced, wait_until
from plugins.course_drip.sweep import sweep


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    # Tiny batches, so the sweep and the recompute go through several of them.
    return {"plugins": {"enabled": ["course_drip"]},
            "course_drip": {"sweep_batch_size": 2, "recompute_batch_size": 2}}


async def subscribed(api: ApiClient, token: str, user_id: str):
    ws = await api.socket(token)
    reply = await ws.request("sub", ch=f"user:{user_id}")
    assert reply["ok"], reply
    return ws


def local(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(BEIJING)


@pytest.mark.gen_test
async def test_enrolling_at_2359_opens_day_one_at_0800_the_next_calendar_day(drip, api):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(3))
    enrolled = await drip.advance_to_local(23, 59)
    student = await drip.student("stu", course)
    lessons = await drip.lessons(student, course["id"])
    next_day = (enrolled + timedelta(days=1)).date()
    assert lessons[1]["unlocks_at"] == f"{next_day.isoformat()}T08:00:00+08:00"
    assert [x["unlocked"] for x in lessons] == [True, False, False]
    await drip.advance(8 * 3600)  # 07:59 the next day
    assert [x["unlocked"] for x in await drip.lessons(student, course["id"])] == [
        True, False, False]
    await drip.advance(120)  # 08:01
    assert [x["unlocked"] for x in await drip.lessons(student, course["id"])] == [
        True, True, False]


@pytest.mark.gen_test
async def test_at_date_is_the_same_moment_for_a_cohort(drip, api):
    author = await drip.author()
    start = (drip.app.clock.now().astimezone(BEIJING) + timedelta(days=30)).date().isoformat()
    course = await drip.course(author, [lesson("Welcome", {"after_days": 0}),
                                        lesson("Kick-off", {"at_date": f"{start}T20:00"})])
    early = await drip.student("early", course)
    await drip.advance(3 * DAY + 1234)
    late = await drip.student("late", course)
    for token in (early, late):
        lessons = await drip.lessons(token, course["id"])
        assert lessons[1]["unlocks_at"] == f"{start}T20:00:00+08:00"
        assert lessons[1]["unlocked"] is False


@pytest.mark.gen_test
async def test_after_previous_opens_on_completion_and_is_announced_at_once(drip, api,
                                                                           recorder):
    author = await drip.author()
    course = await drip.course(author, [lesson("A", {"after_days": 0}),
                                        lesson("B", {"after_previous": True}),
                                        lesson("C", {"after_previous": True})])
    cid, (a, b, c) = course["id"], [x["id"] for x in course["lessons"]]
    student = await drip.student("stu", course)
    ws = await subscribed(api, student, "stu")
    lessons = await drip.lessons(student, cid)
    assert [(x["unlocked"], x["unlocks_at"]) for x in lessons][1:] == [(False, None),
                                                                      (False, None)]
    status, body = await api.post(f"/api/v1/courses/{cid}/lessons/{b}/complete",
                                  token=student)
    assert status == 403 and body["error"]["code"] == "lesson_locked"
    assert body["error"]["unlocks_at"] is None
    status, body = await api.post(f"/api/v1/courses/{cid}/lessons/{a}/complete",
                                  token=student)
    assert status == 200 and body["progress"]["completed"] == 1, body
    event = await ws.event("lesson_unlocked")
    assert event["data"] == {"course_id": cid, "lesson_id": b, "course_title": "Drip course",
                             "lesson_title": "B", "lesson_number": 2} and event["ch"] == "user:stu"
    # Saved for the notification list, in Chinese with the lesson's name and a link to it.
    saved = (await ws.event("notification"))["data"]
    assert (saved["title"], saved["link"]) == (
        "《Drip course》第 2 课《B》已解锁", f"/static/course.html?id={cid}&lesson={b}")
    # Completing again is a no-op, and announces nothing new.
    status, again = await api.post(f"/api/v1/courses/{cid}/lessons/{a}/complete",
                                   token=student)
    assert status == 200
    assert again["progress"]["lessons"][0]["completed_at"] == (
        body["progress"]["lessons"][0]["completed_at"])
    lessons = await drip.lessons(student, cid)
    assert [x["unlocked"] for x in lessons] == [True, True, False]
    assert await unlock_events(ws, drip.app, "stu") == []
    await drip.advance(2 * DAY)
    assert await unlock_events(ws, drip.app, "stu") == []
    assert recorder.unlocked("stu") == [b]
    status, body = await api.get(f"/api/v1/courses/{cid}/lessons/{c}", student)
    assert status == 403 and body["error"]["code"] == "lesson_locked"


@pytest.mark.gen_test
async def test_a_clock_jump_of_days_announces_each_lesson_once(drip, api, recorder):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(5))
    ids = [x["id"] for x in course["lessons"]]
    await drip.advance_to_local(10, 0)
    student = await drip.student("stu", course)
    ws = await subscribed(api, student, "stu")
    await drip.advance(10 * DAY)  # one jump over four unlock times
    assert await unlock_events(ws, drip.app, "stu") == ids[1:]
    await drip.advance(DAY)
    await drip.advance(60)
    assert await unlock_events(ws, drip.app, "stu") == []
    assert recorder.unlocked("stu") == ids[1:]
    fresh = await api.login("stu")  # the old token expired with the days that passed
    lessons = await drip.lessons(fresh, course["id"])
    assert all(x["unlocked"] for x in lessons)


@pytest.mark.gen_test
async def test_day_by_day_each_unlock_once_for_many_students(drip, api, kpay_app, recorder):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(4))
    ids = [x["id"] for x in course["lessons"]]
    await drip.advance_to_local(10, 0)
    students = [f"s{i}" for i in range(5)]
    sockets = {}
    for user in students:
        token = await drip.student(user, course)
        sockets[user] = await subscribed(api, token, user)
    for day in range(1, 4):
        await drip.advance(DAY)
        for user in students:
            assert await unlock_events(sockets[user], kpay_app, user) == [ids[day]], (day, user)
    assert Counter(recorder.unlocked()) == {lid: 5 for lid in ids[1:]}
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_concurrent_sweeps_announce_each_unlock_exactly_once(drip, api, kpay_app,
                                                                   recorder):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(4))
    ids = [x["id"] for x in course["lessons"]]
    students = [f"s{i}" for i in range(4)]
    sockets = {}
    for user in students:
        token = await drip.student(user, course)
        sockets[user] = await subscribed(api, token, user)
    kpay_app.clock.advance(5 * DAY)  # no job runs: the sweeps below race each other
    counts = await asyncio.gather(*(sweep(kpay_app) for _ in range(4)))
    assert sum(counts) == len(students) * 3
    for user in students:
        assert await unlock_events(sockets[user], kpay_app, user) == ids[1:]
    assert Counter(recorder.unlocked()) == {lid: 4 for lid in ids[1:]}
    assert await sweep(kpay_app) == 0


async def second_node(kpay_settings: Any) -> KPay:
    """Another app on the same database: a restarted server, or a second node."""
    node = kpay_settings.new_app()
    await node.start()
    return node


@pytest.mark.gen_test
async def test_two_nodes_and_a_restart_announce_each_unlock_once(drip, api, kpay_app,
                                                                 kpay_settings, recorder):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(4))
    ids = [x["id"] for x in course["lessons"]]
    await drip.advance_to_local(10, 0)
    students = ["s0", "s1", "s2"]
    for user in students:
        await drip.student(user, course)
    await drip.advance(DAY)  # node 1 announces day 1
    assert Counter(recorder.unlocked()) == {ids[1]: 3}

    node = await second_node(kpay_settings)  # "restart": fresh memory, same database
    try:
        assert node.clock.now() - kpay_app.clock.now() < timedelta(minutes=1)
        api2 = ApiClient(node)
        token = await api2.login("s0", "student")
        ws = await subscribed(api2, token, "s0")
        # Nothing is announced again after the restart ...
        assert await sweep(node) == 0
        assert await unlock_events(ws, node, "s0") == []
        # ... and both nodes sweeping the next day at once announce each unlock once.
        kpay_app.clock.advance(DAY)
        node.clock.advance(DAY)
        counts = await asyncio.gather(sweep(kpay_app), sweep(node), sweep(node))
        assert sum(counts) == 3
        assert Counter(recorder.unlocked()) == {ids[1]: 3, ids[2]: 3}
        events = await unlock_events(ws, node, "s0")
        assert events in ([], [ids[2]])  # pushed on whichever node won; never twice
        await node.advance_clock(DAY)
        assert await unlock_events(ws, node, "s0") == [ids[3]]
        assert Counter(recorder.unlocked()) == {ids[1]: 3, ids[2]: 3, ids[3]: 3}
    finally:
        await node.stop()


@pytest.mark.gen_test
async def test_author_unlocks_everything_for_one_student(drip, api, recorder):
    author = await drip.author()
    lessons = [*daily_lessons(3), lesson("P", {"after_previous": True})]
    course = await drip.course(author, lessons)
    cid, ids = course["id"], [x["id"] for x in course["lessons"]]
    lucky = await drip.student("lucky", course)
    other = await drip.student("other", course)
    ws = await subscribed(api, lucky, "lucky")
    status, body = await api.post(f"/api/v1/courses/{cid}/enrollments/lucky/unlock_all",
                                  token=author)
    assert status == 200 and body["progress"]["unlocked_all"] is True, body
    assert all(x["unlocked"] for x in await drip.lessons(lucky, cid))
    assert [x["unlocked"] for x in await drip.lessons(other, cid)] == [True, False, False,
                                                                      False]
    assert await unlock_events(ws, drip.app, "lucky") == ids[1:]
    status, _ = await api.post(f"/api/v1/courses/{cid}/enrollments/lucky/unlock_all",
                               token=author)
    assert status == 200
    await drip.advance(5 * DAY)
    assert await unlock_events(ws, drip.app, "lucky") == []
    assert recorder.unlocked("lucky") == ids[1:]
    status, body = await api.post(f"/api/v1/courses/{cid}/enrollments/nobody/unlock_all",
                                  token=author)
    assert status == 404 and body["error"]["code"] == "enrollment_not_found"


async def wait_for_recompute(app: KPay, course_id: str) -> None:
    """Wait for the background recompute to finish (not a timing assert: it must end)."""
    async def done() -> bool:
        course = await app.store["courses"].find_one({"_id": course_id})
        return not course["recompute_pending"]

    await wait_until(done, timeout=10, message="the schedule recompute did not finish")


@pytest.mark.gen_test
async def test_editing_a_release_rule_reschedules_every_student(drip, api, kpay_app,
                                                                recorder, caplog):
    author = await drip.author()
    course = await drip.course(author, [lesson("Now", {"after_days": 0}),
                                        lesson("Later", {"after_days": 10, "at": "08:00"})])
    cid, later = course["id"], course["lessons"][1]["id"]
    await drip.advance_to_local(10, 0)
    tokens = [await drip.student(f"s{i}", course) for i in range(5)]
    caplog.set_level("INFO", logger="kpay.course_drip")
    status, body = await drip.patch(f"/api/v1/courses/{cid}/lessons/{later}",
                                    {"release": {"after_days": 1, "at": "09:30"}}, author)
    assert status == 200, body
    await wait_for_recompute(kpay_app, cid)
    assert "recomputed 5/5" in caplog.text  # progress is logged batch by batch
    enrollments = kpay_app.store["course_enrollments"]
    course_doc = await kpay_app.store["courses"].find_one({"_id": cid})
    async for enrollment in enrollments.find({"course_id": cid}):
        assert enrollment["schedule_version"] == course_doc["schedule_version"]
        assert local(enrollment["next_unlock_at"].isoformat()).strftime("%H:%M") == "09:30"
    for token in tokens:
        lessons = await drip.lessons(token, cid)
        assert local(lessons[1]["unlocks_at"]).strftime("%H:%M") == "09:30"
    await drip.advance(DAY)
    assert Counter(recorder.unlocked()) == {later: 5}
    # A lesson added later is scheduled for everyone already enrolled.
    status, body = await api.post(f"/api/v1/courses/{cid}/lessons",
                                  lesson("Extra", {"after_days": 3, "at": "08:00"}), author)
    assert status == 201
    await wait_for_recompute(kpay_app, cid)
    await drip.advance(3 * DAY)
    assert Counter(recorder.unlocked()) == {later: 5, body["lesson"]["id"]: 5}


@pytest.mark.gen_test
async def test_an_interrupted_recompute_resumes_after_restart(drip, api, kpay_app,
                                                              kpay_settings):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2))
    cid = course["id"]
    await drip.student("s0", course)
    # As if the server died right after saving a new rule: the course says so.
    await kpay_app.store["courses"].update_one(
        {"_id": cid}, {"$inc": {"schedule_version": 1}, "$set": {"recompute_pending": True}})
    node = await second_node(kpay_settings)
    try:
        await wait_for_recompute(node, cid)
        enrollment = await node.store["course_enrollments"].find_one({"course_id": cid})
        course_doc = await node.store["courses"].find_one({"_id": cid})
        assert enrollment["schedule_version"] == course_doc["schedule_version"]
    finally:
        await node.stop()


@pytest.mark.gen_test
async def test_progress_and_author_stats(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(3))
    cid, ids = course["id"], [x["id"] for x in course["lessons"]]
    a = await drip.student("a", course)
    b = await drip.student("b", course)
    await api.post(f"/api/v1/courses/{cid}/enrollments", {"user_id": "c"}, author)
    await drip.advance(2 * DAY)
    for lid in ids[:2]:
        status, body = await api.post(f"/api/v1/courses/{cid}/lessons/{lid}/complete",
                                      token=a)
        assert status == 200, body
    await api.post(f"/api/v1/courses/{cid}/lessons/{ids[0]}/complete", token=b)
    status, body = await api.get(f"/api/v1/courses/{cid}/progress", a)
    progress = body["progress"]
    assert (progress["completed"], progress["total"], progress["percent"]) == (2, 3, 66)
    assert [x["completed_at"] is not None for x in progress["lessons"]] == [True, True, False]
    status, body = await api.get(f"/api/v1/courses/{cid}/stats", author)
    assert status == 200, body
    stats = body["stats"]
    assert stats["enrollments"] == 3 and stats["by_source"] == {"order": 2, "gift": 1}
    assert [x["completed"] for x in stats["lessons"]] == [2, 1, 0]
    assert [x["completion_percent"] for x in stats["lessons"]] == [66, 33, 0]
    status, body = await api.get(f"/api/v1/courses/{cid}/enrollments", author)
    assert {e["user_id"]: e["completed"] for e in body["enrollments"]} == {"a": 2, "b": 1,
                                                                           "c": 0}
    await assert_books_balanced(kpay_app)
