"""What course_drip's routes answer (docs/api.md, "Courses"): response models for the
OpenAPI document. Prices are integer fen; times ISO 8601 with the configured zone's
offset."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, RootModel


class AfterDays(BaseModel):
    """Open ``after_days`` calendar days after enrollment, at ``at`` (HH:MM) if given."""

    model_config = ConfigDict(extra="forbid")

    after_days: int
    at: str | None = None


class AtDate(BaseModel):
    """Open at a fixed moment."""

    model_config = ConfigDict(extra="forbid")

    at_date: datetime


class AfterPrevious(BaseModel):
    """Open once the previous lesson is completed."""

    model_config = ConfigDict(extra="forbid")

    after_previous: Literal[True]


Release = AfterDays | AtDate | AfterPrevious


class LessonMedia(BaseModel):
    """A lesson's uploaded medium, for the syllabus ("音频 12:30")."""

    kind: Literal["audio", "video"]
    duration_seconds: float | None


class SyllabusLesson(BaseModel):
    id: str
    title: str
    release: Release
    media: LessonMedia | None = None
    #: False: hidden from students (listed to the author only).
    published: bool = True


class Course(BaseModel):
    """The syllabus: never a lesson body."""

    id: str
    author_id: str
    title: str
    description: str
    description_html: str
    price: int
    cover: str | None
    #: The uploaded cover image, when ``cover`` is its public URL.
    cover_media_id: str | None = None
    status: Literal["draft", "published"]
    lessons: list[SyllabusLesson]
    created_at: datetime
    published_at: datetime | None
    #: One of ``[storefront] categories``, None when the author chose none.
    category: str | None = None
    #: In ``GET /me/courses``: the author's nickname and avatar.
    author_name: str | None = None
    author_avatar_url: str | None = None


class CourseResult(BaseModel):
    course: Course


class CourseView(BaseModel):
    course: Course
    #: The caller holds an active enrollment.
    enrolled: bool
    #: The lesson the caller opened last ("继续学习"); None before the first.
    last_lesson_id: str | None = None


class CourseList(BaseModel):
    courses: list[Course]


class LessonListItem(BaseModel):
    id: str
    title: str
    unlocked: bool
    unlocks_at: datetime | None
    #: Students only (the author's list has no progress).
    completed: bool | None = None


class LessonList(RootModel[list[LessonListItem]]):
    """The caller's lessons, a bare list."""


class SavedPosition(BaseModel):
    """Where the caller stopped in the lesson's audio or video."""

    position_seconds: float
    duration_seconds: float | None
    updated_at: datetime


class PositionResult(BaseModel):
    progress: SavedPosition


class PreviewResult(BaseModel):
    #: Rendered and cleaned as a lesson body is; slides signed for the author.
    html: str


class AuthorLesson(BaseModel):
    """A lesson as its author sees it: the Markdown and the release rule."""

    id: str
    position: int
    title: str
    body: str
    body_html: str
    media_url: str | None
    audio_media_id: str | None = None
    video_media_id: str | None = None
    duration_seconds: float | None = None
    published: bool = True
    #: Short-lived signed URLs (on ``GET`` of the lesson only).
    audio_url: str | None = None
    video_url: str | None = None
    progress: SavedPosition | None = None
    release: Release


class AuthorLessonResult(BaseModel):
    lesson: AuthorLesson


class StudentLesson(BaseModel):
    """An unlocked lesson as an enrolled student sees it."""

    id: str
    position: int
    title: str
    body_html: str
    media_url: str | None
    #: Short-lived URLs signed for the caller; fetch the lesson again when they expire.
    audio_url: str | None = None
    video_url: str | None = None
    duration_seconds: float | None = None
    progress: SavedPosition | None = None
    unlocked: Literal[True]
    unlocks_at: datetime | None
    completed: bool
    completed_at: datetime | None


class LessonResult(BaseModel):
    lesson: AuthorLesson | StudentLesson


class ProgressLesson(LessonListItem):
    completed_at: datetime | None


class ProgressSummary(BaseModel):
    course_id: str
    user_id: str
    #: How the student got the course: ``order`` or ``gift``.
    source: str | None
    enrolled_at: datetime
    unlocked_all: bool
    completed: int
    total: int
    percent: int
    next_unlock_at: datetime | None


class Progress(ProgressSummary):
    lessons: list[ProgressLesson]


class ProgressResult(BaseModel):
    progress: Progress


class EnrollmentList(BaseModel):
    enrollments: list[ProgressSummary]


class LessonStats(BaseModel):
    id: str
    title: str
    completed: int
    completion_percent: int


class CourseStats(BaseModel):
    course_id: str
    enrollments: int
    by_source: dict[str, int]
    lessons: list[LessonStats]


class CourseStatsResult(BaseModel):
    stats: CourseStats


class EnrolledCourse(BaseModel):
    course: Course
    progress: ProgressSummary


class EnrolledCourseList(BaseModel):
    courses: list[EnrolledCourse]
