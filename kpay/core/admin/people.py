"""Finding users and one user's whole picture, for admins (docs/api.md "Operators")."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from kpay.core.admin.parts import plugin_parts
from kpay.core.audience import PLATFORM, tags
from kpay.core.auth import ROLES
from kpay.core.errors import BadRequest
from kpay.core.money import accounts
from kpay.core.money.operator import admin_order

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: The longest search text (a nickname is at most 20 characters, an openid about 28).
MAX_QUERY = 64
#: Users one ``ids=`` lookup names at most.
MAX_IDS = 50
#: Recent orders a user's detail shows.
RECENT_ORDERS = 20
LIST_FIELDS = {"name": 1, "role": 1, "blocked": 1, "avatar_media_id": 1, "created_at": 1,
               "anonymised_at": 1}


def listed(app: KPay, doc: dict[str, Any]) -> dict[str, Any]:
    """A user as the admin list shows them."""
    return {"id": doc["_id"], "name": doc.get("name") or doc["_id"],
            "role": doc.get("role") or "student", "blocked": bool(doc.get("blocked")),
            "avatar_url": app.users.avatar_url(doc.get("avatar_media_id")),
            "created_at": doc.get("created_at"),
            "anonymised": doc.get("anonymised_at") is not None}


async def search_users(app: KPay, q: str, role: str | None, tag: str | None,
                       cursor: str | None, limit: int,
                       ids: list[str] | None = None) -> dict[str, Any]:
    """One page of users, by id: ``q`` matches an id or an openid exactly, or a part of
    the nickname (as plain text: the search is escaped, never a pattern); ``tag`` is
    one of the operators' tags (docs/audience.md); ``ids`` names
    them (blocked ones too, unlike the public profiles: the audit log's people)."""
    q = q.strip()
    if len(q) > MAX_QUERY:
        raise BadRequest(f"q is at most {MAX_QUERY} characters", code="invalid_field",
                         field="q", max=MAX_QUERY)
    query: dict[str, Any] = {}
    if q:
        query["$or"] = [{"_id": q}, {"openid": q},
                        {"name": {"$regex": re.escape(q), "$options": "i"}}]
    if role:
        if role not in ROLES:
            raise BadRequest(f"role is one of {', '.join(ROLES)}", code="invalid_field",
                             field="role")
        query["role"] = role
    if tag:
        query["_id"] = {"$in": await tagged_user_ids(app, tag)}
    if ids is not None:
        if not 1 <= len(ids) <= MAX_IDS or tag:
            raise BadRequest(f"ids: 1 to {MAX_IDS} user ids, without tag",
                             code="invalid_field", field="ids", max=MAX_IDS)
        query["_id"] = {"$in": ids}
    if cursor:
        query.setdefault("_id", {})
        if isinstance(query["_id"], dict):
            query["_id"]["$gt"] = cursor
        else:
            query["_id"] = {"$eq": query["_id"], "$gt": cursor}
    found = app.users.collection.find(query, LIST_FIELDS).sort("_id", 1).limit(limit)
    users = [listed(app, doc) async for doc in found]
    return {"users": users, "next_cursor": users[-1]["id"] if len(users) == limit else None}


async def tagged_user_ids(app: KPay, tag: str) -> list[str]:
    """Who carries the operators' tag ``tag`` (docs/audience.md), at most
    ``MAX_MEMBERS`` (kpay/core/audience/students.py)."""
    return sorted(await tags.tagged(app, PLATFORM, tags.check_tag(tag)))


async def user_detail(app: KPay, user_id: str) -> dict[str, Any]:
    """Everything an admin sees of one user: profile and standing, recent orders,
    wallet, earnings, whether a page of theirs is open on any node, and the plugins' sections
    (hook ``admin_user_sections``). 404 ``user_not_found``."""
    doc = await app.users.get(user_id)
    orders = app.money.orders.collection.find({"user_id": user_id}).sort(
        "created_at", -1).limit(RECENT_ORDERS)
    return {
        **listed(app, doc),
        "has_openid": bool(doc.get("openid")),
        "has_real_name": bool(doc.get("real_name")),
        "orders": [admin_order(order) async for order in orders],
        "wallet": await app.money.ledger.wallet(user_id),
        "earnings": await app.money.ledger.balance(accounts.earnings(user_id)),
        "online": await app.broker.is_present(f"user:{user_id}", user_id),
        "sections": await plugin_parts(app, "admin_user_sections", user_id,
                                       fail_closed=False),
    }

