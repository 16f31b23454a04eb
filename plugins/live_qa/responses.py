"""What live_qa's routes answer (docs/api.md, "Live Q&A"): response models for the
OpenAPI document. Money is integer fen; times ISO 8601 with an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class LiveRoom(BaseModel):
    id: str
    host_id: str
    title: str
    description: str
    starts_at: datetime
    ticket_price: int
    question_min_price: int
    free_questions: bool
    chat: bool
    capacity: int
    sold: int
    state: Literal["scheduled", "live", "ended"]
    answered: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    #: One of ``[storefront] categories``, None when the host chose none.
    category: str | None = None
    #: In lists (``GET /rooms``, ``GET /me/rooms``): the host's nickname and avatar.
    host_name: str | None = None
    host_avatar_url: str | None = None


class LiveRoomResult(BaseModel):
    room: LiveRoom


class LiveRoomList(BaseModel):
    rooms: list[LiveRoom]


class LiveRoomAccess(BaseModel):
    """The caller's standing in the room."""

    host: bool
    #: The caller's ticket status (``active``, ``pending``, ...), None without one.
    ticket: str | None
    muted: bool


class LiveRoomView(BaseModel):
    room: LiveRoom
    me: LiveRoomAccess


class LiveRoomEnded(BaseModel):
    room: LiveRoom
    #: How many unanswered paid questions were refunded to the askers' wallets.
    refunded: int


class LiveAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str | None
    audio_url: str | None
    #: A voice answer's recording (core media) and its length; its URL is
    #: GET /rooms/{id}/questions/{qid}/audio.
    audio_media_id: str | None = None
    duration_seconds: float | None = None
    at: datetime


class LiveAnswerAudio(BaseModel):
    url: str
    duration_seconds: float | None


class LiveQuestion(BaseModel):
    id: str
    room_id: str
    asker_id: str
    text: str
    bounty: int
    paid: bool
    status: Literal["pending", "open", "answered", "refunding", "refunded", "closed"]
    upvotes: int
    created_at: datetime
    answer: LiveAnswer | None


class LiveQuestionResult(BaseModel):
    question: LiveQuestion


class LiveQuestionList(BaseModel):
    questions: list[LiveQuestion]


class LiveEvent(BaseModel):
    """One event of the room's history; ``data`` depends on ``type`` (docs/live_qa.md)."""

    seq: int
    type: str
    data: dict[str, Any]
    at: datetime


class LiveEventPage(BaseModel):
    messages: list[LiveEvent]
    more: bool
    #: Pass as ``since`` for the next page.
    next_since: int


class LiveMessageRemoved(BaseModel):
    removed: int


class LiveMemberMuted(BaseModel):
    user_id: str
    muted: bool


class LiveMemberRemoved(BaseModel):
    user_id: str
    removed: Literal[True]
    #: How many socket subscriptions to the room were ended.
    subscriptions_ended: int
