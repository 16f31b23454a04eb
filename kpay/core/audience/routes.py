"""Routes of tags, segments and messages to segments (docs/api.md "Audience")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.audience import PLATFORM, messages, segments, tags
from kpay.core.audience.rules import params_schema, rule_kinds
from kpay.core.audience.students import MAX_MEMBERS, buyers, students_of
from kpay.core.errors import Forbidden, NotFound
from kpay.core.money.routes import idempotency_key
from kpay.core.web import BaseHandler, Route, api

PAGE = 50

# -- what the routes answer (OpenAPI) ----------------------------------------------------


class Person(BaseModel):
    id: str
    name: str
    avatar_url: str | None = None
    tags: list[str]


class PeoplePage(BaseModel):
    count: int
    people: list[Person]
    next_cursor: str | None


class TagCount(BaseModel):
    tag: str
    count: int


class TagList(BaseModel):
    tags: list[TagCount]


class TagChange(BaseModel):
    changed: int


class Choice(BaseModel):
    value: str
    label: str


class RuleKind(BaseModel):
    name: str
    label: str
    params: dict[str, Any]
    choices: dict[str, list[Choice]]


class RuleList(BaseModel):
    rules: list[RuleKind]


class Segment(BaseModel):
    id: str
    name: str
    match: str
    conditions: list[dict[str, Any]]
    created_at: datetime


class SegmentWithCount(Segment):
    count: int


class SegmentList(BaseModel):
    segments: list[Segment]


class Deleted(BaseModel):
    deleted: bool


class Message(BaseModel):
    id: str
    segment_id: str
    title: str
    body: str
    link: str | None
    status: str
    total: int
    sent: int
    failed: int
    created_at: datetime
    replayed: bool = False


class DailyCap(BaseModel):
    per_day: int | None
    sent_today: int
    max_recipients: int | None


class MessageList(BaseModel):
    messages: list[Message]
    cap: DailyCap


class TagUsers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_ids: list[str] = Field(min_length=1, max_length=tags.MAX_USERS_PER_CALL)


# -- helpers -------------------------------------------------------------------------------


def owner_of(handler: BaseHandler) -> str:
    """Whose audience the caller works on: an operator's is the platform's."""
    user = handler.require_user("consultant")
    return PLATFORM if user.role == "admin" else user.id


async def check_taggable(handler: BaseHandler, owner: str, user_ids: list[str]) -> list[str]:
    """403 ``not_your_student`` unless every user is the consultant's student (an
    operator may tag any existing user: 404 for an id of no one)."""
    ids = list(dict.fromkeys(u[:64] for u in user_ids))
    app = handler.kpay
    if owner == PLATFORM:
        known = set()
        for start in range(0, len(ids), 500):
            known |= set(await app.users.profiles(ids[start:start + 500]))
        if missing := [u for u in ids if u not in known]:
            raise NotFound(f"no such user {missing[0]!r}", code="not_found")
        return ids
    students = await students_of(app, owner)
    if any(u not in students for u in ids):
        raise Forbidden("you can tag only your own students", code="not_your_student")
    return ids


async def people(handler: BaseHandler, owner: str, member_ids: list[str]) -> dict[str, Any]:
    """A page of ``member_ids`` (sorted) after ``cursor``, with nicknames, avatars, tags."""
    limit = handler.query_int("limit", 20, 1, PAGE)
    cursor = (handler.get_query_argument("cursor", "") or "")[:64]
    after = [u for u in member_ids if u > cursor] if cursor else member_ids
    page = after[:limit]
    profiles = await handler.kpay.users.profiles(page)
    tagged = await tags.tags_of(handler.kpay, owner, page)
    return {"count": len(member_ids),
            "people": [{"id": u, "name": (profiles.get(u) or {}).get("name") or u,
                        "avatar_url": (profiles.get(u) or {}).get("avatar_url"),
                        "tags": tagged.get(u, [])} for u in page],
            "next_cursor": page[-1] if len(after) > limit else None}


# -- handlers ------------------------------------------------------------------------------


class StudentsHandler(BaseHandler):
    @api("My students (an operator's: every buyer), by id, with my tags on them",
         roles=("consultant", "admin"), query=("cursor", "limit"), response=PeoplePage)
    async def get(self) -> None:
        owner = owner_of(self)
        ids = (sorted(await students_of(self.kpay, owner)) if owner != PLATFORM
               else sorted(await buyers(self.kpay, None))[:MAX_MEMBERS])
        self.write_json(await people(self, owner, ids))


class TagsHandler(BaseHandler):
    @api("My tags with how many users carry each", roles=("consultant", "admin"),
         response=TagList)
    async def get(self) -> None:
        self.write_json({"tags": await tags.owner_tags(self.kpay, owner_of(self))})


class UserTagHandler(BaseHandler):
    @api("Tag one of my students (an operator: anyone)", roles=("consultant", "admin"),
         response=TagChange)
    async def put(self, user_id: str, tag: str) -> None:
        owner = owner_of(self)
        ids = await check_taggable(self, owner, [user_id])
        self.write_json({"changed": await tags.add(self.kpay, owner, tag, ids)})

    @api("Take my tag off a user", roles=("consultant", "admin"), response=TagChange)
    async def delete(self, user_id: str, tag: str) -> None:
        owner = owner_of(self)
        self.write_json({"changed": await tags.remove(self.kpay, owner, tag, [user_id[:64]])})


class TagUsersHandler(BaseHandler):
    @api("Tag many users at once (at most 1,000)", body=TagUsers,
         roles=("consultant", "admin"), response=TagChange)
    async def post(self, tag: str) -> None:
        owner = owner_of(self)
        ids = await check_taggable(self, owner, self.body(TagUsers).user_ids)
        self.write_json({"changed": await tags.add(self.kpay, owner, tag, ids)})


class RulesHandler(BaseHandler):
    @api("The rule kinds a segment may use, with Chinese labels and parameter schemas",
         roles=("consultant", "admin"), response=RuleList)
    async def get(self) -> None:
        owner = owner_of(self)
        kinds = await rule_kinds(self.kpay)
        self.write_json({"rules": [
            {"name": r.name, "label": r.label, "params": params_schema(r),
             "choices": (await r.choices(self.kpay, owner)) if r.choices else {}}
            for r in kinds.values()]})


class SegmentsHandler(BaseHandler):
    @api("My segments, newest first", roles=("consultant", "admin"), response=SegmentList)
    async def get(self) -> None:
        self.write_json({"segments": await segments.list_of(self.kpay, owner_of(self))})

    @api("Save a segment: tags and rules, all-of or any-of", body=segments.SegmentBody,
         roles=("consultant", "admin"), status=201, response=Segment)
    async def post(self) -> None:
        owner = owner_of(self)
        body = self.body(segments.SegmentBody)
        self.write_json(await segments.create(self.kpay, owner, body), 201)


class SegmentHandler(BaseHandler):
    @api("One of my segments with its member count", roles=("consultant", "admin"),
         response=SegmentWithCount)
    async def get(self, segment_id: str) -> None:
        owner = owner_of(self)
        doc = await segments.get(self.kpay, owner, segment_id)
        count = len(await segments.members(self.kpay, owner, doc))
        self.write_json({**segments.public(doc), "count": count})

    @api("Change a segment's name, match or conditions", body=segments.SegmentPatch,
         roles=("consultant", "admin"), response=Segment)
    async def patch(self, segment_id: str) -> None:
        owner = owner_of(self)
        patch = self.body(segments.SegmentPatch)
        self.write_json(await segments.update(self.kpay, owner, segment_id, patch))

    @api("Delete a segment", roles=("consultant", "admin"), response=Deleted)
    async def delete(self, segment_id: str) -> None:
        await segments.delete(self.kpay, owner_of(self), segment_id)
        self.write_json({"deleted": True})


class SegmentMembersHandler(BaseHandler):
    @api("A segment's members by id (a page), with nicknames, avatars and my tags",
         roles=("consultant", "admin"), query=("cursor", "limit"), response=PeoplePage)
    async def get(self, segment_id: str) -> None:
        owner = owner_of(self)
        doc = await segments.get(self.kpay, owner, segment_id)
        self.write_json(await people(self, owner, await segments.members(self.kpay, owner, doc)))


class SegmentCsvHandler(BaseHandler):
    @api("A segment's members as CSV (Chinese headers; cells safe from formulas)",
         roles=("consultant", "admin"), media_type="text/csv")
    async def get(self, segment_id: str) -> None:
        owner = owner_of(self)
        doc = await segments.get(self.kpay, owner, segment_id)
        text = await segments.members_csv(self.kpay, owner,
                                          await segments.members(self.kpay, owner, doc))
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition",
                        f'attachment; filename="kpay-segment-{doc["_id"]}.csv"')
        self.finish(text.encode())


class SegmentMessagesHandler(BaseHandler):
    @api("My latest messages to this segment and my daily cap",
         roles=("consultant", "admin"), response=MessageList)
    async def get(self, segment_id: str) -> None:
        owner = owner_of(self)
        await segments.get(self.kpay, owner, segment_id)
        found = [m for m in await messages.recent(self.kpay, owner)
                 if m["segment_id"] == segment_id]
        today = await messages.sent_today(self.kpay, owner)
        self.write_json({"messages": found, "cap": messages.cap_state(self.kpay, today, owner)})

    @api("Send a message to the segment's members (their notification list, live); an "
         "Idempotency-Key header makes a retried request return the first message",
         body=messages.MessageBody, roles=("consultant", "admin"), status=202,
         response=Message)
    async def post(self, segment_id: str) -> None:
        owner = owner_of(self)
        body = self.body(messages.MessageBody)
        key = idempotency_key(self)
        doc = await segments.get(self.kpay, owner, segment_id)
        members = await segments.members(self.kpay, owner, doc)
        record, replayed = await messages.start(self.kpay, owner, doc["_id"], body, members,
                                                key)
        self.write_json({**messages.public(record), "replayed": replayed}, 202)


class MessageHandler(BaseHandler):
    @api("One of my messages: how far its sending got", roles=("consultant", "admin"),
         response=Message)
    async def get(self, message_id: str) -> None:
        doc = await messages.get(self.kpay, owner_of(self), message_id)
        self.write_json(messages.public(doc))


def audience_routes() -> list[Route]:
    tag = ("audience",)
    return [
        Route("/api/v1/audience/students", StudentsHandler, tags=tag),
        Route("/api/v1/audience/rules", RulesHandler, tags=tag),
        Route("/api/v1/audience/messages/{message_id}", MessageHandler, tags=tag),
        Route("/api/v1/tags", TagsHandler, tags=tag),
        Route("/api/v1/tags/{tag}", TagUsersHandler, tags=tag),
        Route("/api/v1/tags/{user_id}/{tag}", UserTagHandler, tags=tag),
        Route("/api/v1/segments", SegmentsHandler, tags=tag),
        Route("/api/v1/segments/{segment_id}", SegmentHandler, tags=tag),
        Route("/api/v1/segments/{segment_id}/members", SegmentMembersHandler, tags=tag),
        Route("/api/v1/segments/{segment_id}/members.csv", SegmentCsvHandler, tags=tag),
        Route("/api/v1/segments/{segment_id}/messages", SegmentMessagesHandler, tags=tag),
    ]
