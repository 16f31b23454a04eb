"""What the core's routes answer (docs/api.md, "Core", "Dev mode", "Accounts"):
pydantic models for the OpenAPI document's response schemas (``@api(response=...)``).

They describe the JSON the handlers write; the handlers build plain dicts. Times are
ISO 8601 strings with an offset; money is integer fen. Documents whose details vary
(plugin descriptions, audit details) allow extra fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["student", "consultant", "admin"]


class Open(BaseModel):
    """A document that may carry fields besides those named."""

    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    ok: bool
    database: Literal["up", "down"]
    sockets: int
    # Which node (and worker, ``<node_id>/w<i>``) answered.
    node: str


class Me(BaseModel):
    id: str
    role: Role
    name: str
    #: The avatar's public image URL (variant thumb), or null: pages then draw the
    #: first character of the name.
    avatar_url: str | None = None


class PluginInfo(Open):
    name: str
    version: str
    hooks: list[str]


class PluginList(BaseModel):
    plugins: list[PluginInfo]


class LoggedInUser(BaseModel):
    id: str
    role: Role
    name: str


class DevLoginResult(BaseModel):
    token: str
    user: LoggedInUser


class ClockState(BaseModel):
    now: datetime
    #: Seconds the dev clock runs ahead of the wall clock.
    offset: float


class Ok(BaseModel):
    ok: Literal[True]


class PublicUser(BaseModel):
    id: str
    role: Role | None
    name: str | None
    blocked: bool


class UserResult(BaseModel):
    user: PublicUser


class AuditRecord(BaseModel):
    id: str
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    source: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next_before: datetime | None


class AttentionEntry(BaseModel):
    id: str
    source: str
    subject: str
    status: Literal["open", "resolved"]
    count: int
    error: str
    details: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


class AttentionPage(BaseModel):
    entries: list[AttentionEntry]
    next_before: datetime | None


class AttentionResult(BaseModel):
    entry: AttentionEntry


class OpenApiDocument(Open):
    """This document: OpenAPI 3.1."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


# -- people (docs/api.md "Profiles" and "Follow") ------------------------------------------


class Person(BaseModel):
    """How a person is shown: nickname and avatar, never more."""

    id: str
    name: str
    role: Role
    avatar_url: str | None


class PeopleResult(BaseModel):
    profiles: dict[str, Person]


class PublicProfile(Person):
    followers: int
    following: bool
    #: What plugins show of the person, by section name (``consult``, ``rooms``,
    #: ``courses`` from the built-ins); see docs/plugins.md "public_profile_sections".
    sections: dict[str, Any]


class PublicProfileResult(BaseModel):
    profile: PublicProfile


class FollowState(BaseModel):
    user_id: str
    following: bool
    followers: int


class Followed(Person):
    followed_at: datetime


class FollowingPage(BaseModel):
    following: list[Followed]
    next_before: datetime | None
