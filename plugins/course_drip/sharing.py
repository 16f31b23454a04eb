"""A course's share card (hook ``share_card``; docs/plugins.md): the poster of
``course:<id>`` shows its title, description, price, author and cover."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.course_drip.courses import find_course

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def share_card(app: KPay, course_id: str, user_id: str) -> dict[str, Any] | None:
    """Published courses for everyone; a draft only for its author (who may want to
    see the poster before publishing), else None (a 404, as for no course)."""
    course = await find_course(app, course_id, bodies=False)
    if course is None:
        return None
    if course["status"] != "published" and course["author_id"] != user_id:
        return None
    card = {"title": course["title"], "description": course.get("description", ""),
            "price": course["price"], "author_id": course["author_id"],
            "path": f"/static/course.html?id={course['_id']}"}
    if course.get("cover_media_id"):
        card["cover_media_id"] = course["cover_media_id"]
    elif course.get("cover"):
        card["cover_url"] = course["cover"]
    return card
