"""Voice answers (docs/live_qa.md "Voice answers"): the host records or uploads audio
(core media, purpose ``answer``) and answers with its id; members of the room fetch a
short-lived signed URL of it, which the core checks against ``enter`` of ``room:<id>``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kpay.core.errors import NotFound
from plugins.live_qa import rooms
from plugins.live_qa.store import QUESTIONS

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from kpay.core.auth import User


async def attach(app: KPay, user: User, media_id: str) -> dict[str, Any]:
    """The answer's audio fields, once the core says ``media_id`` is an answer recording
    the host uploaded (400 ``invalid_media`` otherwise)."""
    media = await app.media.attach(media_id, owner_id=user.id, kinds=("audio",),
                                   purposes=("answer",))
    return {"audio_media_id": media["id"], "duration_seconds": media.get("duration_seconds")}


async def audio_url(app: KPay, room: dict[str, Any], user: User,
                    question_id: str) -> dict[str, Any]:
    """A signed URL of a question's voice answer for a member of the room (the host or
    a ticket holder); 404 ``no_voice_answer`` when it has none."""
    await rooms.require_member(app, room, user)
    question = await app.store[QUESTIONS].find_one(
        {"_id": question_id, "room_id": room["_id"]}, {"answer": 1})
    media_id = ((question or {}).get("answer") or {}).get("audio_media_id")
    if not media_id:
        raise NotFound("this question has no voice answer", code="no_voice_answer")
    resource = f"room:{room['_id']}"
    # Checked again when it is fetched: a member removed meanwhile is refused.
    url = app.media.signed_url(media_id, user_id=user.id, resource=resource, action="enter")
    return {"url": url,
            "duration_seconds": question["answer"].get("duration_seconds")}
