"""What operators see of a user's courses (hooks ``admin_user_sections``,
``export_user_data``; docs/plugins.md, docs/operations.md "Personal data"). Course
content is the author's published work, not personal data: anonymising its author
leaves it (the author's name comes from the users service, so it reads 已注销用户)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.course_drip.courses import COURSES
from plugins.course_drip.enrollments import ENROLLMENTS
from plugins.course_drip.positions import POSITIONS

if TYPE_CHECKING:
    from kpay.core.app import KPay

SECTION_SIZE = 20
MAX_EXPORT = 5000
STATUS_NAMES = {"active": "学习中", "pending": "待开通", "revoked": "已退课"}


async def admin_section(app: KPay, user_id: str) -> dict[str, Any] | None:
    """The user's recent enrollments and the courses they wrote, in Chinese."""
    enrolled = await app.store[ENROLLMENTS].find({"user_id": user_id}).sort(
        "enrolled_at", -1).limit(SECTION_SIZE).to_list()
    written = await app.store[COURSES].find(
        {"author_id": user_id}, {"title": 1, "status": 1, "created_at": 1}).sort(
        "created_at", -1).limit(SECTION_SIZE).to_list()
    if not enrolled and not written:
        return None
    titles = {c["_id"]: c["title"] for c in await app.store[COURSES].find(
        {"_id": {"$in": [e["course_id"] for e in enrolled]}}, {"title": 1}).to_list()}
    items = [{"title": f"报名《{titles.get(e['course_id'], '已删除的课程')}》",
              "subtitle": STATUS_NAMES.get(e.get("status"), e.get("status") or ""),
              "at": e.get("enrolled_at")} for e in enrolled]
    items += [{"title": f"创作《{c['title']}》",
               "subtitle": "已发布" if c.get("status") == "published" else "草稿",
               "at": c.get("created_at")} for c in written]
    return {"title": "课程", "items": items[:SECTION_SIZE]}


async def export_data(app: KPay, user_id: str) -> dict[str, Any] | None:
    """The user's enrollments, playback positions and the ids of courses they wrote."""
    def shown(doc: dict[str, Any]) -> dict[str, Any]:
        return {("id" if key == "_id" else key): value for key, value in doc.items()}

    enrolled = await app.store[ENROLLMENTS].find({"user_id": user_id}).limit(
        MAX_EXPORT).to_list()
    # Positions have no index on user_id: a rare operator's export may scan.
    positions = await app.store[POSITIONS].find({"user_id": user_id}).limit(
        MAX_EXPORT).to_list()
    written = await app.store[COURSES].find({"author_id": user_id}, {"title": 1}).limit(
        MAX_EXPORT).to_list()
    if not (enrolled or positions or written):
        return None
    return {"enrollments": [shown(e) for e in enrolled],
            "positions": [shown(p) for p in positions],
            "courses_written": [shown(c) for c in written]}
