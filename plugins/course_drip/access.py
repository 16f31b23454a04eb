"""Who may read a course and its lessons: the handlers' check, and the resources
``course:<id>`` and ``lesson:<course_id>/<lesson_id>`` other plugins ask about through
``app.access`` (docs/course_drip.md, "Access for other plugins")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kpay.core.access import ResourceRule
from kpay.core.auth import User
from plugins.course_drip.courses import find_course, is_author, visible_lessons
from plugins.course_drip.enrollments import active_enrollment, lesson_state

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def reader(app: KPay, course: dict[str, Any], user: User
                 ) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``user`` may read the course's lessons (its author, an admin, or a student
    with an active enrollment), and that enrollment (None for the author)."""
    if is_author(course, user):
        return True, None
    enrollment = await active_enrollment(app, course["_id"], user.id)
    return enrollment is not None, enrollment


async def course_owner(app: KPay, course_id: str) -> str | None:
    course = await find_course(app, course_id, bodies=False)
    return course["author_id"] if course else None


async def course_allows(app: KPay, user: User, action: str, course_id: str) -> bool:
    course = await find_course(app, course_id, bodies=False)
    if course is None:
        return False
    if action == "edit":
        return is_author(course, user)
    return (await reader(app, course, user))[0]  # "view"


async def lesson_course(app: KPay, ident: str) -> tuple[dict[str, Any], str] | None:
    """The course of ``<course_id>/<lesson_id>`` (without bodies) if it has that lesson."""
    course_id, _, lesson_id = ident.partition("/")
    course = await find_course(app, course_id, bodies=False)
    if course is None or all(lesson["id"] != lesson_id for lesson in course["lessons"]):
        return None
    return course, lesson_id


async def lesson_owner(app: KPay, ident: str) -> str | None:
    found = await lesson_course(app, ident)
    return found[0]["author_id"] if found else None


async def lesson_allows(app: KPay, user: User, action: str, ident: str) -> bool:
    """``view``: the lesson is open to ``user`` now (the author always; a student once
    it unlocked for them, and while it is published), as
    ``GET /courses/{id}/lessons/{lesson_id}`` judges it."""
    found = await lesson_course(app, ident)
    if found is None:
        return False
    course, lesson_id = found
    may, enrollment = await reader(app, course, user)
    if not may:
        return False
    if enrollment is None:
        return True
    if all(lesson["id"] != lesson_id for lesson in visible_lessons(course["lessons"])):
        return False  # unpublished: the author's alone
    return lesson_state(app, course, enrollment, lesson_id).unlocked


RESOURCES = [ResourceRule("course", course_owner, course_allows, actions=("view", "edit")),
             ResourceRule("lesson", lesson_owner, lesson_allows, actions=("view",))]
