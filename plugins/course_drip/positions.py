"""Where a reader stopped in a lesson's audio or video, so the player resumes there, and
which lesson they touched last ("继续学习").

One small document per reader and lesson, ``_id = "<course_id>/<lesson_id>:<user_id>"``:
the page saves it every few seconds while playing (``PUT .../progress``, rate limited
as every write), so it is an upsert of one document, never a growing log. Only a
reader the lesson is open to may save (the route checks ``lesson:<course>/<lesson>``),
so a user has at most one document per lesson they can read.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kpay.core.store import IndexSpec
from plugins.course_drip.enrollments import ENROLLMENTS, enrollment_id

if TYPE_CHECKING:
    from kpay.core.app import KPay

POSITIONS = "course_lesson_positions"
INDEXES = [IndexSpec.of(POSITIONS, "course_id", "lesson_id")]
#: Longer than any lesson recording we expect (12 hours); anything above is a bug.
MAX_SECONDS = 12 * 3600.0


class PositionIn(BaseModel):
    """``PUT /courses/{id}/lessons/{lesson_id}/progress``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    position_seconds: float = Field(strict=True, ge=0, le=MAX_SECONDS)
    duration_seconds: float | None = Field(None, strict=True, gt=0, le=MAX_SECONDS)

    @model_validator(mode="after")
    def within_duration(self) -> PositionIn:
        if self.duration_seconds is not None and self.position_seconds > self.duration_seconds:
            raise ValueError("position_seconds is past duration_seconds")
        return self


def position_id(course_id: str, lesson_id: str, user_id: str) -> str:
    return f"{course_id}/{lesson_id}:{user_id}"


async def save_position(app: KPay, course_id: str, lesson_id: str, user_id: str,
                        data: PositionIn) -> dict[str, Any]:
    now = app.clock.now()
    doc = {"course_id": course_id, "lesson_id": lesson_id, "user_id": user_id,
           "position_seconds": round(data.position_seconds, 1),
           "duration_seconds": data.duration_seconds, "updated_at": now}
    await app.store[POSITIONS].update_one({"_id": position_id(course_id, lesson_id, user_id)},
                                          {"$set": doc}, upsert=True)
    await touch_lesson(app, course_id, lesson_id, user_id, now)
    return position_view(doc)


async def read_position(app: KPay, course_id: str, lesson_id: str, user_id: str,
                        ) -> dict[str, Any] | None:
    doc = await app.store[POSITIONS].find_one(
        {"_id": position_id(course_id, lesson_id, user_id)})
    return position_view(doc) if doc else None


def position_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"position_seconds": doc["position_seconds"],
            "duration_seconds": doc.get("duration_seconds"), "updated_at": doc["updated_at"]}


async def touch_lesson(app: KPay, course_id: str, lesson_id: str, user_id: str,
                       now: datetime | None = None) -> None:
    """Remember the lesson a student opened last. Not a schedule change: ``rev`` (the
    unlock announcer's guard) is left alone."""
    await app.store[ENROLLMENTS].update_one(
        {"_id": enrollment_id(course_id, user_id), "status": "active"},
        {"$set": {"last_lesson_id": lesson_id, "last_lesson_at": now or app.clock.now()}})


async def forget_lesson(app: KPay, course_id: str, lesson_id: str) -> None:
    """A deleted lesson's saved positions go with it."""
    await app.store[POSITIONS].delete_many({"course_id": course_id, "lesson_id": lesson_id})
