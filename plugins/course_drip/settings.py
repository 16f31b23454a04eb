"""The ``[course_drip]`` settings section, and how the plugin reads it."""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from kpay.core.config import Section

if TYPE_CHECKING:
    from kpay.core.app import KPay

SECTION = "course_drip"


class CourseDripSettings(Section):
    """The ``[course_drip]`` config section."""

    #: Zone in which "n days after enrollment at HH:MM" is counted (calendar days).
    timezone: str = "Asia/Shanghai"
    sweep_interval_seconds: float = Field(60.0, gt=0)
    #: Enrollments read per query by the unlock sweep and the schedule recompute.
    sweep_batch_size: int = Field(500, ge=1, le=10_000)
    recompute_batch_size: int = Field(500, ge=1, le=10_000)
    max_lessons: int = Field(200, ge=1, le=2000)
    max_body_chars: int = Field(100_000, ge=1)
    #: Unpublished (draft) courses an author may have at once; creating one more is 409
    #: too_many_open. 0: no cap.
    max_draft_courses_per_author: int = Field(50, ge=0)

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value


def settings_of(app: KPay) -> CourseDripSettings:
    return app.settings.section(SECTION)


def zone(app: KPay) -> ZoneInfo:
    return ZoneInfo(settings_of(app).timezone)
