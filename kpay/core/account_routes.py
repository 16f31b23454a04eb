"""Routes for accounts and operators: logging out, roles and blocks, the audit log and
the needs-attention list (docs/api.md, "Accounts" and "Operators")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from kpay.core import attention, responses
from kpay.core.errors import BadRequest
from kpay.core.money.routes import parse_before
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




def account_routes() -> list[Route]:
    admin = ("admin",)
    return [
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
