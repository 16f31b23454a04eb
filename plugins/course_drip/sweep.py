"""Background work: the unlock sweep (one periodic job) and the schedule recompute.

The sweep reads only enrollments whose stored ``next_unlock_at`` has passed, through
the index on that field, so its cost follows the number of unlocks due, not the
number of students. After a dev clock jump of several days one run announces every
lesson that opened meanwhile, each once.

When an author changes a release rule, every enrollment's ``next_unlock_at`` is
recomputed in batches (bulk writes), guarded by ``rev`` and ``schedule_version`` so a
sweep racing it cannot be overwritten with a time from the old schedule. The course
carries ``recompute_pending`` until the last batch; ``on_startup`` resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from kpay.core.scheduler import PeriodicJob
from plugins.course_drip.courses import COURSES, find_course
from plugins.course_drip.enrollments import (
    ENROLLMENTS,
    announce_due,
    states_of,
    unlock_notices,
    unlock_write,
)
from plugins.course_drip.release import next_unlock
from plugins.course_drip.settings import settings_of, zone

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.course_drip")

SWEEP = "course_drip.unlock_sweep"
RECOMPUTE = "course_drip.recompute"
MAX_RECOMPUTE_PASSES = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sweep_job(app: KPay) -> PeriodicJob:
    async def run() -> int:
        return await sweep(app)
    return PeriodicJob(SWEEP, run, settings_of(app).sweep_interval_seconds)


async def sweep(app: KPay) -> int:
    """Announce every lesson that opened since the last run; returns how many.

    One cursor over the due range, read ``sweep_batch_size`` at a time: each enrollment
    leaves the range as it is handled (its new ``next_unlock_at`` is in the future or
    None), so the cursor never meets it again, and the query is not re-run per batch
    (which costs O(due) each time on a server that does not push the limit into the
    index scan). Each batch costs a few round trips, not a few per unlock
    (:func:`sweep_batch`, docs/course_drip.md "Unlock notifications, exactly once").
    """
    now = app.clock.now()
    # The lower bound keeps the index scan off the many enrollments with nothing left
    # to unlock (next_unlock_at None): SecantusDB walks those for a bare $lte.
    due = {"$gte": EPOCH, "$lte": now}
    size = settings_of(app).sweep_batch_size
    cursor = app.store[ENROLLMENTS].find({"next_unlock_at": due}).sort(
        "next_unlock_at", 1).batch_size(size)
    courses: dict[str, dict[str, Any] | None] = {}
    announced = handled = 0
    while batch := await cursor.to_list(size):
        announced += await sweep_batch(app, batch, courses, now)
        handled += len(batch)
    if announced:
        log.info("unlock sweep: announced %d lesson(s) of %d due enrollment(s)", announced,
                 handled)
    return announced


async def sweep_batch(app: KPay, batch: list[dict[str, Any]],
                      courses: dict[str, dict[str, Any] | None], now: datetime) -> int:
    """Announce the due lessons of one batch of enrollments; returns how many.

    The new state of each is computed here and written with one unordered
    ``bulk_write`` of updates guarded by the ``rev`` read (:func:`unlock_write`), each
    also setting this batch's random ``swept_by`` token. A write that lost (a request,
    a second node or a schedule recompute changed the enrollment since it was read)
    matches nothing, so when fewer matched than were sent one read of the batch's ids
    with the token tells which are ours; only those are announced, so a lesson is never
    announced twice. The losers go through :func:`announce_due` (fresh read, retries),
    which finds nothing left when the winner already announced it. Announcing comes
    after the write: a crash in between loses that batch's pushes (at most once); the
    lessons are open on read regardless.
    """
    tz = zone(app)
    token = secrets.token_hex(8)
    # enrollment id -> (course, user id, lessons to announce)
    planned: dict[str, tuple[dict[str, Any], str, list[str]]] = {}
    writes: list[UpdateOne] = []
    for enrollment in batch:
        # One broken enrollment or course is logged, put on the attention list and
        # skipped (it stays due): it must not stop the unlocks of every other course.
        async with app.attention.isolate(SWEEP, f"enrollment:{enrollment['_id']}",
                                         course_id=enrollment.get("course_id")):
            course_id = enrollment["course_id"]
            if course_id not in courses:
                courses[course_id] = await find_course(app, course_id, bodies=False)
            course = courses[course_id]
            if course is None or enrollment["status"] != "active":
                # Nothing to announce, ever: leave the due range.
                writes.append(UpdateOne({"_id": enrollment["_id"], "rev": enrollment["rev"]},
                                        {"$set": {"next_unlock_at": None},
                                         "$inc": {"rev": 1}}))
                continue
            plan = unlock_write(course, enrollment, now, tz, swept_by=token)
            if plan is not None:
                due, guard, update = plan
                writes.append(UpdateOne(guard, update))
                planned[enrollment["_id"]] = (course, enrollment["user_id"], due)
    if not writes:
        return 0
    enrollments = app.store[ENROLLMENTS]
    try:
        matched = (await enrollments.bulk_write(writes, ordered=False)).matched_count
    except BulkWriteError as e:  # unordered: the other writes were still made
        matched = e.details.get("nMatched", 0)
    ours = set(planned)
    if matched < len(writes):
        ours = {doc["_id"] async for doc in enrollments.find(
            {"_id": {"$in": list(planned)}, "swept_by": token}, {"_id": 1})}
    notices = []
    for key, (course, user_id, due) in planned.items():
        if key in ours:
            # Worded one by one: a course that cannot be (a lesson without a title) is
            # put on the attention list, not the end of the batch's announcements.
            async with app.attention.isolate(SWEEP, f"enrollment:{key}",
                                             course_id=course["_id"]):
                notices += unlock_notices(course, user_id, due)
    announced = len(notices)
    async with app.attention.isolate(SWEEP, f"announce:{batch[0]['_id']}"):
        await app.tell_users(notices)
    for key in planned.keys() - ours:
        async with app.attention.isolate(SWEEP, f"enrollment:{key}"):
            announced += len(await announce_due(app, key, now=now))
    return announced


def start_recompute(app: KPay, course_id: str) -> None:
    app.spawn(recompute_schedule(app, course_id))


async def recompute_schedule(app: KPay, course_id: str) -> int:
    """Bring every active enrollment of a course to its current schedule; returns how
    many were rewritten. Safe to run twice at once or on two nodes."""
    course = await find_course(app, course_id, bodies=False)
    if course is None:
        return 0
    version = course["schedule_version"]
    enrollments = app.store[ENROLLMENTS]
    behind = {"course_id": course_id, "status": "active", "schedule_version": {"$lt": version}}
    total = await enrollments.count_documents(behind)
    log.info("course %s: schedule v%d, recomputing next unlock of %d enrollment(s)",
             course_id, version, total)
    batch_size = settings_of(app).recompute_batch_size
    tz = zone(app)
    rewritten = 0
    for _ in range(MAX_RECOMPUTE_PASSES):
        batch = await enrollments.find(behind).limit(batch_size).to_list()
        if not batch:
            break
        now = app.clock.now()
        writes = []
        for enrollment in batch:
            async with app.attention.isolate(RECOMPUTE, f"enrollment:{enrollment['_id']}",
                                             course_id=course_id) as step:
                upcoming = next_unlock(states_of(course, enrollment, now, tz),
                                       set(enrollment.get("notified") or ()))
            if step.failed:
                # Moved to this version with no next unlock, so the recompute ends; it
                # waits on the attention list, and the next schedule change retries it.
                upcoming = None
            writes.append(UpdateOne(
                {"_id": enrollment["_id"], "rev": enrollment["rev"],
                 "schedule_version": {"$lt": version}},
                {"$set": {"next_unlock_at": upcoming, "schedule_version": version},
                 "$inc": {"rev": 1}}))
        result = await enrollments.bulk_write(writes, ordered=False)
        rewritten += result.modified_count
        log.info("course %s: recomputed %d/%d", course_id, rewritten, total)
        latest = await app.store[COURSES].find_one({"_id": course_id}, {"schedule_version": 1})
        if latest is None or latest["schedule_version"] != version:
            log.info("course %s: schedule changed again; the newer recompute takes over",
                     course_id)
            return rewritten
        await asyncio.sleep(0)  # let requests in between batches
    await app.store[COURSES].update_one({"_id": course_id, "schedule_version": version},
                                        {"$set": {"recompute_pending": False}})
    log.info("course %s: schedule v%d recompute done (%d rewritten)", course_id, version,
             rewritten)
    return rewritten


async def resume_recomputes(app: KPay) -> None:
    """After a restart: finish the recomputes that were interrupted."""
    async for course in app.store[COURSES].find({"recompute_pending": True}, {"_id": 1}):
        start_recompute(app, course["_id"])
