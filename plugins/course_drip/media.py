"""Lesson media and covers through the core media service (``app.media``).

An author uploads a file (static/js/media.js), then names its id on a course or lesson;
:func:`lesson_media` and :func:`cover_fields` check it with ``app.media.attach`` (the
file exists, the course's author uploaded it, it is of the right kind and purpose and
not taken down) before anything is saved. Lesson audio, video and slides are paid
content: a reader gets them only as short-lived URLs signed for them and the resource
``lesson:<course_id>/<lesson_id>`` (:func:`signed_media`), never a public address.
Covers are public images. See docs/course_drip.md, "Lesson media".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kpay.core.errors import ApiError, BadRequest
from plugins.course_drip.content import sign_slides, slide_ids

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.course_drip")

#: Slides one lesson body may show: each is checked (and later signed) on its own.
MAX_SLIDES = 50
MEDIA_FIELDS = ("audio_media_id", "video_media_id")
KINDS = {"audio_media_id": ("audio",), "video_media_id": ("video",)}


async def lesson_media(app: KPay, data: Any, author_id: str,
                       current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The media fields to store on a lesson for the input ``data`` (a LessonIn or a
    LessonPatch): each named file checked as the author's, of the right kind; slides in
    a new body checked as the author's images. ``current`` is the stored lesson (patch).

    Returns only fields that change: ``audio_media_id``, ``video_media_id``,
    ``duration_seconds`` (of the audio or else the video, for the lesson list),
    ``slides``.
    """
    given = data.model_fields_set
    out: dict[str, Any] = {}
    durations: dict[str, float | None] = {}
    for name in MEDIA_FIELDS:
        if name not in given:
            continue
        media_id = getattr(data, name)
        out[name] = media_id
        if media_id is not None:
            found = await app.media.attach(media_id, owner_id=author_id, kinds=KINDS[name],
                                           purposes=("lesson",))
            durations[name] = found.get("duration_seconds")
    if out:
        # The list shows the duration of the audio, else of the video.
        merged = {name: out[name] if name in out else (current or {}).get(name)
                  for name in MEDIA_FIELDS}
        out["duration_seconds"] = None
        for name in MEDIA_FIELDS:
            media_id = merged[name]
            if media_id:
                if name not in durations:  # kept from before: ask the media service
                    described = await app.media.describe([media_id])
                    durations[name] = (described.get(media_id) or {}).get("duration_seconds")
                out["duration_seconds"] = durations[name]
                break
    body = getattr(data, "body", None)
    if body is not None:
        slides = slide_ids(body)
        if len(slides) > MAX_SLIDES:
            raise BadRequest(f"body: at most {MAX_SLIDES} images", code="invalid_field",
                             field="body")
        for media_id in slides:
            await app.media.attach(media_id, owner_id=author_id, kinds=("image",),
                                   purposes=("slide",))
        out["slides"] = slides
    return out


async def cover_fields(app: KPay, cover_media_id: str | None, author_id: str) -> dict[str, Any]:
    """``{"cover", "cover_media_id"}`` for an uploaded cover (a public image)."""
    if cover_media_id is None:
        return {"cover_media_id": None}
    await app.media.attach(cover_media_id, owner_id=author_id, kinds=("image",),
                           purposes=("cover",))
    return {"cover_media_id": cover_media_id,
            "cover": app.media.public_url(cover_media_id, "card")}


def signed_or_none(app: KPay, media_id: str | None, user_id: str, resource: str) -> str | None:
    """A signed URL, or None when there is no file or it cannot be served any more
    (taken down): the lesson still opens, without that medium."""
    if not media_id:
        return None
    try:
        return app.media.signed_url(media_id, user_id=user_id, resource=resource)
    except ApiError as e:
        log.info("lesson medium %s not served: %s", media_id, e.code)
        return None


def signed_media(app: KPay, course_id: str, lesson: dict[str, Any], user_id: str,
                 ) -> dict[str, Any]:
    """The reader's view of a lesson's media: ``audio_url``, ``video_url`` and
    ``body_html`` with its slides signed for ``user_id``."""
    resource = f"lesson:{course_id}/{lesson['id']}"
    # Only the slides checked as the author's when saved: a placeholder typed as raw HTML
    # (``<img src="/media-slide/<someone else's id>">``) is never signed.
    checked = set(lesson.get("slides") or ())
    return {
        "audio_url": signed_or_none(app, lesson.get("audio_media_id"), user_id, resource),
        "video_url": signed_or_none(app, lesson.get("video_media_id"), user_id, resource),
        "body_html": sign_slides(
            lesson["body_html"],
            lambda media_id: signed_or_none(app, media_id, user_id, resource)
            if media_id in checked else None),
    }


def media_summary(lesson: dict[str, Any]) -> dict[str, Any] | None:
    """What the syllabus says of a lesson's medium: ``{"kind", "duration_seconds"}``."""
    for name, kind in (("audio_media_id", "audio"), ("video_media_id", "video")):
        if lesson.get(name):
            return {"kind": kind, "duration_seconds": lesson.get("duration_seconds")}
    return None
