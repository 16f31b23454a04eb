"""Courses and their lessons: input models, storage and the views the API shows.

A course is one document with its lessons embedded in course order (a course has
tens of lessons, and the release rules are read together). Lesson bodies are kept as
the author wrote them (Markdown) and as rendered, cleaned HTML.

``schedule_version`` goes up whenever a release rule changes or a lesson is added;
enrollments remember the version their ``next_unlock_at`` was computed with, and the
background recompute (:mod:`plugins.course_drip.sweep`) brings the rest up to date.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pymongo import ReturnDocument

from kpay.core.auth import User
from kpay.core.errors import BadRequest, Conflict, Forbidden, NotFound
from kpay.core.ratelimit import enforce_cap
from kpay.core.store import IndexSpec
from plugins.course_drip.content import check_media_url, render_markdown
from plugins.course_drip.release import ReleaseRuleError, check_chain, parse_rule
from plugins.course_drip.settings import settings_of, zone

if TYPE_CHECKING:
    from kpay.core.app import KPay

COURSES = "courses"
INDEXES = [
    IndexSpec.of(COURSES, "author_id", ("created_at", -1)),
    IndexSpec.of(COURSES, "status", ("created_at", -1)),
    IndexSpec.of(COURSES, "recompute_pending"),
]
MAX_PRICE = 100_000_000  # one million yuan, in fen: anything above is a typo
EDIT_ATTEMPTS = 5
#: Lesson fields the lesson list and the lock never need: left in the database.
WITHOUT_BODIES = {"lessons.body": 0, "lessons.body_html": 0}


# -- input ---------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: An absolute http(s) URL of at most 2000 characters (covers, lesson media).
MediaUrl = Annotated[str, Field(max_length=2000), AfterValidator(check_media_url)]


class LessonIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field("", max_length=200_000)
    media_url: MediaUrl | None = None
    #: Checked against the configured zone by :func:`build_lesson`; default: at once.
    release: Any = Field(default_factory=lambda: {"after_days": 0})

    @model_validator(mode="after")
    def has_content(self) -> LessonIn:
        if not self.body.strip() and not self.media_url:
            raise ValueError("a lesson needs a body or a media_url")
        return self


class LessonPatch(Strict):
    title: str | None = Field(None, min_length=1, max_length=200)
    body: str | None = Field(None, max_length=200_000)
    media_url: MediaUrl | None = None
    release: Any = None


class CourseIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=20_000)
    price: int = Field(strict=True, ge=0, le=MAX_PRICE)
    cover: MediaUrl | None = None
    lessons: list[LessonIn] = Field(default_factory=list)


class CoursePatch(Strict):
    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=20_000)
    price: int | None = Field(None, strict=True, ge=0, le=MAX_PRICE)
    cover: MediaUrl | None = None


# -- building documents ----------------------------------------------------------------


def rule_or_400(raw: Any, tz: ZoneInfo, field: str) -> dict[str, Any]:
    try:
        return parse_rule(raw, tz, field)
    except ReleaseRuleError as e:
        raise BadRequest(f"{e.field}: {e}", code="invalid_release", field=e.field) from None


def chain_or_400(lessons: list[dict[str, Any]], field: str = "lessons") -> None:
    try:
        check_chain([lesson["release"] for lesson in lessons], field)
    except ReleaseRuleError as e:
        raise BadRequest(f"{e.field}: {e}", code="invalid_release", field=e.field) from None


def new_lesson_id(taken: set[str]) -> str:
    while True:
        lesson_id = "l" + secrets.token_hex(4)
        if lesson_id not in taken:
            return lesson_id


def build_lesson(app: KPay, lesson: LessonIn, field: str, taken: set[str]) -> dict[str, Any]:
    limit = settings_of(app).max_body_chars
    if len(lesson.body) > limit:
        raise BadRequest(f"{field}.body: over {limit} characters", code="invalid_field",
                         field=f"{field}.body")
    return {"id": new_lesson_id(taken), "title": lesson.title, "body": lesson.body,
            "body_html": render_markdown(lesson.body), "media_url": lesson.media_url,
            "release": rule_or_400(lesson.release, zone(app), f"{field}.release")}


def check_lesson_count(app: KPay, count: int) -> None:
    limit = settings_of(app).max_lessons
    if count > limit:
        raise BadRequest(f"a course has at most {limit} lessons", code="invalid_field",
                         field="lessons")


async def create_course(app: KPay, author: User, data: CourseIn) -> dict[str, Any]:
    check_lesson_count(app, len(data.lessons))
    limit = settings_of(app).max_draft_courses_per_author
    await enforce_cap(app.store[COURSES], {"author_id": author.id, "status": "draft"}, limit,
                      "draft_courses",
                      f"you have {limit} unpublished courses; publish one first")
    taken: set[str] = set()
    lessons = []
    for i, lesson in enumerate(data.lessons):
        built = build_lesson(app, lesson, f"lessons.{i}", taken)
        taken.add(built["id"])
        lessons.append(built)
    chain_or_400(lessons)
    now = app.clock.now()
    course = {
        "_id": "crs" + secrets.token_hex(8), "author_id": author.id, "title": data.title,
        "description": data.description, "description_html": render_markdown(data.description),
        "price": data.price, "cover": data.cover, "status": "draft", "lessons": lessons,
        "rev": 1, "schedule_version": 1, "recompute_pending": False,
        "created_at": now, "updated_at": now, "published_at": None,
    }
    await app.store[COURSES].insert_one(course)
    return course


# -- reading and access ------------------------------------------------------------------


async def find_course(app: KPay, course_id: str, bodies: bool = True) -> dict[str, Any] | None:
    return await app.store[COURSES].find_one({"_id": course_id},
                                             None if bodies else WITHOUT_BODIES)


async def lesson_with_body(app: KPay, course_id: str, lesson_id: str) -> dict[str, Any]:
    """One lesson with its body: only that lesson is read from the database."""
    found = await app.store[COURSES].find_one(
        {"_id": course_id}, {"lessons": {"$elemMatch": {"id": lesson_id}}})
    if not found or not found.get("lessons"):
        raise NotFound(f"no lesson {lesson_id} in course {course_id}", code="lesson_not_found")
    return found["lessons"][0]


def is_author(course: dict[str, Any], user: User) -> bool:
    return course["author_id"] == user.id or user.role == "admin"


async def authored_course(app: KPay, course_id: str, user: User) -> dict[str, Any]:
    """The course, if ``user`` may edit it (its author or an admin); else 404/403."""
    course = await find_course(app, course_id)
    if course is None:
        raise NotFound(f"no course {course_id}", code="course_not_found")
    if not is_author(course, user):
        raise Forbidden("only the course's author may do this", code="not_course_author")
    return course


def find_lesson(course: dict[str, Any], lesson_id: str) -> tuple[int, dict[str, Any]]:
    for i, lesson in enumerate(course["lessons"]):
        if lesson["id"] == lesson_id:
            return i, lesson
    raise NotFound(f"no lesson {lesson_id} in course {course['_id']}", code="lesson_not_found")


# -- editing -----------------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], tuple[dict[str, Any], bool]]


async def edit_course(app: KPay, course_id: str, user: User, edit: Edit) -> dict[str, Any]:
    """Apply ``edit(course) -> (changes, schedule_changed)`` with an optimistic guard on
    ``rev``, so two authors' tabs editing at once never lose a lesson; retried on a race.

    A schedule change bumps ``schedule_version`` and marks the recompute pending in the
    same write, so a restart resumes it (the caller starts it).
    """
    courses = app.store[COURSES]
    for _ in range(EDIT_ATTEMPTS):
        course = await authored_course(app, course_id, user)
        changes, schedule_changed = edit(course)
        update: dict[str, Any] = {"$set": {**changes, "updated_at": app.clock.now()},
                                  "$inc": {"rev": 1}}
        if schedule_changed:
            update["$inc"]["schedule_version"] = 1
            update["$set"]["recompute_pending"] = True
        updated = await courses.find_one_and_update(
            {"_id": course_id, "rev": course["rev"]}, update,
            return_document=ReturnDocument.AFTER)
        if updated is not None:
            return updated
    raise Conflict("the course changed while saving; try again", code="course_changed")


def patch_course(data: CoursePatch) -> Edit:
    def edit(course: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        changes = {name: getattr(data, name) for name in data.model_fields_set
                   if name == "cover" or getattr(data, name) is not None}
        if "description" in changes:
            changes["description_html"] = render_markdown(changes["description"])
        return changes, False
    return edit


def add_lesson(app: KPay, data: LessonIn) -> Edit:
    def edit(course: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        check_lesson_count(app, len(course["lessons"]) + 1)
        taken = {lesson["id"] for lesson in course["lessons"]}
        lesson = build_lesson(app, data, f"lessons.{len(course['lessons'])}", taken)
        lessons = [*course["lessons"], lesson]
        chain_or_400(lessons)
        return {"lessons": lessons}, True
    return edit


def patch_lesson(app: KPay, lesson_id: str, data: LessonPatch) -> Edit:
    def edit(course: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        index, lesson = find_lesson(course, lesson_id)
        lesson = dict(lesson)
        given = data.model_fields_set
        if data.title is not None:
            lesson["title"] = data.title
        if data.body is not None:
            limit = settings_of(app).max_body_chars
            if len(data.body) > limit:
                raise BadRequest(f"body: over {limit} characters", code="invalid_field",
                                 field="body")
            lesson["body"] = data.body
            lesson["body_html"] = render_markdown(data.body)
        if "media_url" in given:
            lesson["media_url"] = data.media_url
        if not lesson["body"].strip() and not lesson.get("media_url"):
            raise BadRequest("a lesson needs a body or a media_url", code="invalid_field",
                             field="body")
        schedule_changed = False
        if "release" in given:
            rule = rule_or_400(data.release, zone(app), "release")
            schedule_changed = rule != lesson["release"]
            lesson["release"] = rule
        lessons = list(course["lessons"])
        lessons[index] = lesson
        chain_or_400(lessons)
        return {"lessons": lessons}, schedule_changed
    return edit


def set_published(app: KPay, published: bool) -> Edit:
    def edit(course: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if published and not course["lessons"]:
            raise Conflict("add a lesson before publishing", code="course_empty")
        changes: dict[str, Any] = {"status": "published" if published else "draft"}
        if published and not course.get("published_at"):
            changes["published_at"] = app.clock.now()
        return changes, False
    return edit


# -- views -------------------------------------------------------------------------------


def course_view(course: dict[str, Any]) -> dict[str, Any]:
    """What anyone who may see the course gets: the syllabus, never a lesson body."""
    return {
        "id": course["_id"], "author_id": course["author_id"], "title": course["title"],
        "description": course["description"], "description_html": course["description_html"],
        "price": course["price"], "cover": course["cover"], "status": course["status"],
        "lessons": [{"id": lesson["id"], "title": lesson["title"],
                     "release": lesson["release"]} for lesson in course["lessons"]],
        "created_at": course["created_at"], "published_at": course.get("published_at"),
    }


def author_lesson_view(lesson: dict[str, Any], position: int) -> dict[str, Any]:
    return {"id": lesson["id"], "position": position, "title": lesson["title"],
            "body": lesson["body"], "body_html": lesson["body_html"],
            "media_url": lesson.get("media_url"), "release": lesson["release"]}
