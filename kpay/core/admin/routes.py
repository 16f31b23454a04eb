"""Admins' routes on users (docs/api.md "Operators"): search, a user's detail, their
personal data (export, anonymise). Role, block and unblock are in
kpay/core/account_routes.py; the audit log and the attention list there too."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.account_routes import USER_ID
from kpay.core.admin.people import search_users, user_detail
from kpay.core.admin.personal_data import anonymise_user, export_user
from kpay.core.errors import BadRequest
from kpay.core.money.admin_routes import AdminOrder
from kpay.core.responses import Role
from kpay.core.web import BaseHandler, Route, api

#: What a cursor (the last user id of a page) may look like.
MAX_CURSOR = 64


class AdminUser(BaseModel):
    id: str
    name: str
    role: Role
    blocked: bool
    avatar_url: str | None
    created_at: datetime | None
    anonymised: bool


class AdminUserPage(BaseModel):
    users: list[AdminUser]
    #: Pass as ``cursor`` for the next page; null on the last one.
    next_cursor: str | None


class WalletBalance(BaseModel):
    balance: int
    held: int
    available: int


class AdminUserDetail(AdminUser):
    has_openid: bool
    has_real_name: bool
    #: The 20 most recent orders, newest first.
    orders: list[AdminOrder]
    wallet: WalletBalance
    #: The earnings balance, in fen.
    earnings: int
    #: Whether a page of theirs is open on this server node.
    online: bool
    #: By plugin name, what each plugin shows (hook ``admin_user_sections``).
    sections: dict[str, Any]


class AdminUserResult(BaseModel):
    user: AdminUserDetail


class UserExport(BaseModel):
    user: dict[str, Any]
    exported_at: datetime
    orders: list[dict[str, Any]]
    refunds: list[dict[str, Any]]
    wallet: dict[str, Any]
    earnings: dict[str, Any]
    following: list[dict[str, Any]]
    followers: int
    notifications: list[dict[str, Any]]
    media: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    #: By plugin name (hook ``export_user_data``).
    plugins: dict[str, Any]


class AnonymiseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The user id again: a typed confirmation.
    confirm: str = Field(max_length=MAX_CURSOR)


class AnonymiseResult(BaseModel):
    #: Identity fields that were removed (empty on a repeat).
    identity: list[str]
    follows: int
    notifications: int
    #: By plugin name, what each plugin removed (hook ``anonymise_user``).
    plugins: dict[str, Any]


class AdminUsersHandler(BaseHandler):
    @api("Admins: find users by nickname (part, as plain text), id or openid, role, or "
         "tag, or name up to 50 by ids; by id, paged with cursor", roles=("admin",),
         query=("q", "role", "tag", "ids", "cursor", "limit"), response=AdminUserPage)
    async def get(self) -> None:
        self.require_user("admin")
        cursor = self.get_query_argument("cursor", None) or None
        if cursor is not None and len(cursor) > MAX_CURSOR:
            cursor = cursor[:MAX_CURSOR]  # no id is longer: the page is simply empty
        raw_ids = self.get_query_argument("ids", None)
        ids = None
        if raw_ids is not None:
            ids = list(dict.fromkeys(one for one in raw_ids.split(",") if one))
            if not all(USER_ID.fullmatch(one) for one in ids):
                raise BadRequest("ids must be user ids, comma separated",
                                 code="invalid_field", field="ids")
        self.write_json(await search_users(
            self.kpay, self.get_query_argument("q", ""),
            self.get_query_argument("role", None) or None,
            self.get_query_argument("tag", None) or None, cursor,
            self.query_int("limit", 20, 1, 100), ids))


class AdminUserHandler(BaseHandler):
    @api("Admins: one user's detail: standing, recent orders, wallet, earnings, online, "
         "the plugins' sections; in the audit log", roles=("admin",),
         response=AdminUserResult)
    async def get(self, user_id: str) -> None:
        admin = self.require_user("admin")
        detail = await user_detail(self.kpay, user_id)
        await self.kpay.audit.record(admin.id, "user.view", f"user:{user_id}",
                                     source=self.request.remote_ip or "")
        self.write_json({"user": detail})


class AdminUserExportHandler(BaseHandler):
    @api("Admins: everything kpay keeps about a user, as JSON (PIPL); in the audit log",
         roles=("admin",), response=UserExport)
    async def get(self, user_id: str) -> None:
        admin = self.require_user("admin")
        data = await export_user(self.kpay, user_id)
        await self.kpay.audit.record(admin.id, "user.export", f"user:{user_id}",
                                     source=self.request.remote_ip or "")
        self.set_header("Content-Disposition",
                        f'attachment; filename="kpay-user-{safe_name(user_id)}.json"')
        self.write_json(data)


class AdminUserAnonymiseHandler(BaseHandler):
    @api("Admins: remove a user's identity and free text, keeping their orders and "
         "ledger (PIPL); idempotent; in the audit log", roles=("admin",),
         body=AnonymiseRequest, response=AnonymiseResult)
    async def post(self, user_id: str) -> None:
        admin = self.require_user("admin")
        asked = self.body(AnonymiseRequest)
        if user_id == admin.id:
            # As with blocking: the console must keep an admin able to act.
            raise BadRequest("an admin cannot anonymise themselves",
                             code="cannot_anonymise_self")
        self.write_json(await anonymise_user(self.kpay, user_id, asked.confirm,
                                             actor=admin.id,
                                             source=self.request.remote_ip or ""))


def safe_name(user_id: str) -> str:
    """The id as a file name: only characters that need no quoting."""
    return "".join(c for c in user_id if c.isascii() and (c.isalnum() or c in "_.-"))[:64]


def admin_user_routes() -> list[Route]:
    admin = ("admin",)
    return [
        Route("/api/v1/admin/users", AdminUsersHandler, tags=admin),
        Route("/api/v1/admin/users/{user_id}", AdminUserHandler, tags=admin),
        Route("/api/v1/admin/users/{user_id}/export", AdminUserExportHandler, tags=admin),
        Route("/api/v1/admin/users/{user_id}/anonymise", AdminUserAnonymiseHandler,
              tags=admin),
    ]
