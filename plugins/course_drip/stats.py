"""Per-course numbers for the author: enrollments and completion per lesson."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.course_drip.enrollments import ENROLLMENTS

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def course_stats(app: KPay, course: dict[str, Any]) -> dict[str, Any]:
    """One pass over the course's enrollments on the database side (no documents are
    shipped to the server): counts by source and completions per lesson id."""
    enrollments = app.store[ENROLLMENTS]
    active = {"course_id": course["_id"], "status": "active"}
    by_source: dict[str, int] = {}
    async for row in await enrollments.aggregate([
            {"$match": active}, {"$group": {"_id": "$source", "n": {"$sum": 1}}}]):
        by_source[str(row["_id"])] = row["n"]
    completions: dict[str, int] = {}
    async for row in await enrollments.aggregate([
            {"$match": active},
            {"$project": {"done": {"$objectToArray": {"$ifNull": ["$completed", {}]}}}},
            {"$unwind": "$done"},
            {"$group": {"_id": "$done.k", "n": {"$sum": 1}}}]):
        completions[row["_id"]] = row["n"]
    total = sum(by_source.values())
    lessons = [{"id": lesson["id"], "title": lesson["title"],
                "completed": completions.get(lesson["id"], 0),
                "completion_percent": completions.get(lesson["id"], 0) * 100 // total
                if total else 0}
               for lesson in course["lessons"]]
    return {"course_id": course["_id"], "enrollments": total, "by_source": by_source,
            "lessons": lessons}
