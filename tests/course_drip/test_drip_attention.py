"""One broken course or enrollment never stops drip release for everyone: the sweep and
the schedule recompute skip it, log it and put it on the needs-attention list."""

from __future__ import annotations

import pytest
from drip_helpers import DAY, daily_lessons, lesson, unlock_events
from test_drip_unlock import subscribed

from plugins.course_drip.sweep import recompute_schedule


@pytest.mark.gen_test
async def test_a_broken_enrollment_does_not_stop_the_sweep(drip, api, kpay_app, recorder):
    author = await drip.author()
    broken_course = await drip.course(author, daily_lessons(2), title="坏课")
    good_course = await drip.course(author, daily_lessons(2), title="好课")
    await drip.student("victim", broken_course)
    good = await drip.student("good", good_course)
    ws = await subscribed(api, good, "good")
    # A record the sweep cannot read: its enrollment time is gone.
    enrollments = kpay_app.store["course_enrollments"]
    await enrollments.update_one({"course_id": broken_course["id"], "user_id": "victim"},
                                 {"$set": {"enrolled_at": "garbage"}})
    day_1 = (await drip.lessons(good, good_course["id"]))[1]["unlocks_at"]
    await drip.advance_past(day_1)
    assert await unlock_events(ws, kpay_app, "good") == [good_course["lessons"][1]["id"]]
    entries = await kpay_app.attention.list()
    assert [(e["source"], e["details"]["course_id"]) for e in entries] == [
        ("course_drip.unlock_sweep", broken_course["id"])]
    assert entries[0]["subject"].startswith("enrollment:")
    # The other students of the broken course are unaffected too.
    later = await drip.student("later", broken_course)
    assert [x["unlocked"] for x in await drip.lessons(later, broken_course["id"])] == [
        True, False]


@pytest.mark.gen_test
async def test_a_date_stored_before_dates_were_bounded_breaks_nothing(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, [lesson("Day 0"), lesson("Later", {"after_days": 1})])
    student = await drip.student("stu", course)
    # Planted as an old version could store it: year 1 at +14:00 has no UTC moment.
    await kpay_app.store["courses"].update_one(
        {"_id": course["id"]},
        {"$set": {"lessons.1.release": {"at_date": "0001-01-01T00:00:00+14:00"}}})
    lessons = await drip.lessons(student, course["id"])
    assert [(x["unlocked"], x["unlocks_at"]) for x in lessons[1:]] == [(False, None)]
    await drip.advance(DAY)
    assert await kpay_app.attention.list() == []
    # Buying it still enrols (the order is fulfilled, not stuck "paid").
    assert await drip.student("buyer", course)


@pytest.mark.gen_test
async def test_the_recompute_skips_a_broken_enrollment(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(3))
    await drip.student("victim", course)
    fine = await drip.student("fine", course)
    await kpay_app.store["course_enrollments"].update_one(
        {"course_id": course["id"], "user_id": "victim"}, {"$set": {"enrolled_at": None}})
    lesson_id = course["lessons"][2]["id"]
    status, body = await api.request(
        "PATCH", f"/api/v1/courses/{course['id']}/lessons/{lesson_id}",
        {"release": {"after_days": 5, "at": "09:00"}}, token=author)
    assert status == 200, body
    await recompute_schedule(kpay_app, course["id"])  # as the spawned task does
    stored = await kpay_app.store["courses"].find_one({"_id": course["id"]})
    assert stored["recompute_pending"] is False
    [entry] = await kpay_app.attention.list()
    assert entry["source"] == "course_drip.recompute"
    lessons = await drip.lessons(fine, course["id"])
    assert lessons[2]["unlocks_at"].endswith("T09:00:00+08:00")


@pytest.mark.gen_test
async def test_a_course_whose_lesson_lost_its_title_does_not_silence_its_batch(
        drip, api, kpay_app):
    """The sweep words the notices of a whole batch after its one write: a course it
    cannot word (a lesson without a title, hand-edited) must not cost the other
    students of the batch their announcements."""
    author = await drip.author()
    broken_course = await drip.course(author, daily_lessons(2), title="坏课")
    good_course = await drip.course(author, daily_lessons(2), title="好课")
    await drip.student("victim", broken_course)
    good = await drip.student("good", good_course)
    ws = await subscribed(api, good, "good")
    await kpay_app.store["courses"].update_one({"_id": broken_course["id"]},
                                               {"$unset": {"lessons.1.title": ""}})
    day_1 = (await drip.lessons(good, good_course["id"]))[1]["unlocks_at"]
    await drip.advance_past(day_1)
    assert await unlock_events(ws, kpay_app, "good") == [good_course["lessons"][1]["id"]]
