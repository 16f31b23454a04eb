"""course_drip's part of the audience (docs/audience.md): the rule 购买过课程 and the
students its enrollments name (a gifted enrollment has no order)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.audience import PLATFORM
from kpay.core.audience.rules import AudienceRule
from kpay.core.audience.students import MAX_MEMBERS
from plugins.course_drip.courses import COURSES
from plugins.course_drip.enrollments import ENROLLMENTS

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Courses one owner's questions look at (the newest).
MAX_COURSES = 200


class BoughtCourse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: str = Field(min_length=1, max_length=64, title="课程")


def owned(owner: str) -> dict[str, Any]:
    return {} if owner == PLATFORM else {"author_id": owner}


async def course_ids(app: KPay, owner: str) -> list[str]:
    cursor = app.store[COURSES].find(owned(owner), {"_id": 1}).sort(
        "created_at", -1).limit(MAX_COURSES)
    return [doc["_id"] async for doc in cursor]


async def enrolled(app: KPay, ids: list[str]) -> set[str]:
    cursor = app.store[ENROLLMENTS].find(
        {"course_id": {"$in": ids}, "status": "active"}, {"user_id": 1}).limit(MAX_MEMBERS)
    return {doc["user_id"] async for doc in cursor}


async def bought_course(app: KPay, owner: str, params: BoughtCourse) -> set[str]:
    course = await app.store[COURSES].find_one({"_id": params.course_id, **owned(owner)},
                                               {"_id": 1})
    return await enrolled(app, [course["_id"]]) if course else set()


async def course_choices(app: KPay, owner: str) -> dict[str, list[dict[str, str]]]:
    cursor = app.store[COURSES].find(owned(owner), {"title": 1}).sort(
        "created_at", -1).limit(MAX_COURSES)
    return {"course_id": [{"value": doc["_id"], "label": doc["title"]} async for doc in cursor]}


RULES = [AudienceRule("bought_course", "购买过课程", BoughtCourse, bought_course,
                      course_choices)]


async def students(app: KPay, consultant_id: str) -> set[str]:
    return await enrolled(app, await course_ids(app, consultant_id))
