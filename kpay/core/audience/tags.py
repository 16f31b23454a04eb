"""Manual tags: an owner's (a consultant's, or the platform's) words on users.

Each tag is one document ``{owner, user_id, tag}`` (unique), so adding twice is a
no-op and a segment's tag condition is one indexed query on ``(owner, tag)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kpay.core.audience import TAGS
from kpay.core.audience.students import MAX_MEMBERS
from kpay.core.errors import BadRequest, TooManyOpen

if TYPE_CHECKING:
    from kpay.core.app import KPay

MAX_TAG = 12
#: Distinct tags one owner may use.
MAX_TAGS_PER_OWNER = 50
#: Users one call may tag or untag.
MAX_USERS_PER_CALL = 1000


def check_tag(tag: str) -> str:
    """The tag trimmed; 400 ``invalid_tag`` unless 1 to ``MAX_TAG`` printable characters."""
    tag = " ".join(str(tag).split())
    if not 1 <= len(tag) <= MAX_TAG or not tag.isprintable():
        raise BadRequest(f"a tag is 1 to {MAX_TAG} characters", code="invalid_tag",
                         field="tag")
    return tag


async def owner_tags(app: KPay, owner: str) -> list[dict[str, Any]]:
    """``[{"tag", "count"}]`` of an owner's tags, by name."""
    counts: dict[str, int] = {}
    cursor = app.store[TAGS].find({"owner": owner}, {"tag": 1}).limit(
        MAX_TAGS_PER_OWNER * MAX_USERS_PER_CALL)
    async for doc in cursor:
        counts[doc["tag"]] = counts.get(doc["tag"], 0) + 1
    return [{"tag": t, "count": n} for t, n in sorted(counts.items())]


async def add(app: KPay, owner: str, tag: str, user_ids: list[str]) -> int:
    """Tag users (already checked as the owner's to tag); returns how many were new.
    409 ``too_many_open`` when a new tag would pass ``MAX_TAGS_PER_OWNER``."""
    tag = check_tag(tag)
    collection = app.store[TAGS]
    if not await collection.find_one({"owner": owner, "tag": tag}, {"_id": 1}):
        used = {t["tag"] for t in await owner_tags(app, owner)}
        if len(used) >= MAX_TAGS_PER_OWNER:
            raise TooManyOpen(f"at most {MAX_TAGS_PER_OWNER} tags; remove one first",
                              what="tags", limit=MAX_TAGS_PER_OWNER)
    now = app.clock.now()
    added = 0
    for user_id in dict.fromkeys(user_ids[:MAX_USERS_PER_CALL]):
        result = await collection.update_one(
            {"owner": owner, "user_id": user_id, "tag": tag},
            {"$setOnInsert": {"created_at": now}}, upsert=True)
        added += 1 if result.upserted_id is not None else 0
    return added


async def remove(app: KPay, owner: str, tag: str, user_ids: list[str]) -> int:
    result = await app.store[TAGS].delete_many(
        {"owner": owner, "tag": check_tag(tag),
         "user_id": {"$in": list(user_ids[:MAX_USERS_PER_CALL])}})
    return result.deleted_count


async def tagged(app: KPay, owner: str, tag: str) -> set[str]:
    """Users the owner tagged ``tag``, at most ``MAX_MEMBERS``."""
    cursor = app.store[TAGS].find({"owner": owner, "tag": tag}, {"user_id": 1}).limit(
        MAX_MEMBERS)
    return {doc["user_id"] async for doc in cursor}


async def tags_of(app: KPay, owner: str, user_ids: list[str]) -> dict[str, list[str]]:
    """{user id: [tag, ...]} of the owner's tags on these users (one page of people)."""
    found: dict[str, list[str]] = {u: [] for u in user_ids}
    cursor = app.store[TAGS].find({"owner": owner, "user_id": {"$in": list(user_ids)}},
                                  {"user_id": 1, "tag": 1}).limit(
        len(user_ids) * MAX_TAGS_PER_OWNER)
    async for doc in cursor:
        found.setdefault(doc["user_id"], []).append(doc["tag"])
    return {u: sorted(t) for u, t in found.items()}
