"""HTTP routes of course_drip (API.md "Courses", plus the author's tools).

The lock lives here on the server: a locked lesson's body is never read into a
response, and the lesson list says for each lesson whether and when it opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kpay.core.auth import User
from kpay.core.errors import Forbidden, NotFound
from kpay.core.web import BaseHandler, Route, api
from plugins.course_drip import courses as course_store
from plugins.course_drip import enrollments as enrollment_store
from plugins.course_drip import responses as r
from plugins.course_drip.access import reader
from plugins.course_drip.courses import (
    CourseIn,
    CoursePatch,
    LessonIn,
    LessonPatch,
    author_lesson_view,
    authored_course,
    course_view,
    find_course,
    find_lesson,
    is_author,
    lesson_with_body,
    visible_lessons,
    zone,
)
from plugins.course_drip.enrollments import (
    ENROLLMENTS,
    active_enrollment,
    lesson_list,
    lesson_state,
    local_iso,
    locked_error,
    progress_view,
)
from plugins.course_drip.media import cover_fields, lesson_media, signed_media
from plugins.course_drip.positions import forget_lesson, read_position, touch_lesson
from plugins.course_drip.stats import course_stats
from plugins.course_drip.storefront import with_authors
from plugins.course_drip.sweep import start_recompute

if TYPE_CHECKING:
    from kpay.core.app import KPay

AUTHOR_ROLES = ("consultant", "admin")


class CourseHandlerBase(BaseHandler):
    async def course_for_student(self, course_id: str, user: User, bodies: bool = False,
                                 ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """``(course, enrollment)``; the enrollment is None for the author. A student
        without an active enrollment gets 403 ``not_enrolled`` (404 for drafts)."""
        course = await find_course(self.kpay, course_id, bodies=bodies)
        if course is None:
            raise NotFound(f"no course {course_id}", code="course_not_found")
        may, enrollment = await reader(self.kpay, course, user)
        if not may:
            if course["status"] != "published":
                raise NotFound(f"no course {course_id}", code="course_not_found")
            raise Forbidden("enroll in this course to see its lessons", code="not_enrolled")
        return course, enrollment

    def after_edit(self, course: dict[str, Any]) -> None:
        if course.get("recompute_pending"):
            start_recompute(self.kpay, course["_id"])


class CoursesHandler(CourseHandlerBase):
    @api("Create a course with its lessons (draft)", body=CourseIn, roles=AUTHOR_ROLES,
         status=201, response=r.CourseResult)
    async def post(self) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        data = self.body(CourseIn)
        course_store.check_lesson_count(self.kpay, len(data.lessons))
        media = [await lesson_media(self.kpay, lesson, user.id) for lesson in data.lessons]
        cover = (await cover_fields(self.kpay, data.cover_media_id, user.id)
                 if data.cover_media_id else {})
        course = await course_store.create_course(self.kpay, user, data, media, cover)
        self.write_json({"course": course_view(course, author=True)}, 201)

    @api("Published courses, newest first, of one category if given; mine=1: the "
         "caller's own, drafts included", query=("mine", "category", "limit"),
         response=r.CourseList)
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 50, 1, 200)
        mine = self.query_int("mine", 0, 0, 1)
        query: dict[str, Any] = {"author_id": user.id} if mine else {"status": "published"}
        category = self.kpay.search.check_category(self.get_query_argument("category", None))
        if category:
            query["category"] = category
        cursor = self.kpay.store[course_store.COURSES].find(
            query, course_store.WITHOUT_BODIES).sort("created_at", -1).limit(limit)
        self.write_json({"courses": [course_view(c, author=bool(mine)) async for c in cursor]})


class CourseHandler(CourseHandlerBase):
    @api("A course's syllabus: title, price, lesson titles and release rules",
         response=r.CourseView)
    async def get(self, course_id: str) -> None:
        user = self.require_user()
        course = await find_course(self.kpay, course_id, bodies=False)
        enrollment = await active_enrollment(self.kpay, course_id, user.id) if course else None
        if course is None or (course["status"] != "published" and not is_author(course, user)
                              and enrollment is None):
            raise NotFound(f"no course {course_id}", code="course_not_found")
        self.write_json({"course": course_view(course, author=is_author(course, user)),
                         "enrolled": enrollment is not None,
                         "last_lesson_id": (enrollment or {}).get("last_lesson_id")})

    @api("Edit a course's title, description, price or cover (author)", body=CoursePatch,
         roles=AUTHOR_ROLES, response=r.CourseResult)
    async def patch(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        data = self.body(CoursePatch)
        cover = {}
        if data.cover_media_id is not None:
            course = await authored_course(self.kpay, course_id, user)
            cover = await cover_fields(self.kpay, data.cover_media_id, course["author_id"])
        edit = course_store.patch_course(data, cover)
        course = await course_store.edit_course(self.kpay, course_id, user, edit)
        self.write_json({"course": course_view(course, author=True)})


class PublishHandler(CourseHandlerBase):
    published = True

    @api("Publish a course: students can see and buy it (author)", roles=AUTHOR_ROLES,
         response=r.CourseResult)
    async def post(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        edit = course_store.set_published(self.kpay, self.published)
        course = await course_store.edit_course(self.kpay, course_id, user, edit)
        self.write_json({"course": course_view(course, author=True)})


class UnpublishHandler(PublishHandler):
    published = False

    @api("Withdraw a course to draft; enrolled students keep it (author)", roles=AUTHOR_ROLES,
         response=r.CourseResult)
    async def post(self, course_id: str) -> None:
        await super().post(course_id)


class LessonsHandler(CourseHandlerBase):
    @api("The caller's lessons: [{id, title, unlocked, unlocks_at}] (a bare list)",
         response=r.LessonList)
    async def get(self, course_id: str) -> None:
        user = self.require_user()
        course, enrollment = await self.course_for_student(course_id, user)
        self.write_json(lesson_list(course, enrollment, self.kpay.clock.now(), zone(self.kpay)))

    @api("Add a lesson at the end (author)", body=LessonIn, roles=AUTHOR_ROLES, status=201,
         response=r.AuthorLessonResult)
    async def post(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        data = self.body(LessonIn)
        author_id = (await authored_course(self.kpay, course_id, user))["author_id"]
        edit = course_store.add_lesson(self.kpay, data,
                                       await lesson_media(self.kpay, data, author_id))
        course = await course_store.edit_course(self.kpay, course_id, user, edit)
        self.after_edit(course)
        lesson = course["lessons"][-1]
        self.write_json({"lesson": author_lesson_view(lesson, len(course["lessons"]) - 1)}, 201)


class LessonHandler(CourseHandlerBase):
    @api("One lesson, or 403 lesson_locked with unlocks_at", response=r.LessonResult)
    async def get(self, course_id: str, lesson_id: str) -> None:
        user = self.require_user()
        # Read without bodies first: a locked lesson's body is never even loaded.
        course, enrollment = await self.course_for_student(course_id, user)
        tz = zone(self.kpay)
        saved = await read_position(self.kpay, course_id, lesson_id, user.id)
        if enrollment is None:
            position, _ = find_lesson(course, lesson_id)
            lesson = await lesson_with_body(self.kpay, course_id, lesson_id)
            self.write_json({"lesson": {
                **author_lesson_view(lesson, position),
                **signed_media(self.kpay, course_id, lesson, user.id), "progress": saved}})
            return
        # An unpublished lesson is not there for students (404 lesson_not_found).
        position, _ = find_lesson({**course, "lessons": visible_lessons(course["lessons"])},
                                  lesson_id)
        state = lesson_state(self.kpay, course, enrollment, lesson_id)
        if not state.unlocked:
            raise locked_error(state, tz)
        lesson = await lesson_with_body(self.kpay, course_id, lesson_id)
        await touch_lesson(self.kpay, course_id, lesson_id, user.id)
        completed_at = (enrollment.get("completed") or {}).get(lesson_id)
        self.write_json({"lesson": {
            "id": lesson["id"], "position": position, "title": lesson["title"],
            "media_url": lesson.get("media_url"),
            **signed_media(self.kpay, course_id, lesson, user.id),
            "duration_seconds": lesson.get("duration_seconds"), "progress": saved,
            "unlocked": True, "unlocks_at": local_iso(state.unlocks_at, tz),
            "completed": completed_at is not None, "completed_at": local_iso(completed_at, tz)}})

    @api("Edit a lesson (author); a new release rule reschedules every student",
         body=LessonPatch, roles=AUTHOR_ROLES, response=r.AuthorLessonResult)
    async def patch(self, course_id: str, lesson_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        data = self.body(LessonPatch)
        current = await authored_course(self.kpay, course_id, user)
        _, stored = find_lesson(current, lesson_id)
        media = await lesson_media(self.kpay, data, current["author_id"], stored)
        edit = course_store.patch_lesson(self.kpay, lesson_id, data, media)
        course = await course_store.edit_course(self.kpay, course_id, user, edit)
        self.after_edit(course)
        position, lesson = find_lesson(course, lesson_id)
        self.write_json({"lesson": author_lesson_view(lesson, position)})

    @api("Delete an unpublished lesson (author); 409 lesson_published for a published one",
         roles=AUTHOR_ROLES, response=r.CourseResult)
    async def delete(self, course_id: str, lesson_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        edit = course_store.delete_lesson(lesson_id)
        course = await course_store.edit_course(self.kpay, course_id, user, edit)
        await forget_lesson(self.kpay, course_id, lesson_id)
        self.write_json({"course": course_view(course, author=True)})


class CompleteHandler(CourseHandlerBase):
    @api("Mark a lesson completed (403 lesson_locked if it is not open)",
         response=r.ProgressResult)
    async def post(self, course_id: str, lesson_id: str) -> None:
        user = self.require_user()
        course, enrollment = await self.course_for_student(course_id, user)
        if enrollment is None:
            raise Forbidden("authors have no progress in their own course",
                            code="not_enrolled")
        find_lesson(course, lesson_id)
        updated = await enrollment_store.complete(self.kpay, course, enrollment, lesson_id)
        self.write_json({"progress": progress_view(course, updated, self.kpay.clock.now(),
                                                   zone(self.kpay))})


class ProgressHandler(CourseHandlerBase):
    @api("The caller's progress in a course", response=r.ProgressResult)
    async def get(self, course_id: str) -> None:
        user = self.require_user()
        course, enrollment = await self.course_for_student(course_id, user)
        if enrollment is None:
            raise Forbidden("authors have no progress in their own course",
                            code="not_enrolled")
        self.write_json({"progress": progress_view(course, enrollment, self.kpay.clock.now(),
                                                   zone(self.kpay))})


class StatsHandler(CourseHandlerBase):
    @api("Enrollments and completion per lesson (author)", roles=AUTHOR_ROLES,
         response=r.CourseStatsResult)
    async def get(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        course = await authored_course(self.kpay, course_id, user)
        self.write_json({"stats": await course_stats(self.kpay, course)})


class GiftRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class EnrollmentsHandler(CourseHandlerBase):
    @api("Enroll a student for free (a gift from the author)", body=GiftRequest,
         roles=AUTHOR_ROLES, status=201, response=r.ProgressResult)
    async def post(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        course = await authored_course(self.kpay, course_id, user)
        wanted = self.body(GiftRequest)
        enrollment = await enrollment_store.gift(self.kpay, course, wanted.user_id, user)
        self.write_json({"progress": progress_view(course, enrollment, self.kpay.clock.now(),
                                                   zone(self.kpay))}, 201)

    @api("The course's students with their progress, newest first (author)",
         roles=AUTHOR_ROLES, query=("limit", "skip"), response=r.EnrollmentList)
    async def get(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        course = await authored_course(self.kpay, course_id, user)
        limit = self.query_int("limit", 50, 1, 200)
        skip = self.query_int("skip", 0, 0, 1_000_000)
        cursor = self.kpay.store[ENROLLMENTS].find(
            {"course_id": course_id, "status": "active"}).sort("enrolled_at", -1).skip(
            skip).limit(limit)
        now, tz = self.kpay.clock.now(), zone(self.kpay)
        students = []
        async for enrollment in cursor:
            view = progress_view(course, enrollment, now, tz)
            view.pop("lessons")
            students.append(view)
        self.write_json({"enrollments": students})


class UnlockAllHandler(CourseHandlerBase):
    @api("Unlock every lesson for one student (author override)", roles=AUTHOR_ROLES,
         response=r.ProgressResult)
    async def post(self, course_id: str, user_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        course = await authored_course(self.kpay, course_id, user)
        enrollment = await enrollment_store.unlock_all(self.kpay, course, user_id)
        self.write_json({"progress": progress_view(course, enrollment, self.kpay.clock.now(),
                                                   zone(self.kpay))})


class MyCoursesHandler(BaseHandler):
    @api("The caller's enrolled courses with progress", query=("limit",),
         response=r.EnrolledCourseList)
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 50, 1, 200)
        cursor = self.kpay.store[ENROLLMENTS].find(
            {"user_id": user.id, "status": "active"}).sort("enrolled_at", -1).limit(limit)
        now, tz = self.kpay.clock.now(), zone(self.kpay)
        out = []
        async for enrollment in cursor:
            course = await find_course(self.kpay, enrollment["course_id"], bodies=False)
            if course is not None:
                view = progress_view(course, enrollment, now, tz)
                view.pop("lessons")
                out.append({"course": course_view(course), "progress": view})
        await with_authors(self.kpay, [o["course"] for o in out])  # names for 已购
        self.write_json({"courses": out})


def routes(app: KPay) -> list[Route]:
    base = "/api/v1/courses"
    tags = ("courses",)
    return [
        Route(base, CoursesHandler, tags=tags),
        Route(base + "/{course_id}", CourseHandler, tags=tags),
        Route(base + "/{course_id}/publish", PublishHandler, tags=tags),
        Route(base + "/{course_id}/unpublish", UnpublishHandler, tags=tags),
        Route(base + "/{course_id}/lessons", LessonsHandler, tags=tags),
        Route(base + "/{course_id}/lessons/{lesson_id}", LessonHandler, tags=tags),
        Route(base + "/{course_id}/lessons/{lesson_id}/complete", CompleteHandler, tags=tags),
        Route(base + "/{course_id}/progress", ProgressHandler, tags=tags),
        Route(base + "/{course_id}/stats", StatsHandler, tags=tags),
        Route(base + "/{course_id}/enrollments", EnrollmentsHandler, tags=tags),
        Route(base + "/{course_id}/enrollments/{user_id}/unlock_all", UnlockAllHandler,
              tags=tags),
        Route("/api/v1/me/courses", MyCoursesHandler, tags=tags),
    ]
