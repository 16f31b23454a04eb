"""Who a token's holder really is now: stored role, blocked flag, revocation.

A token says who signed in and as what, for up to ``[auth] token_ttl_seconds``. What
may change meanwhile lives in the ``users`` collection, and wins over the token:

- ``role``: the stored role (a demoted admin is a student at once);
- ``blocked``: a blocked user is refused everywhere (``403 account_blocked``);
- ``token_version``: every token carries the version it was issued under (``ver``);
  bumping it ("log out everywhere", a role change, a block) ends every older token;
- ``revoked_tokens``: ids (``jti``) of single tokens ended by a logout, until they
  expire. At most ``MAX_REVOKED`` are kept per user: one more logs the user out
  everywhere instead.

Every request and socket checks its user's *standing* (these fields), cached per
process for at most ``[auth] standing_cache_seconds``. A change takes effect at once
on the process that made it; other processes (other nodes, a change made with the CLI)
see it within that bound, because ``changes_since`` tells each one which users changed
(``standing_changed_at``, on the database's clock) and the cache entry is dropped.
A user with no stored document has no standing: their tokens are refused.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from kpay.core.auth import ROLES, TokenClaims, TokenService, User
from kpay.core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from kpay.core.follows import INDEXES as FOLLOW_INDEXES
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.clock import Clock
    from kpay.core.store import Store

USERS = "users"
MAX_REVOKED = 50
CHANGES_PER_LOOK = 10_000
INDEXES = [IndexSpec.of(USERS, "standing_changed_at", sparse=True),
           IndexSpec.of(USERS, "openid"),
           # Who follows whom is part of the people the users service knows (follows.py).
           *FOLLOW_INDEXES]
# Sign-ups per day, for the growth model (docs/analytics.md).
INDEXES.append(IndexSpec.of(USERS, "created_at"))
STANDING_FIELDS = {"role": 1, "blocked": 1, "token_version": 1, "revoked_tokens": 1}
PROFILE_FIELDS = {"name": 1, "role": 1, "blocked": 1, "avatar_media_id": 1}
# profiles() answers one page of people at most: a bound on one query's size.
MAX_PROFILES = 1000
# A real name for payouts (docs/api.md "Payouts"): 2 to 30 Chinese or Latin letters
# and the middle dot (少数民族 and foreign names: "阿依古丽·买买提"), trimmed.
REAL_NAME = re.compile(r"^[\u3400-\u9fffA-Za-z·]{2,30}$")
# A nickname (docs/api.md "Me"): 1 to 20 characters once trimmed, none of them a control,
# format (zero-width, bidi override), private-use or unassigned character or a line break.
NICKNAME_MAX = 20
NICKNAME_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# What a WeChat user without a usable nickname is called.
WECHAT_DEFAULT_NAME = "微信用户"


@dataclass(frozen=True)
class Standing:
    role: str
    blocked: bool
    token_version: int
    revoked: frozenset[str]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Standing:
        return cls(doc.get("role") or "student", bool(doc.get("blocked")),
                   int(doc.get("token_version") or 0),
                   frozenset(r["jti"] for r in doc.get("revoked_tokens") or ()))


class Users:
    """``app.users``: the standing of users, and the changes operators make to it."""

    def __init__(self, store: Store, clock: Clock, cache_seconds: float) -> None:
        self.store, self.clock = store, clock
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Standing | None]] = {}
        # The application, whose media service (``app.media``, when there is one) turns
        # an avatar's media id into its public URL; set by KPay.
        self.media_source: Any = None

    @property
    def collection(self) -> Any:
        return self.store[USERS]

    async def standing(self, user_id: str) -> Standing | None:
        """The user's standing, from a cache at most ``cache_seconds`` old."""
        cached = self._cache.get(user_id)
        now = time.monotonic()  # a cache age, not a business time: the process clock
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        doc = await self.collection.find_one({"_id": user_id}, STANDING_FIELDS)
        standing = Standing.of(doc) if doc is not None else None
        if len(self._cache) > 100_000:
            self._cache.clear()  # bounded: a flood of ids cannot grow it for ever
        self._cache[user_id] = (now, standing)
        return standing

    def forget(self, user_id: str) -> None:
        self._cache.pop(user_id, None)

    async def profile(self, user_id: str) -> dict[str, Any] | None:
        """What plugins may know of a user: ``{"id", "name", "role", "blocked",
        "avatar_url"}``, or None when there is no such user. Plugins ask here, never the
        collection."""
        doc = await self.collection.find_one({"_id": user_id}, PROFILE_FIELDS)
        return self._profile_of(doc) if doc is not None else None

    async def profiles(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """:meth:`profile` of many users in one query (a list of people to show), by
        id; ids of no user are left out."""
        ids = bounded_ids(user_ids, "profiles")
        if not ids:
            return {}
        cursor = self.collection.find({"_id": {"$in": ids}}, PROFILE_FIELDS)
        return {doc["_id"]: self._profile_of(doc) async for doc in cursor}

    def _profile_of(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {**profile_of(doc), "avatar_url": self.avatar_url(doc.get("avatar_media_id"))}

    def avatar_url(self, media_id: str | None) -> str | None:
        """The public URL (variant ``thumb``) of an avatar, or None without one (or
        without a media service to serve it)."""
        media = getattr(self.media_source, "media", None)
        if not media_id or media is None:
            return None
        return media.public_url(media_id, "thumb")

    async def set_profile(self, user_id: str, *, name: str | None = None,
                          avatar_media_id: str | None = None) -> dict[str, Any]:
        """Change the user's nickname (checked: :func:`check_nickname`) and/or avatar (a
        media id the caller already checked with ``app.media.attach``); returns
        :meth:`profile`."""
        changes: dict[str, Any] = {"profile_changed_at": self.clock.now()}
        if name is not None:
            changes["name"] = check_nickname(name)
        if avatar_media_id is not None:
            changes["avatar_media_id"] = avatar_media_id
        done = await self.collection.update_one({"_id": user_id}, {"$set": changes})
        if done.matched_count == 0:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        profile = await self.profile(user_id)
        assert profile is not None
        return profile

    async def openid(self, user_id: str) -> str | None:
        """The WeChat openid the user last signed in with, if any."""
        doc = await self.collection.find_one({"_id": user_id}, {"openid": 1})
        return (doc or {}).get("openid")

    async def openids(self, user_ids: Iterable[str]) -> dict[str, str]:
        """The WeChat openids of those of ``user_ids`` who signed in with WeChat, in one
        query (a batch of notifications to forward); at most MAX_PROFILES ids."""
        ids = bounded_ids(user_ids, "openids")
        if not ids:
            return {}
        # One round trip: all in the first batch (the server's default is 101 documents,
        # then getMore), and the limit closes the cursor (one document per id at most).
        cursor = self.collection.find({"_id": {"$in": ids}}, {"openid": 1},
                                      batch_size=len(ids), limit=len(ids))
        return {doc["_id"]: doc["openid"] async for doc in cursor if doc.get("openid")}

    async def by_openid(self, openid: str) -> str | None:
        """The id of the user who signed in with this WeChat openid, if any (never makes
        one: a push from WeChat about a stranger is not a sign-in)."""
        doc = await self.collection.find_one({"openid": openid}, {"_id": 1})
        return doc["_id"] if doc else None

    async def real_name(self, user_id: str) -> str | None:
        """The real name the user gave for payouts (personal data: never logged, never
        in a profile; docs/operations.md "Personal data"), if any."""
        doc = await self.collection.find_one({"_id": user_id}, {"real_name": 1})
        return (doc or {}).get("real_name") or None

    async def set_real_name(self, user_id: str, name: Any) -> str:
        """Keep the user's real name (checked: :data:`REAL_NAME`); returns it masked.
        400 ``invalid_real_name`` (the name is not echoed back)."""
        name = name.strip() if isinstance(name, str) else ""
        if not REAL_NAME.match(name):
            raise BadRequest("real_name must be 2 to 30 Chinese or Latin letters or the "
                             "middle dot", code="invalid_real_name", field="real_name")
        done = await self.collection.update_one(
            {"_id": user_id}, {"$set": {"real_name": name,
                                        "real_name_set_at": self.clock.now()}})
        if done.matched_count == 0:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        return mask_name(name)

    async def sign_in_wechat(self, openid: str, nickname: str | None = None) -> dict[str, Any]:
        """The user of a WeChat openid, created as a student on first sign-in. The id is
        derived from the openid, so two concurrent first logins make one user.

        A new user is named after their WeChat nickname (cleaned as a nickname set with
        ``PATCH /api/v1/me``, else 微信用户); a name the user set later is kept. WeChat's
        ``headimgurl`` is not used: pages load images only from this server (the
        Content-Security-Policy), so the default avatar (first character) stands in until
        the user uploads one."""
        changes: dict[str, Any] = {"openid": openid}
        nickname = clean_wechat_nickname(nickname)
        if nickname:
            changes["wechat_nickname"] = nickname
        existing = await self.collection.find_one_and_update(
            {"openid": openid}, {"$set": changes}, return_document=ReturnDocument.AFTER)
        if existing is not None:
            return existing
        user_id = "wx_" + hashlib.sha256(openid.encode()).hexdigest()[:20]
        return await self.collection.find_one_and_update(
            {"_id": user_id},
            {"$set": changes, "$setOnInsert": {"role": "student", "created_at": self.clock.now(),
                                               "name": nickname or WECHAT_DEFAULT_NAME}},
            upsert=True, return_document=ReturnDocument.AFTER)

    async def get(self, user_id: str) -> dict[str, Any]:
        doc = await self.collection.find_one({"_id": user_id})
        if doc is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        return doc

    async def ensure(self, user_id: str, role: str, name: str | None = None) -> dict[str, Any]:
        """The user, created with ``role`` if new (a stored role is never changed here)."""
        check_role(role)
        doc = await self.collection.find_one_and_update(
            {"_id": user_id},
            {"$setOnInsert": {"role": role, "name": name or user_id,
                              "created_at": self.clock.now()}},
            upsert=True, return_document=ReturnDocument.AFTER)
        return doc

    async def sign_in(self, user_id: str, role: str, name: str | None) -> dict[str, Any]:
        """Dev login: the user, created or switched to ``role`` (a switch ends the tokens
        of the old role, as any role change does). A ``name`` given replaces the stored
        one; without it a new user is named after the id and a stored name (a nickname
        the user set) is kept."""
        check_role(role)
        named = {"$set": {"name": name}} if name else {}
        doc = await self.collection.find_one_and_update(
            {"_id": user_id},
            {**named, "$setOnInsert": {"role": role, "created_at": self.clock.now(),
                                       **({} if name else {"name": user_id})}},
            upsert=True, return_document=ReturnDocument.AFTER)
        if doc.get("role") != role:
            doc = await self.set_role(user_id, role)
        return doc

    async def _change(self, user_id: str, change: dict[str, Any],
                      query: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply ``change`` and end every token issued before it (version bump)."""
        update = {**change, "$inc": {"token_version": 1},
                  "$currentDate": {"standing_changed_at": True}}
        doc = await self.collection.find_one_and_update(
            {"_id": user_id, **(query or {})}, update, return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        self.forget(user_id)
        return doc

    async def set_role(self, user_id: str, role: str) -> dict[str, Any]:
        check_role(role)
        return await self._change(user_id, {"$set": {"role": role}})

    async def set_blocked(self, user_id: str, blocked: bool) -> dict[str, Any]:
        return await self._change(user_id, {"$set": {"blocked": blocked}})

    async def log_out_everywhere(self, user_id: str) -> dict[str, Any]:
        return await self._change(user_id, {"$set": {"revoked_tokens": []}})

    async def revoke_token(self, user_id: str, jti: str, expires_at: datetime) -> None:
        """End one token (a logout) until it expires; expired entries are pruned."""
        # Each step one atomic update, so concurrent logouts of one user lose none.
        await self.collection.update_one(
            {"_id": user_id},
            {"$pull": {"revoked_tokens": {"expires_at": {"$lte": self.clock.now()}}}})
        added = await self.collection.update_one(
            {"_id": user_id, f"revoked_tokens.{MAX_REVOKED - 1}": {"$exists": False}},
            {"$push": {"revoked_tokens": {"jti": jti, "expires_at": expires_at}},
             "$currentDate": {"standing_changed_at": True}})
        if added.matched_count == 0 and await self.collection.count_documents(
                {"_id": user_id}, limit=1):
            await self.log_out_everywhere(user_id)  # full: end them all instead
        self.forget(user_id)

    async def changes_since(self, since: datetime | None) -> tuple[list[str], datetime]:
        """Users whose standing changed after ``since`` (database clock), and the new
        mark to pass next time. ``since=None`` starts from the database's now."""
        hello = await self.store.client.admin.command("hello")
        # The next mark overlaps a little: a change written while this runs is seen
        # twice rather than missed (dropping a cache entry twice costs nothing).
        server_now = hello["localTime"] - timedelta(seconds=2)
        if since is None:
            return [], server_now
        changed = [doc async for doc in self.collection.find(
            {"standing_changed_at": {"$gt": since}}, {"standing_changed_at": 1}
        ).sort("standing_changed_at", 1).limit(CHANGES_PER_LOOK)]
        if len(changed) == CHANGES_PER_LOOK:
            # More than one look takes: the next one goes on from the last seen.
            server_now = changed[-1]["standing_changed_at"]
        return [doc["_id"] for doc in changed], server_now


def bounded_ids(user_ids: Iterable[str], method: str) -> list[str]:
    """The distinct ids, in order; ValueError past MAX_PROFILES (one query's ``$in``)."""
    ids = list(dict.fromkeys(user_ids))
    if len(ids) > MAX_PROFILES:
        raise ValueError(f"{method}() takes at most {MAX_PROFILES} ids; ask per page")
    return ids


def profile_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "name": doc.get("name") or doc["_id"],
            "role": doc.get("role") or "student", "blocked": bool(doc.get("blocked"))}


def check_nickname(name: Any) -> str:
    """A nickname trimmed, or 400 ``invalid_name``: 1 to :data:`NICKNAME_MAX`
    characters, none of :data:`NICKNAME_REFUSED_CATEGORIES`."""
    name = unicodedata.normalize("NFC", name.strip()) if isinstance(name, str) else ""
    if not 1 <= len(name) <= NICKNAME_MAX or any(
            unicodedata.category(char) in NICKNAME_REFUSED_CATEGORIES for char in name):
        raise BadRequest(f"name must be 1 to {NICKNAME_MAX} characters, without control "
                         "or invisible characters", code="invalid_name", field="name",
                         max=NICKNAME_MAX)
    return name


def clean_wechat_nickname(nickname: str | None) -> str | None:
    """A WeChat nickname made a valid nickname (refused characters dropped, cut to
    :data:`NICKNAME_MAX`), or None when nothing is left."""
    if not isinstance(nickname, str):
        return None
    kept = "".join(char for char in nickname
                   if unicodedata.category(char) not in NICKNAME_REFUSED_CATEGORIES)
    kept = unicodedata.normalize("NFC", kept).strip()[:NICKNAME_MAX].strip()
    return kept or None


def mask_name(name: str) -> str:
    """A real name as its owner is shown it: first and last character ("张*三", "李*")."""
    if len(name) <= 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def issue_token(tokens: TokenService, user: dict[str, Any], ttl: int | None = None) -> str:
    """A token for a stored user, with their stored role and current token version."""
    return tokens.issue(user["_id"], user.get("role") or "student", ttl,
                        version=int(user.get("token_version") or 0))


async def authenticate(tokens: TokenService, users: Users, token: str) -> TokenClaims:
    """A valid token of a user who may still act, with the stored role: 401
    ``invalid_token``/``token_expired``/``token_revoked``, 403 ``account_blocked``."""
    return await authenticate_claims(users, tokens.decode(token))


async def authenticate_claims(users: Users, claims: TokenClaims) -> TokenClaims:
    """:func:`authenticate` for claims already decoded (a socket checked again)."""
    user_id = claims.user.id
    standing = await users.standing(user_id)
    if standing is None:
        raise Unauthorized("no such user; log in again", code="invalid_token")
    if standing.blocked:
        raise Forbidden("this account is blocked", code="account_blocked")
    if claims.version < standing.token_version or claims.token_id in standing.revoked:
        raise Unauthorized("this session has ended; log in again", code="token_revoked")
    return TokenClaims(User(user_id, standing.role), claims.version, claims.token_id,
                       claims.expires_at)


def check_role(role: str) -> None:
    if role not in ROLES:
        raise BadRequest(f"unknown role {role!r}; roles: {', '.join(ROLES)}",
                         code="invalid_field", field="role")
