"""Segments: a saved combination of an owner's tags and rules, all-of or any-of.
Members are computed when asked for (rules.py says why), kept to a consultant's
students, sorted by id so pages and the CSV export are stable."""

from __future__ import annotations

import csv
import io
import secrets
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kpay.core.audience import PLATFORM, SEGMENTS
from kpay.core.audience.rules import check_rule, rule_members
from kpay.core.audience.students import MAX_MEMBERS, students_of
from kpay.core.audience.tags import MAX_TAG, check_tag, tagged, tags_of
from kpay.core.errors import NotFound
from kpay.core.ratelimit import enforce_cap

if TYPE_CHECKING:
    from kpay.core.app import KPay

MAX_CONDITIONS = 10
MAX_SEGMENTS_PER_OWNER = 50
MAX_NAME = 20


class Condition(BaseModel):
    """Either ``tag`` (one of the owner's tags) or ``rule`` with its ``params``."""

    model_config = ConfigDict(extra="forbid")
    tag: str | None = Field(None, min_length=1, max_length=MAX_TAG)
    rule: str | None = Field(None, min_length=1, max_length=40)
    params: dict[str, Any] = Field(default_factory=dict, max_length=10)

    @model_validator(mode="after")
    def one_of(self) -> Condition:
        if (self.tag is None) == (self.rule is None):
            raise ValueError("a condition is either a tag or a rule")
        return self


class SegmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "name": "老学员", "match": "all", "conditions": [{"tag": "VIP"}]}})
    name: str = Field(min_length=1, max_length=MAX_NAME)
    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    match: Literal["all", "any"] | None = None
    conditions: list[Condition] | None = Field(None, min_length=1, max_length=MAX_CONDITIONS)


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc["name"], "match": doc["match"],
            "conditions": doc["conditions"], "created_at": doc["created_at"]}


async def checked_conditions(app: KPay, conditions: list[Condition]) -> list[dict[str, Any]]:
    checked: list[dict[str, Any]] = []
    for c in conditions:
        if c.tag is not None:
            checked.append({"tag": check_tag(c.tag)})
        else:
            assert c.rule is not None
            checked.append({"rule": c.rule, "params": await check_rule(app, c.rule, c.params)})
    return checked


async def create(app: KPay, owner: str, body: SegmentBody) -> dict[str, Any]:
    collection = app.store[SEGMENTS]
    await enforce_cap(collection, {"owner": owner}, MAX_SEGMENTS_PER_OWNER, "segments",
                      f"at most {MAX_SEGMENTS_PER_OWNER} segments; delete one first")
    doc = {"_id": "seg" + secrets.token_hex(8), "owner": owner, "name": body.name.strip(),
           "match": body.match, "conditions": await checked_conditions(app, body.conditions),
           "created_at": app.clock.now()}
    await collection.insert_one(doc)
    return public(doc)


async def get(app: KPay, owner: str, segment_id: str) -> dict[str, Any]:
    """The owner's segment; 404 ``not_found`` for anyone else's (no telling it exists)."""
    doc = await app.store[SEGMENTS].find_one({"_id": segment_id[:64], "owner": owner})
    if doc is None:
        raise NotFound("no such segment", code="not_found")
    return doc


async def update(app: KPay, owner: str, segment_id: str, patch: SegmentPatch
                 ) -> dict[str, Any]:
    doc = await get(app, owner, segment_id)
    change: dict[str, Any] = {}
    if patch.name is not None:
        change["name"] = patch.name.strip()
    if patch.match is not None:
        change["match"] = patch.match
    if patch.conditions is not None:
        change["conditions"] = await checked_conditions(app, patch.conditions)
    if change:
        await app.store[SEGMENTS].update_one({"_id": doc["_id"]}, {"$set": change})
    return public({**doc, **change})


async def delete(app: KPay, owner: str, segment_id: str) -> None:
    doc = await get(app, owner, segment_id)
    await app.store[SEGMENTS].delete_one({"_id": doc["_id"]})


async def list_of(app: KPay, owner: str) -> list[dict[str, Any]]:
    cursor = app.store[SEGMENTS].find({"owner": owner}).sort("created_at", -1).limit(
        MAX_SEGMENTS_PER_OWNER)
    return [public(doc) async for doc in cursor]


async def members(app: KPay, owner: str, doc: dict[str, Any]) -> list[str]:
    """The segment's members, sorted, at most ``MAX_MEMBERS``; a consultant's only
    among their students."""
    sets: list[set[str]] = []
    for c in doc["conditions"]:
        if "tag" in c:
            sets.append(await tagged(app, owner, c["tag"]))
        else:
            sets.append(await rule_members(app, owner, c["rule"], c["params"]))
    joined = set.intersection(*sets) if doc["match"] == "all" else set.union(*sets)
    if owner != PLATFORM:
        joined &= await students_of(app, owner)
    return sorted(joined)[:MAX_MEMBERS]


CSV_HEADER = ["用户ID", "昵称", "标签"]
# A spreadsheet runs a cell starting with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading formula character gets a "'"."""
    return "'" + value if value.startswith(FORMULA_START) else value


async def members_csv(app: KPay, owner: str, member_ids: list[str]) -> str:
    """The members as CSV (UTF-8 with BOM, so Excel reads the Chinese headers)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for start in range(0, len(member_ids), 500):
        page = member_ids[start:start + 500]
        profiles = await app.users.profiles(page)
        tags = await tags_of(app, owner, page)
        for user_id in page:
            name = (profiles.get(user_id) or {}).get("name") or ""
            writer.writerow([safe_cell(user_id), safe_cell(name),
                             safe_cell(" ".join(tags.get(user_id, [])))])
    return "\ufeff" + out.getvalue()
