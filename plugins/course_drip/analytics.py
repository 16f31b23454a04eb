"""The course funnel on a seller's dashboard (hook ``analytics_sections``,
docs/plugins.md; docs/analytics.md): of the students who enrolled in the range, how many
finished lesson 1, 2, ... and the whole course. Three queries whatever the number of
enrollments: the author's courses, then two aggregations grouped on the server."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugins.course_drip.courses import COURSES
from plugins.course_drip.enrollments import ENROLLMENTS

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Courses a funnel reads at most (an author's, or the platform's newest).
MAX_COURSES = 500
#: Lessons the funnel shows one by one (later ones are in 全部学完).
FUNNEL_LESSONS = 10


async def course_funnel(app: KPay, owner_id: str | None, start: datetime,
                        end: datetime) -> list[dict[str, Any]] | None:
    query = {"author_id": owner_id} if owner_id else {}
    courses = {c["_id"]: [lesson["id"] for lesson in c.get("lessons") or []]
               async for c in app.store[COURSES].find(query, {"lessons.id": 1})
               .sort("created_at", -1).limit(MAX_COURSES)}
    if not courses:
        return None
    match = {"$match": {"course_id": {"$in": list(courses)}, "status": "active",
                        "enrolled_at": {"$gte": start, "$lt": end}}}
    done = {"$project": {"course_id": 1,
                         "done": {"$objectToArray": {"$ifNull": ["$completed", {}]}}}}
    enrolled = completed_all = 0
    async for row in await app.store[ENROLLMENTS].aggregate([
            match, done, {"$group": {"_id": {"course": "$course_id", "n": {"$size": "$done"}},
                                     "count": {"$sum": 1}}}]):
        enrolled += row["count"]
        lessons = courses.get(row["_id"]["course"]) or []
        if lessons and row["_id"]["n"] >= len(lessons):
            completed_all += row["count"]
    by_number = [0] * FUNNEL_LESSONS
    async for row in await app.store[ENROLLMENTS].aggregate([
            match, done, {"$unwind": "$done"},
            {"$group": {"_id": {"course": "$course_id", "lesson": "$done.k"},
                        "count": {"$sum": 1}}}]):
        lessons = courses.get(row["_id"]["course"]) or []
        if row["_id"]["lesson"] in lessons:
            number = lessons.index(row["_id"]["lesson"])
            if number < FUNNEL_LESSONS:
                by_number[number] += row["count"]
    longest = min(max(len(lessons) for lessons in courses.values()), FUNNEL_LESSONS)
    items = [{"label": "报名", "value": enrolled}]
    items += [{"label": f"学完第 {n + 1} 课", "value": by_number[n]} for n in range(longest)]
    items.append({"label": "全部学完", "value": completed_all})
    return [{"key": "course_funnel", "title": "课程漏斗（本期报名的学员）", "unit": "count",
             "items": items}]
