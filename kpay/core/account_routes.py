"""Routes for accounts and operators: the caller's profile, logging out, following,
public profiles, roles and blocks, the audit log and the needs-attention list
(docs/api.md, "Me", "Profiles", "Follow", "Accounts" and "Operators")."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kpay.core import attention, responses
from kpay.core.errors import BadRequest
from kpay.core.money.routes import parse_before
from kpay.core.profiles import public_profile
from kpay.core.sessions import enforce_standing
from kpay.core.web import BaseHandler, Route, api


class LogoutHandler(BaseHandler):
    @api("End this token (the others of the user keep working)", response=responses.Ok)
    async def post(self) -> None:
        user = self.require_user()
        claims = self.token_claims
        assert claims is not None
        if claims.token_id is None:
            # A token from before logouts existed has no id: end all of them.
            await self.kpay.users.log_out_everywhere(user.id)
        else:
            expires = datetime.fromtimestamp(claims.expires_at, UTC)
            await self.kpay.users.revoke_token(user.id, claims.token_id, expires)
        await enforce_standing(self.kpay, [user.id])
        self.write_json({"ok": True})


class LogoutEverywhereHandler(BaseHandler):
    @api("End every token of the caller, on every device", response=responses.Ok)
    async def post(self) -> None:
        user = self.require_user()
        await self.kpay.users.log_out_everywhere(user.id)
        await enforce_standing(self.kpay, [user.id])
        self.write_json({"ok": True})


class Reason(BaseModel):
    reason: str = Field("", max_length=500)


class RoleChange(Reason):
    role: Literal["student", "consultant", "admin"]


class OperatorHandler(BaseHandler):
    async def changed(self, action: str, user_id: str, reason: str, **details: object) -> None:
        """Audit an operator's change to a user, and close what it ended."""
        admin = self.require_user("admin")
        await self.kpay.audit.record(admin.id, action, f"user:{user_id}", reason=reason,
                                     source=self.request.remote_ip or "", **details)
        await enforce_standing(self.kpay, [user_id])


class UserRoleHandler(OperatorHandler):
    @api("Admins: change a user's stored role (ends their tokens)", roles=("admin",),
         body=RoleChange, response=responses.UserResult)
    async def post(self, user_id: str) -> None:
        self.require_user("admin")
        change = self.body(RoleChange)
        before = (await self.kpay.users.get(user_id)).get("role")
        user = await self.kpay.users.set_role(user_id, change.role)
        await self.changed("user.role", user_id, change.reason, before=before, after=change.role)
        self.write_json({"user": public_user(user)})


class UserBlockHandler(OperatorHandler):
    blocked = True

    @api("Admins: block a user: every request and socket of theirs is refused",
         roles=("admin",), body=Reason, response=responses.UserResult)
    async def post(self, user_id: str) -> None:
        admin = self.require_user("admin")
        change = self.body(Reason)
        if self.blocked and user_id == admin.id:
            raise BadRequest("an admin cannot block themselves", code="cannot_block_self")
        user = await self.kpay.users.set_blocked(user_id, self.blocked)
        await self.changed("user.block" if self.blocked else "user.unblock", user_id,
                           change.reason)
        self.write_json({"user": public_user(user)})


class UserUnblockHandler(UserBlockHandler):
    blocked = False

    @api("Admins: unblock a user (they log in again)", roles=("admin",), body=Reason,
         response=responses.UserResult)
    async def post(self, user_id: str) -> None:
        await super().post(user_id)


class AuditHandler(BaseHandler):
    @api("Admins: the audit log of operator actions, newest first", roles=("admin",),
         query=("actor", "target", "action", "limit", "before"),
         response=responses.AuditPage)
    async def get(self) -> None:
        self.require_user("admin")
        limit = self.query_int("limit", 50, 1, 200)
        filters = {name: self.get_query_argument(name, None) or None
                   for name in ("actor", "target", "action")}
        for name, value in filters.items():
            if value is not None and len(value) > 100:
                raise BadRequest(f"{name} is too long", code="invalid_field", field=name)
        records = await self.kpay.audit.list(**filters, limit=limit,
                                             before=time_argument(self, "before"))
        next_before = records[-1]["at"] if len(records) == limit else None
        self.write_json({"records": records, "next_before": next_before})


def time_argument(handler: BaseHandler, name: str) -> datetime | None:
    value = parse_before(handler.get_query_argument(name, None))
    if isinstance(value, str):
        raise BadRequest(f"{name} must be an ISO 8601 time", code="invalid_field", field=name)
    return value


def public_user(user: dict) -> dict:
    return {"id": user["_id"], "role": user.get("role"), "name": user.get("name"),
            "blocked": bool(user.get("blocked"))}


class AttentionListHandler(BaseHandler):
    @api("Admins: the needs-attention list, newest first: records a job or fulfilment "
         "could not handle (docs/operations.md)", roles=("admin",),
         query=("status", "limit", "before"), response=responses.AttentionPage)
    async def get(self) -> None:
        self.require_user("admin")
        status = self.get_query_argument("status", "open")
        if status not in (*attention.STATUSES, "all"):
            raise BadRequest("status is open, resolved or all", code="invalid_field",
                             field="status")
        limit = self.query_int("limit", 50, 1, 200)
        before = parse_before(self.get_query_argument("before", None))
        if isinstance(before, str):
            raise BadRequest("before must be an ISO 8601 time", code="invalid_field",
                             field="before")
        entries = await self.kpay.attention.list(None if status == "all" else status,
                                                 limit, before)
        next_before = entries[-1]["last_seen_at"] if len(entries) == limit else None
        self.write_json({"entries": entries, "next_before": next_before})


class AttentionResolve(BaseModel):
    note: str = Field("", max_length=500)


class AttentionResolveHandler(BaseHandler):
    @api("Admins: mark a needs-attention entry resolved", roles=("admin",),
         body=AttentionResolve, response=responses.AttentionResult)
    async def post(self, entry_id: str) -> None:
        admin = self.require_user("admin")
        change = self.body(AttentionResolve)
        entry = await self.kpay.attention.resolve(entry_id, admin.id, change.note)
        await self.kpay.audit.record(admin.id, "attention.resolve", f"attention:{entry_id}",
                                     reason=change.note, source=self.request.remote_ip or "",
                                     subject=entry["subject"])
        self.write_json({"entry": entry})



# -- the caller's own profile, people, follows -------------------------------------------------

#: Ids a profile lookup takes: what a user id looks like (dev ids, ``wx_`` ids), bounded.
USER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Profiles one ``GET /api/v1/users/profiles`` answers at most.
MAX_PROFILE_IDS = 50


class ProfileChange(BaseModel):
    """Body of ``PATCH /api/v1/me``: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    # Checked again by users.check_nickname (trimmed, no control characters).
    name: str | None = Field(None, min_length=1, max_length=64, examples=["小林老师"])
    avatar_media_id: str | None = Field(None, min_length=1, max_length=64)


def person(profile: dict) -> dict:
    """What a page shows of someone: nickname and avatar (never blocked flags)."""
    return {"id": profile["id"], "name": profile["name"], "role": profile["role"],
            "avatar_url": profile["avatar_url"]}


class MeHandler(BaseHandler):
    @api("The current user", response=responses.Me)
    async def get(self) -> None:
        user = self.require_user()
        profile = await self.kpay.users.profile(user.id) or {}
        self.write_json({"id": user.id, "role": user.role,
                         "name": profile.get("name", user.id),
                         "avatar_url": profile.get("avatar_url")})

    @api("Change the caller's nickname and/or avatar (an image they uploaded with "
         "purpose avatar)", body=ProfileChange, response=responses.Me)
    async def patch(self) -> None:
        user = self.require_user()
        change = self.body(ProfileChange)
        media_id = change.avatar_media_id
        if media_id is not None:
            media = getattr(self.kpay, "media", None)
            if media is None:
                raise BadRequest("this server keeps no uploads", code="invalid_media",
                                 field="avatar_media_id")
            # 400 invalid_media unless the caller uploaded it, as an avatar image.
            attached = await media.attach(media_id, owner_id=user.id, kinds=("image",),
                                          purposes=("avatar",))
            media_id = attached["id"]
        profile = await self.kpay.users.set_profile(user.id, name=change.name,
                                                    avatar_media_id=media_id)
        self.write_json({"id": user.id, "role": user.role, "name": profile["name"],
                         "avatar_url": profile["avatar_url"]})


class ProfilesHandler(BaseHandler):
    @api("Nicknames and avatars of up to 50 people, by id (ids of no user are left out)",
         auth=False, query=("ids",), response=responses.PeopleResult)
    async def get(self) -> None:
        raw = self.get_query_argument("ids", "")
        ids = list(dict.fromkeys(part for part in raw.split(",") if part))
        if not ids or len(ids) > MAX_PROFILE_IDS or not all(
                USER_ID.fullmatch(one) for one in ids):
            raise BadRequest(f"ids must be 1 to {MAX_PROFILE_IDS} user ids, comma separated",
                             code="invalid_field", field="ids", max=MAX_PROFILE_IDS)
        found = await self.kpay.users.profiles(ids)
        self.write_json({"profiles": {user_id: person(profile)
                                      for user_id, profile in found.items()
                                      if not profile["blocked"]}})


class PublicProfileHandler(BaseHandler):
    @api("A person's public profile: nickname, avatar, followers, whether the caller "
         "follows, and what plugins show (rooms, courses, consultation rate)", auth=False,
         response=responses.PublicProfileResult)
    async def get(self, user_id: str) -> None:
        # A token is optional here: with one, "following" is the caller's.
        viewer = self.token_claims.user.id if self.token_claims is not None else None
        self.write_json({"profile": await public_profile(self.kpay, user_id, viewer)})


class FollowHandler(BaseHandler):
    async def answer(self, user_id: str, following: bool) -> None:
        self.write_json({"user_id": user_id, "following": following,
                         "followers": await self.kpay.follows.followers(user_id)})

    @api("Follow a consultant (idempotent; at most 2,000 followed)",
         response=responses.FollowState)
    async def put(self, user_id: str) -> None:
        user = self.require_user()
        await self.kpay.follows.follow(user.id, user_id)
        await self.answer(user_id, True)

    @api("Stop following someone (idempotent)", response=responses.FollowState)
    async def delete(self, user_id: str) -> None:
        user = self.require_user()
        await self.kpay.follows.unfollow(user.id, user_id)
        await self.answer(user_id, False)


class FollowingHandler(BaseHandler):
    @api("Whom the caller follows, newest first", query=("limit", "before"),
         response=responses.FollowingPage)
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 50, 1, 100)
        follows = await self.kpay.follows.following(user.id, limit,
                                                    time_argument(self, "before"))
        found = await self.kpay.users.profiles(f["user_id"] for f in follows)
        entries = [{**person(found[f["user_id"]]), "followed_at": f["at"]}
                   for f in follows if f["user_id"] in found]
        next_before = follows[-1]["at"] if len(follows) == limit else None
        self.write_json({"following": entries, "next_before": next_before})


def account_routes() -> list[Route]:
    admin = ("admin",)
    return [
        Route("/api/v1/me", MeHandler, tags=("core",)),
        Route("/api/v1/me/following", FollowingHandler, tags=("core",)),
        Route("/api/v1/users/profiles", ProfilesHandler, tags=("core",)),
        Route("/api/v1/users/{user_id}/profile", PublicProfileHandler, tags=("core",)),
        Route("/api/v1/users/{user_id}/follow", FollowHandler, tags=("core",)),
        Route("/api/v1/auth/logout", LogoutHandler, tags=("core",)),
        Route("/api/v1/auth/logout-everywhere", LogoutEverywhereHandler, tags=("core",)),
        Route("/api/v1/admin/users/{user_id}/role", UserRoleHandler, tags=admin),
        Route("/api/v1/admin/users/{user_id}/block", UserBlockHandler, tags=admin),
        Route("/api/v1/admin/users/{user_id}/unblock", UserUnblockHandler, tags=admin),
        Route("/api/v1/admin/audit", AuditHandler, tags=admin),
        Route("/api/v1/admin/attention", AttentionListHandler, tags=admin),
        Route("/api/v1/admin/attention/{entry_id}/resolve", AttentionResolveHandler,
              tags=admin),
    ]
