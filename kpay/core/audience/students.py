"""Who is whose student: a user with a paid order crediting the consultant's earnings
(a course, a room ticket, a consultation bought through an order), or one a plugin
names through ``audience_students`` (what it knows from its own collections)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from kpay.core.money import accounts
from kpay.core.plugins import close_awaitables, each_implementation

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Orders that count: money changed hands (a refunded buyer was still a student).
BOUGHT = ["paid", "fulfilled", "refunded"]
#: The most orders one audience question reads; past it the answer is cut (logged by
#: the caller as ``truncated``). Keeps every request bounded on a large platform.
MAX_SCAN = 50_000
#: The most members any set (students, a rule, a segment) holds.
MAX_MEMBERS = 10_000


def orders_query(owner: str | None, since: datetime | None = None) -> dict[str, Any]:
    """Paid orders, of ``owner``'s products when it is a consultant (None: all)."""
    query: dict[str, Any] = {"status": {"$in": BOUGHT}}
    if owner is not None:
        query["credits"] = {"$elemMatch": {"$elemMatch": {"$eq": accounts.earnings(owner)}}}
    if since is not None:
        query["paid_at"] = {"$gte": since}
    return query


async def buyers(app: KPay, owner: str | None, since: datetime | None = None
                 ) -> dict[str, dict[str, Any]]:
    """{user id: {"spent": fen, "last": paid_at}} of the paid orders ``orders_query``
    matches, at most ``MAX_SCAN`` orders read (newest first)."""
    found: dict[str, dict[str, Any]] = {}
    cursor = app.store["orders"].find(
        orders_query(owner, since), {"user_id": 1, "amount": 1, "paid_at": 1}
    ).sort("paid_at", -1).limit(MAX_SCAN)
    async for order in cursor:
        seen = found.setdefault(order["user_id"], {"spent": 0, "last": order.get("paid_at")})
        seen["spent"] += int(order.get("amount") or 0)
    return found


async def students_of(app: KPay, consultant_id: str) -> set[str]:
    """The consultant's students: buyers of their products and those the plugins name
    (hook ``audience_students``), at most ``MAX_MEMBERS``."""
    students = set(await buyers(app, consultant_id))
    calls = each_implementation(app.pm, "audience_students",
                                {"app": app, "consultant_id": consultant_id})
    try:
        for called in calls:
            for user_id in list(await called.result() or ())[:MAX_MEMBERS]:
                students.add(str(user_id))
    finally:
        close_awaitables(calls)
    students.discard(consultant_id)
    return set(sorted(students)[:MAX_MEMBERS])


async def is_student_of(app: KPay, consultant_id: str, user_id: str) -> bool:
    return user_id in await students_of(app, consultant_id)
