"""Routes for lesson players and the console's editor (docs/course_drip.md): saving where
a reader stopped, reordering lessons, and previewing a body as students will see it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.errors import ApiError, NotFound
from kpay.core.web import Route, api
from plugins.course_drip import courses as course_store
from plugins.course_drip import responses as r
from plugins.course_drip.content import render_markdown, sign_slides, slide_ids
from plugins.course_drip.handlers import AUTHOR_ROLES, CourseHandlerBase
from plugins.course_drip.media import MAX_SLIDES
from plugins.course_drip.positions import PositionIn, save_position

if TYPE_CHECKING:
    from kpay.core.app import KPay


class PositionHandler(CourseHandlerBase):
    @api("Save where the caller stopped in a lesson's audio or video (saved every few "
         "seconds while playing)", body=PositionIn, response=r.PositionResult)
    async def put(self, course_id: str, lesson_id: str) -> None:
        user = self.require_user()
        data = self.body(PositionIn)
        # The same check as reading it: the lesson is open to this user now.
        if not await self.kpay.access.allowed(user.id, "view", f"lesson:{course_id}/{lesson_id}"):
            raise NotFound(f"no open lesson {lesson_id} in course {course_id}",
                           code="lesson_not_found")
        saved = await save_position(self.kpay, course_id, lesson_id, user.id, data)
        self.write_json({"progress": saved})


class LessonOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Every lesson id of the course, once, in the new order.
    lesson_ids: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1,
                                                                   max_length=2000)


class LessonOrderHandler(CourseHandlerBase):
    @api("Reorder a course's lessons (author): every lesson id once, in the new order",
         body=LessonOrder, roles=AUTHOR_ROLES, response=r.CourseResult)
    async def put(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        edit = course_store.reorder_lessons(self.body(LessonOrder).lesson_ids)
        course = await course_store.edit_course(self.kpay, course_id, user, edit)
        self.after_edit(course)
        self.write_json({"course": course_store.course_view(course, author=True)})


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(max_length=200_000)


class PreviewHandler(CourseHandlerBase):
    @api("A lesson body (Markdown) rendered and cleaned as students will see it (author)",
         body=PreviewIn, roles=AUTHOR_ROLES, response=r.PreviewResult)
    async def post(self, course_id: str) -> None:
        user = self.require_user(*AUTHOR_ROLES)
        course = await course_store.authored_course(self.kpay, course_id, user)
        body = self.body(PreviewIn).body
        course_store.check_body(self.kpay, body, "body")
        # Only the author's own slides are signed: an id of someone else's file shows
        # nothing, so a preview cannot be used to fetch another author's paid image.
        own: dict[str, str] = {}
        for media_id in slide_ids(body)[:MAX_SLIDES]:
            url = await own_slide_url(self.kpay, media_id, course["author_id"], user.id,
                                      f"course:{course_id}")
            if url:
                own[media_id] = url
        self.write_json({"html": sign_slides(render_markdown(body), own.get)})


async def own_slide_url(app: KPay, media_id: str, author_id: str, viewer_id: str,
                        resource: str) -> str | None:
    try:
        await app.media.attach(media_id, owner_id=author_id, kinds=("image",),
                               purposes=("slide",))
        return app.media.signed_url(media_id, user_id=viewer_id, resource=resource)
    except ApiError:
        return None


def lesson_routes(base: str, tags: tuple[str, ...]) -> list[Route]:
    return [
        Route(base + "/{course_id}/lesson-order", LessonOrderHandler, tags=tags),
        Route(base + "/{course_id}/preview", PreviewHandler, tags=tags),
        Route(base + "/{course_id}/lessons/{lesson_id}/progress", PositionHandler, tags=tags),
    ]
