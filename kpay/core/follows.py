"""Who follows whom: a student (or anyone) follows a consultant (docs/api.md "Follow").

One document per pair in the core's ``follows`` collection, keyed by both ids, so a
second follow of the same pair finds the first (idempotent, no duplicates under races).
A user follows at most :data:`MAX_FOLLOWING` people: a bound on what one account can
write, checked before the insert (two racing follows may pass it by one; the write
rate limit bounds how far).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError

from kpay.core.errors import BadRequest, NotFound, TooManyOpen
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.clock import Clock
    from kpay.core.store import Store
    from kpay.core.users import Users

FOLLOWS = "follows"
MAX_FOLLOWING = 2000
INDEXES = [IndexSpec.of(FOLLOWS, "follower_id", "at"),
           IndexSpec.of(FOLLOWS, "followee_id")]


def follow_key(follower_id: str, followee_id: str) -> str:
    # "\n" cannot be in a user id (ids are printable), so two pairs never share a key.
    return f"{follower_id}\n{followee_id}"


class Follows:
    """``app.follows``: follow and unfollow consultants, count and list follows."""

    def __init__(self, store: Store, clock: Clock, users: Users) -> None:
        self.store, self.clock, self.users = store, clock, users

    @property
    def collection(self) -> Any:
        return self.store[FOLLOWS]

    async def follow(self, follower_id: str, followee_id: str) -> bool:
        """Follow ``followee_id`` (a consultant who is not blocked); True when it is new.
        404 ``user_not_found``, 400 ``cannot_follow_self`` / ``not_followable``,
        409 ``too_many_open`` (``what: "following"``)."""
        if follower_id == followee_id:
            raise BadRequest("you cannot follow yourself", code="cannot_follow_self")
        profile = await self.users.profile(followee_id)
        if profile is None:
            raise NotFound(f"no user {followee_id!r}", code="user_not_found")
        if profile["role"] != "consultant" or profile["blocked"]:
            raise BadRequest("only consultants can be followed", code="not_followable")
        key = follow_key(follower_id, followee_id)
        if await self.collection.count_documents({"_id": key}, limit=1):
            return False
        if await self.collection.count_documents({"follower_id": follower_id},
                                                 limit=MAX_FOLLOWING) >= MAX_FOLLOWING:
            raise TooManyOpen(f"you follow {MAX_FOLLOWING} people already; unfollow one "
                              "first", what="following", limit=MAX_FOLLOWING)
        try:
            await self.collection.insert_one({"_id": key, "follower_id": follower_id,
                                              "followee_id": followee_id,
                                              "at": self.clock.now()})
        except DuplicateKeyError:
            return False  # a concurrent follow of the same pair won
        return True

    async def unfollow(self, follower_id: str, followee_id: str) -> bool:
        """Stop following; True when there was a follow to end (idempotent)."""
        done = await self.collection.delete_one({"_id": follow_key(follower_id, followee_id)})
        return done.deleted_count == 1

    async def is_following(self, follower_id: str | None, followee_id: str) -> bool:
        if not follower_id:
            return False
        return bool(await self.collection.count_documents(
            {"_id": follow_key(follower_id, followee_id)}, limit=1))

    async def followers(self, followee_id: str) -> int:
        """How many follow ``followee_id`` (an indexed count)."""
        return await self.collection.count_documents({"followee_id": followee_id})

    async def following(self, follower_id: str, limit: int,
                        before: datetime | None = None) -> list[dict[str, Any]]:
        """Whom ``follower_id`` follows, newest first: ``[{"user_id", "at"}]``."""
        query: dict[str, Any] = {"follower_id": follower_id}
        if before is not None:
            query["at"] = {"$lt": before}
        cursor = self.collection.find(query).sort("at", -1).limit(limit)
        return [{"user_id": doc["followee_id"], "at": doc["at"]} async for doc in cursor]
