"""What the home page needs of courses (docs/course_drip.md "Storefront"): published
courses in ``app.search`` (kept in step by :func:`plugins.course_drip.courses.edit_course`
and ``create_course``), and author names for 已购."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kpay.core.app import KPay

KIND = "course"


def search_item(course: dict[str, Any], author_name: str) -> dict[str, Any]:
    """``app.search.put`` arguments for a course: found while it is published."""
    return {"item_id": course["_id"], "title": course["title"],
            "author_id": course["author_id"], "author_name": author_name,
            "category": course.get("category"), "cover_url": course.get("cover"),
            "visible": course["status"] == "published",
            "extra": {"price": course["price"], "lesson_count": len(course["lessons"])}}


async def index_course(app: KPay, course: dict[str, Any]) -> None:
    profile = await app.users.profile(course["author_id"]) or {}
    await app.search.put(KIND, **search_item(course, profile.get("name") or course["author_id"]))


async def backfill(app: KPay, published: AsyncIterable[dict[str, Any]]) -> None:
    """The ``published`` courses made before search existed, once (``on_startup``)."""
    async def items() -> AsyncIterator[dict[str, Any]]:
        async for course in published:
            profile = await app.users.profile(course["author_id"]) or {}
            yield search_item(course, profile.get("name") or course["author_id"])
    await app.search.backfill(KIND, items())


async def with_authors(app: KPay, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each course view with ``author_name`` and ``author_avatar_url`` (None without)."""
    profiles = await app.users.profiles(course["author_id"] for course in listed)
    for course in listed:
        profile = profiles.get(course["author_id"]) or {}
        course["author_name"] = profile.get("name") or course["author_id"]
        course["author_avatar_url"] = profile.get("avatar_url")
    return listed
