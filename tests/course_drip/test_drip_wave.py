"""The 08:00 wave: the sweep reads, writes and announces in batches (docs/course_drip.md
"Unlock notifications, exactly once"): every due unlock once across batch boundaries,
against a write racing a batch, with two nodes sweeping at once, and past a broken
enrollment in the middle of a batch; and a batch's round trips do not grow with it."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from drip_helpers import DAY, daily_lessons, unlock_events
from test_drip_unlock import second_node, subscribed

from kpay.core import metrics
from plugins.course_drip.courses import COURSES, find_course
from plugins.course_drip.enrollments import (
    ENROLLMENTS,
    announce_due,
    enrollment_id,
    unlock_write,
)
from plugins.course_drip.settings import zone
from plugins.course_drip.sweep import EPOCH, sweep, sweep_batch

BATCH = 3


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    # The users' standing poll is slowed to 5 minutes so that the round trips counted
    # below are the sweep's alone.
    return {"plugins": {"enabled": ["course_drip"]},
            "course_drip": {"sweep_batch_size": BATCH},
            "auth": {"standing_cache_seconds": 300}}


async def enrolled(drip: Any, count: int, lessons: int = 3) -> tuple[dict, list[str]]:
    # Enrolled at 10:00 Beijing time, so a day later lesson 1 (08:00) is due, whatever
    # instant the test clock starts at (make test-times).
    await drip.advance_to_local(10, 0)
    author = await drip.author()
    course = await drip.course(author, daily_lessons(lessons))
    students = [f"s{i}" for i in range(count)]
    for user in students:
        await drip.student(user, course)
    return course, students


async def due_now(app: Any) -> list[dict[str, Any]]:
    return await app.store[ENROLLMENTS].find(
        {"next_unlock_at": {"$gte": EPOCH, "$lte": app.clock.now()}}).sort(
        "next_unlock_at", 1).to_list()


def commands_sent() -> Counter:
    return Counter({sample.labels["command"]: sample.value
                    for family in metrics.DB_COMMANDS.collect()
                    for sample in family.samples if sample.name.endswith("_total")})


@pytest.mark.gen_test
async def test_every_unlock_once_across_batch_boundaries(drip, api, kpay_app, recorder):
    course, students = await enrolled(drip, 2 * BATCH + 1)  # two full batches and one
    ids = [x["id"] for x in course["lessons"]]
    ws = await subscribed(api, await api.login("s4", "student"), "s4")
    kpay_app.clock.advance(DAY)  # no job runs: the sweep below is the only one
    assert await sweep(kpay_app) == len(students)
    assert Counter(recorder.calls[i][0] for i in range(len(recorder.calls))
                   if recorder.calls[i][1] == "lesson_unlocked") == {u: 1 for u in students}
    assert await unlock_events(ws, kpay_app, "s4") == [ids[1]]
    assert await kpay_app.notifications.unread_count("s4") == 2  # 已购买, 第 2 课
    assert await sweep(kpay_app) == 0
    assert await due_now(kpay_app) == []


@pytest.mark.gen_test
async def test_a_write_racing_the_batch_wins_and_is_not_announced_twice(drip, kpay_app,
                                                                        recorder):
    course, students = await enrolled(drip, BATCH)
    ids = [x["id"] for x in course["lessons"]]
    kpay_app.clock.advance(DAY)
    batch = await due_now(kpay_app)
    assert len(batch) == BATCH
    # Between the batch's read and its write, a request (completing a lesson) announces
    # s1's unlock itself and moves the enrollment's rev on.
    raced = next(e for e in batch if e["user_id"] == "s1")
    assert await announce_due(kpay_app, raced["_id"]) == [ids[1]]
    assert await sweep_batch(kpay_app, batch, {}, kpay_app.clock.now()) == BATCH - 1
    assert Counter(recorder.unlocked()) == {ids[1]: BATCH}
    assert sorted(uid for uid, kind, _ in recorder.calls if kind == "lesson_unlocked") == \
        students
    assert await due_now(kpay_app) == []


@pytest.mark.gen_test
async def test_two_nodes_sweeping_the_same_batches_announce_each_unlock_once(
        drip, api, kpay_app, kpay_settings, recorder):
    course, students = await enrolled(drip, 3 * BATCH + 2, lessons=4)
    ids = [x["id"] for x in course["lessons"]]
    node = await second_node(kpay_settings)
    try:
        ws = await subscribed(api, await api.login("s0", "student"), "s0")
        for day in (1, 2):
            kpay_app.clock.advance(DAY)
            node.clock.advance(DAY)
            counts = await asyncio.gather(sweep(kpay_app), sweep(node), sweep(kpay_app),
                                          sweep(node))
            assert sum(counts) == len(students)
            assert Counter(recorder.unlocked()) == {ids[d]: len(students)
                                                    for d in range(1, day + 1)}
        assert await unlock_events(ws, kpay_app, "s0") in (
            [], [ids[1]], [ids[2]], [ids[1], ids[2]])  # pushed on whichever node won
        saved = await kpay_app.notifications.list("s0")
        assert Counter(n["kind"] for n in saved) == {"lesson_unlocked": 2,
                                                     "course_purchased": 1}
    finally:
        await node.stop()


@pytest.mark.gen_test
async def test_a_batch_with_an_old_copy_of_the_course_writes_nothing_from_its_schedule(
        drip, kpay_app, recorder):
    course, _ = await enrolled(drip, BATCH, lessons=3)
    ids = [x["id"] for x in course["lessons"]]
    kpay_app.clock.advance(DAY)  # 10:00 the next day: lesson 1 opened at 08:00
    stale = await find_course(kpay_app, course["id"], bodies=False)
    # The author moved lesson 2 (the last) to day 5 and the recompute already moved s1 (rev and
    # schedule_version on); the batch is read after that, with the old copy of the course.
    version = stale["schedule_version"] + 1
    await kpay_app.store[COURSES].update_one(
        {"_id": course["id"]}, {"$set": {"lessons.2.release.after_days": 5,
                                         "schedule_version": version}})
    fresh = await find_course(kpay_app, course["id"], bodies=False)
    moved = enrollment_id(course["id"], "s1")
    enrollments = kpay_app.store[ENROLLMENTS]
    recomputed = unlock_write(fresh, await enrollments.find_one({"_id": moved}),
                              kpay_app.clock.now() - timedelta(hours=3), zone(kpay_app))
    assert recomputed is not None and recomputed[0] == []  # at 07:00: nothing open yet
    await enrollments.update_one(*recomputed[1:])
    batch = await due_now(kpay_app)
    assert await sweep_batch(kpay_app, batch, {course["id"]: stale},
                             kpay_app.clock.now()) == BATCH
    assert Counter(recorder.unlocked()) == {ids[1]: BATCH}
    s1 = await enrollments.find_one({"_id": moved})
    assert s1["schedule_version"] == version  # announced from the fresh course
    s0 = await enrollments.find_one({"_id": enrollment_id(course["id"], "s0")})
    assert s1["next_unlock_at"] == s0["next_unlock_at"] + timedelta(days=3)  # day 5, not 2


@pytest.mark.gen_test
async def test_a_broken_enrollment_in_the_middle_of_a_batch_stops_no_other(drip, kpay_app,
                                                                           recorder):
    course, students = await enrolled(drip, BATCH)
    ids = [x["id"] for x in course["lessons"]]
    enrollments = kpay_app.store[ENROLLMENTS]
    kpay_app.clock.advance(DAY)
    batch = await due_now(kpay_app)
    middle = batch[1]
    await enrollments.update_one({"_id": middle["_id"]},
                                 {"$set": {"enrolled_at": "garbage"}})
    assert await sweep(kpay_app) == BATCH - 1
    assert sorted(uid for uid, kind, _ in recorder.calls if kind == "lesson_unlocked") == \
        sorted(set(students) - {middle["user_id"]})
    entries = await kpay_app.attention.list()
    assert [e["subject"] for e in entries] == [f"enrollment:{middle['_id']}"]
    # It stays due (and on the list) without holding anyone else back.
    assert [e["_id"] for e in await due_now(kpay_app)] == [middle["_id"]]
    assert await sweep(kpay_app) == 0
    assert Counter(recorder.unlocked()) == {ids[1]: BATCH - 1}


@pytest.mark.gen_test
async def test_a_batch_costs_a_few_round_trips_whatever_its_size(drip, kpay_app, recorder):
    await enrolled(drip, 4 * BATCH)
    kpay_app.clock.advance(DAY)
    kpay_app.notifications.check_every = 1  # every save checks its list: the most sent
    before = commands_sent()
    assert await sweep(kpay_app) == 4 * BATCH
    sent = commands_sent() - before
    # Per batch of 3: the cursor's getMore, the bulk write, the notifications'
    # insert_many and the count of the lists checked; then the first find and the course.
    # Told one at a time it was an update, an insert and a find per unlock (36 here).
    assert sent == {"find": 2, "getMore": 4, "update": 4, "insert": 4, "aggregate": 4}, sent
