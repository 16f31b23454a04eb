"""The ``courses`` section of an author's public profile (hook
``public_profile_sections``, docs/plugins.md; the page: static/profile.html)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.course_drip.courses import COURSES

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Courses an author's public profile lists at most.
PROFILE_COURSES = 20


async def courses_section(app: KPay, author_id: str) -> dict[str, Any] | None:
    """The ``courses`` section of a public profile (hook ``public_profile_sections``):
    the author's published courses, newest first (drafts are nobody else's business)."""
    cursor = app.store[COURSES].find(
        {"author_id": author_id, "status": "published"},
        {"title": 1, "price": 1, "cover": 1, "published_at": 1, "lessons.id": 1},
    ).sort("created_at", -1).limit(PROFILE_COURSES)
    found = [{"id": course["_id"], "title": course["title"], "price": course["price"],
              "cover": course.get("cover"), "lesson_count": len(course.get("lessons") or []),
              "published_at": course.get("published_at")} async for course in cursor]
    return {"courses": found} if found else None
