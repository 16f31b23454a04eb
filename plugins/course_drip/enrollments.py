"""Enrollments: buying (order kind ``course``), gifts, the unlock override, completing
lessons, and announcing unlocks exactly once.

One enrollment document per student and course, ``_id = "<course_id>:<user_id>"``, so
the database itself refuses a second one. States: ``pending`` (an order reserved it,
not paid yet) -> ``active``; ``revoked`` after a full refund (a new purchase may take
it over again).

Every change to an active enrollment increments ``rev``. The one write that
announces lessons (:func:`unlock_write`, sent by :func:`announce_due` or in the sweep's
bulk write) is guarded by the ``rev`` it read: it adds the announced lesson ids to
``notified`` and stores the new ``next_unlock_at`` in the same update, so of two
sweeps (or a sweep and a request, or two nodes) racing for one enrollment exactly one
wins; the loser re-reads and finds nothing left to announce. Pushes go out only after
that write succeeded, so a lesson is never announced twice; a crash between the write
and the push would lose that push (at most once; docs/course_drip.md).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from kpay.core.auth import User
from kpay.core.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from kpay.core.money.kinds import OrderKind, Priced, parse_item
from kpay.core.store import IndexSpec
from kpay.core.telling import Told
from plugins.course_drip.courses import find_course, visible_lessons
from plugins.course_drip.release import LessonState, due_lessons, lesson_states, next_unlock
from plugins.course_drip.settings import zone

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.course_drip")

ENROLLMENTS = "course_enrollments"
INDEXES = [
    # The sweep's only query: enrollments whose next unlock has passed.
    IndexSpec.of(ENROLLMENTS, "next_unlock_at"),
    IndexSpec.of(ENROLLMENTS, "course_id", "schedule_version"),
    IndexSpec.of(ENROLLMENTS, "user_id", ("enrolled_at", -1)),
]

ANNOUNCE_ATTEMPTS = 5


def enrollment_id(course_id: str, user_id: str) -> str:
    return f"{course_id}:{user_id}"


def states_of(course: dict[str, Any], enrollment: dict[str, Any], now: datetime,
              tz: ZoneInfo) -> list[LessonState]:
    # Unpublished lessons do not exist for students: an after_previous lesson follows
    # the previous lesson they can see.
    return lesson_states(visible_lessons(course["lessons"]), enrollment["enrolled_at"],
                         enrollment.get("completed") or {}, enrollment.get("unlocked_all_at"),
                         now, tz)


def activation(course: dict[str, Any], enrolled_at: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """Fields that make an enrollment active at ``enrolled_at``.

    Lessons already open at that moment count as announced: the student sees them on
    the course page they just bought, and a push for each would only be noise.
    """
    fresh = {"enrolled_at": enrolled_at, "completed": {}, "unlocked_all_at": None}
    states = states_of(course, fresh, enrolled_at, tz)
    notified = due_lessons(states, set())
    return {**fresh, "status": "active", "notified": notified,
            "next_unlock_at": next_unlock(states, set(notified)),
            "schedule_version": course["schedule_version"]}


async def active_enrollment(app: KPay, course_id: str, user_id: str) -> dict[str, Any] | None:
    return await app.store[ENROLLMENTS].find_one(
        {"_id": enrollment_id(course_id, user_id), "status": "active"})


# -- buying --------------------------------------------------------------------------


class CourseItem(BaseModel):
    kind: str
    course_id: str = Field(min_length=1, max_length=64)


class CourseOrderKind(OrderKind):
    """Order kind ``course``: ``{"kind": "course", "course_id"}``, paid to the author."""

    name = "course"
    adjustable = True

    async def price(self, app: KPay, user: User, item: dict[str, Any]) -> Priced:
        wanted = parse_item(CourseItem, item)
        course = await find_course(app, wanted.course_id, bodies=False)
        if course is None or (course["status"] != "published"
                              and course["author_id"] != user.id):
            raise NotFound(f"no course {wanted.course_id}", code="course_not_found")
        if course["author_id"] == user.id:
            raise Conflict("authors cannot buy their own course", code="own_course")
        if course["status"] != "published":
            raise Conflict("the course is not published", code="course_not_published")
        existing = await app.store[ENROLLMENTS].find_one(
            {"_id": enrollment_id(course["_id"], user.id)}, {"status": 1})
        refuse_existing(existing)
        return Priced(course["price"], f"课程 {course['title']}",
                      app.money.earnings_credits(course["price"], course["author_id"]),
                      {"kind": self.name, "course_id": course["_id"]})

    async def reserve(self, app: KPay, order: dict[str, Any], session: Any) -> None:
        # Inside the order's transaction: the unique _id is the one-per-student guard
        # that holds when two orders race past the check in price().
        course_id, user_id = order["item"]["course_id"], order["user_id"]
        await claim_enrollment(app, course_id, user_id, order["created_at"],
                               {"status": "pending", "source": "order",
                                "order_id": order["_id"]}, session)

    async def release(self, app: KPay, order: dict[str, Any]) -> None:
        await app.store[ENROLLMENTS].delete_one(
            {"_id": enrollment_id(order["item"]["course_id"], order["user_id"]),
             "order_id": order["_id"], "status": "pending"})

    async def fulfil(self, app: KPay, order: dict[str, Any]) -> None:
        course = await find_course(app, order["item"]["course_id"], bodies=False)
        if course is None:
            log.error("order %s paid for a course that no longer exists", order["_id"])
            return
        enrolled_at = order.get("paid_at") or app.clock.now()
        # Guarded by the pending state: a second fulfil (after a crash) changes nothing,
        # and tells nobody again.
        result = await app.store[ENROLLMENTS].update_one(
            {"_id": enrollment_id(course["_id"], order["user_id"]),
             "order_id": order["_id"], "status": "pending"},
            {"$set": activation(course, enrolled_at, zone(app)), "$inc": {"rev": 1}})
        if result.modified_count:
            await tell_sale(app, course, order)

    async def on_refund(self, app: KPay, order: dict[str, Any], refund: dict[str, Any]) -> None:
        if refund["purpose"] != "revoke":
            return  # a price adjustment keeps the course
        await app.store[ENROLLMENTS].update_one(
            {"_id": enrollment_id(order["item"]["course_id"], order["user_id"]),
             "order_id": order["_id"], "status": "active"},
            {"$set": {"status": "revoked", "next_unlock_at": None}, "$inc": {"rev": 1}})


async def tell_sale(app: KPay, course: dict[str, Any], order: dict[str, Any]) -> None:
    """The buyer (已购买) and the author (新学员) hear of a paid enrollment."""
    about = {"course_id": course["_id"], "course_title": course["title"]}
    await app.tell_user(order["user_id"], "course_purchased", about)
    buyer = await app.users.profile(order["user_id"])
    await app.tell_user(course["author_id"], "course_sold", {
        **about, "amount": order["amount"], "buyer_name": buyer["name"] if buyer else "学员"})


def refuse_existing(existing: dict[str, Any] | None) -> None:
    if existing is None or existing["status"] == "revoked":
        return
    if existing["status"] == "pending":
        raise Conflict("an order for this course is waiting for payment",
                       code="enrollment_pending")
    raise Conflict("already enrolled in this course", code="already_enrolled")


async def claim_enrollment(app: KPay, course_id: str, user_id: str, now: datetime,
                           fields: dict[str, Any], session: Any = None) -> None:
    """Create the enrollment (or take over a revoked one); 409 if one exists."""
    enrollments = app.store[ENROLLMENTS]
    key = enrollment_id(course_id, user_id)
    base = {"course_id": course_id, "user_id": user_id, "created_at": now,
            "enrolled_at": None, "completed": {}, "notified": [], "unlocked_all_at": None,
            "next_unlock_at": None, "schedule_version": 0, **fields}
    taken_over = await enrollments.update_one({"_id": key, "status": "revoked"},
                                              {"$set": base, "$inc": {"rev": 1}},
                                              session=session)
    if taken_over.matched_count:
        return
    try:
        await enrollments.insert_one({"_id": key, "rev": 1, **base}, session=session)
    except DuplicateKeyError:
        raise Conflict("already enrolled in this course (or an order for it is pending)",
                       code="already_enrolled") from None


async def gift(app: KPay, course: dict[str, Any], user_id: str, by: User) -> dict[str, Any]:
    """The author enrolls ``user_id`` for free, from now."""
    if user_id == course["author_id"]:
        raise BadRequest("the author needs no enrollment", code="own_course", field="user_id")
    now = app.clock.now()
    await claim_enrollment(app, course["_id"], user_id, now,
                           {"status": "active", "source": "gift", "granted_by": by.id,
                            **activation(course, now, zone(app))})
    return await app.store[ENROLLMENTS].find_one({"_id": enrollment_id(course["_id"], user_id)})


# -- lock, completion, override ---------------------------------------------------------


def locked_error(state: LessonState, tz: ZoneInfo) -> ApiError:
    return Forbidden("this lesson is not unlocked yet", code="lesson_locked",
                     lesson_id=state.lesson_id, unlocks_at=local_iso(state.unlocks_at, tz))


def local_iso(moment: datetime | None, tz: ZoneInfo) -> str | None:
    """Times go out in the configured zone, with the offset (API.md)."""
    return moment.astimezone(tz).isoformat() if moment is not None else None


def state_of(states: list[LessonState], lesson_id: str) -> LessonState:
    for state in states:
        if state.lesson_id == lesson_id:
            return state
    raise NotFound(f"no lesson {lesson_id}", code="lesson_not_found")


def lesson_state(app: KPay, course: dict[str, Any], enrollment: dict[str, Any],
                 lesson_id: str) -> LessonState:
    """The lesson's state for this enrollment now (404 ``lesson_not_found``)."""
    return state_of(states_of(course, enrollment, app.clock.now(), zone(app)), lesson_id)


async def complete(app: KPay, course: dict[str, Any], enrollment: dict[str, Any],
                   lesson_id: str) -> dict[str, Any]:
    """Mark a lesson completed (once; again is a no-op); 403 if it is locked."""
    now, tz = app.clock.now(), zone(app)
    state = state_of(states_of(course, enrollment, now, tz), lesson_id)
    if not state.unlocked:
        raise locked_error(state, tz)
    enrollments = app.store[ENROLLMENTS]
    await enrollments.update_one(
        {"_id": enrollment["_id"], "status": "active",
         f"completed.{lesson_id}": {"$exists": False}},
        {"$set": {f"completed.{lesson_id}": now}, "$inc": {"rev": 1}})
    # An after_previous lesson may have opened just now: announce it at once.
    await announce_due(app, enrollment["_id"], course)
    return await enrollments.find_one({"_id": enrollment["_id"]})


async def unlock_all(app: KPay, course: dict[str, Any], user_id: str) -> dict[str, Any]:
    """The author opens every lesson for one student (kept if already done)."""
    key = enrollment_id(course["_id"], user_id)
    enrollments = app.store[ENROLLMENTS]
    result = await enrollments.update_one(
        {"_id": key, "status": "active", "unlocked_all_at": None},
        {"$set": {"unlocked_all_at": app.clock.now()}, "$inc": {"rev": 1}})
    if not result.matched_count and await active_enrollment(app, course["_id"], user_id) is None:
        raise NotFound(f"{user_id} is not enrolled in this course", code="enrollment_not_found")
    await announce_due(app, key, course)
    return await enrollments.find_one({"_id": key})


# -- announcing unlocks ------------------------------------------------------------------


def unlock_write(course: dict[str, Any], enrollment: dict[str, Any], now: datetime,
                 tz: ZoneInfo, **also: Any
                 ) -> tuple[list[str], dict[str, Any], dict[str, Any]] | None:
    """The lessons of one enrollment to announce now and the one write (filter,
    update) that records them, guarded by the ``rev`` read (the schedule version and
    status checked on that copy); None when nothing changes. ``also`` are more fields
    to ``$set`` in the same write (the sweep's batch token). The one place the sweep
    and :func:`announce_due` decide it."""
    states = states_of(course, enrollment, now, tz)
    notified = set(enrollment.get("notified") or ())
    due = due_lessons(states, notified)
    upcoming = next_unlock(states, notified | set(due))
    version = course["schedule_version"]
    if (not due and upcoming == enrollment.get("next_unlock_at")
            and enrollment.get("schedule_version") == version):
        return None
    # The rev guard alone says the enrollment is still the copy read (every change
    # increments rev), so its status and schedule are checked on that copy: a filter
    # of _id and rev only is a point lookup for the database (SecantusDB plans every
    # further field against each index, a third of the sweep's time in its profile).
    guard: dict[str, Any] = {"_id": enrollment["_id"], "rev": enrollment["rev"]}
    if enrollment["status"] != "active" or enrollment.get("schedule_version", 0) > version:
        # Not active, or on a newer schedule than this copy of the course: a guard that
        # cannot match, so the write loses and the caller reads afresh.
        guard.update(status="active", schedule_version={"$lte": version})
    return due, guard, {
        "$addToSet": {"notified": {"$each": due}},
        # schedule_version is indexed: set only when it moves, so the usual write
        # (the version unchanged) asks the database for no work on that index.
        "$set": {"next_unlock_at": upcoming, **also,
                 **({} if enrollment.get("schedule_version") == version
                    else {"schedule_version": version})},
        "$inc": {"rev": 1}}


async def announce_due(app: KPay, key: str, course: dict[str, Any] | None = None,
                       enrollment: dict[str, Any] | None = None,
                       now: datetime | None = None) -> list[str]:
    """Announce every lesson of one enrollment that is open and not announced yet, and
    store when the next one opens. Exactly once per lesson, however many callers race.

    ``course`` and ``enrollment`` may be passed when the caller has just read them (the
    sweep); a stale copy only costs one retry.
    """
    enrollments = app.store[ENROLLMENTS]
    now = now or app.clock.now()
    tz = zone(app)
    for _ in range(ANNOUNCE_ATTEMPTS):
        if enrollment is None:
            enrollment = await enrollments.find_one({"_id": key})
        if enrollment is None or enrollment["status"] != "active":
            return []
        if course is None:
            course = await find_course(app, enrollment["course_id"], bodies=False)
            if course is None:
                await enrollments.update_one({"_id": key}, {"$set": {"next_unlock_at": None}})
                return []
        planned = unlock_write(course, enrollment, now, tz)
        if planned is None:
            return []
        due, guard, update = planned
        result = await enrollments.update_one(guard, update)
        if result.matched_count:
            await app.tell_users(unlock_notices(course, enrollment["user_id"], due))
            return due
        # Someone changed it since we read it (or the schedule is newer than our copy).
        enrollment, course = None, None
    log.warning("enrollment %s kept changing; its unlocks are left for the next sweep", key)
    return []


def unlock_notices(course: dict[str, Any], user_id: str, lesson_ids: list[str]
                   ) -> list[Told]:
    """One ``lesson_unlocked`` per lesson, naming its number and title (第 3 课《…》)."""
    lessons = {lesson["id"]: (number, lesson["title"])
               for number, lesson in enumerate(course["lessons"], start=1)}
    notices = []
    for lesson_id in lesson_ids:
        number, title = lessons.get(lesson_id, (None, ""))
        notices.append(Told(user_id, "lesson_unlocked",
                            {"course_id": course["_id"], "lesson_id": lesson_id,
                             "course_title": course["title"], "lesson_title": title,
                             "lesson_number": number}))
    return notices


# -- views --------------------------------------------------------------------------------


def lesson_list(course: dict[str, Any], enrollment: dict[str, Any] | None, now: datetime,
                tz: ZoneInfo) -> list[dict[str, Any]]:
    """API.md's lesson list; ``enrollment`` None means the author (everything open)."""
    if enrollment is None:
        return [{"id": lesson["id"], "title": lesson["title"], "unlocked": True,
                 "unlocks_at": None} for lesson in course["lessons"]]
    states = states_of(course, enrollment, now, tz)
    return [{"id": lesson["id"], "title": lesson["title"], "unlocked": state.unlocked,
             "unlocks_at": local_iso(state.unlocks_at, tz),
             "completed": lesson["id"] in (enrollment.get("completed") or {})}
            for lesson, state in zip(visible_lessons(course["lessons"]), states, strict=True)]


def progress_view(course: dict[str, Any], enrollment: dict[str, Any], now: datetime,
                  tz: ZoneInfo) -> dict[str, Any]:
    completed = enrollment.get("completed") or {}
    lessons = visible_lessons(course["lessons"])
    done = sum(1 for lesson in lessons if lesson["id"] in completed)
    return {
        "course_id": course["_id"], "user_id": enrollment["user_id"],
        "source": enrollment.get("source"), "enrolled_at": local_iso(enrollment["enrolled_at"], tz),
        "unlocked_all": enrollment.get("unlocked_all_at") is not None,
        "completed": done, "total": len(lessons),
        "percent": done * 100 // len(lessons) if lessons else 0,
        "next_unlock_at": local_iso(enrollment.get("next_unlock_at"), tz),
        "lessons": [{**item, "completed_at": local_iso(completed.get(item["id"]), tz)}
                    for item in lesson_list(course, enrollment, now, tz)],
    }
