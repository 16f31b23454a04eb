"""Saved notifications: what a user was told, in Chinese, each linking to what it is
about (docs/api.md "Notifications", docs/plugins.md "app.notifications").

Every ``app.tell_user`` saves one here, worded by the plugin that knows its kind (hook
``describe_notification``); the operators send into the same list with ``add``. Each
user sees the newest ``KEEP_PER_USER``: the list and the unread count stop at the
oldest of those (the "floor"). What falls off the end is deleted when a save checks
the user's list, one save in ``CHECK_EVERY`` chosen at random, so a wave of saves does
not count every list it adds to; between checks a list holds about ``CHECK_EVERY``
more than it shows (docs/api.md "Notifications").
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kpay.core.errors import BadRequest
from kpay.core.money.statements import yuan
from kpay.core.plugins import close_awaitables, each_implementation
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.clock import Clock
    from kpay.core.store import Store

NOTIFICATIONS = "notifications"
INDEXES = [IndexSpec.of(NOTIFICATIONS, "user_id", ("created_at", -1), ("_id", -1)),
           IndexSpec.of(NOTIFICATIONS, "user_id", "read_at")]
KEEP_PER_USER = 200
# One save in this many (at random) checks its user's list and deletes what is past
# KEEP_PER_USER: a user's stored list exceeds it by about this many between checks.
CHECK_EVERY = 20
# Newest first, the order of every read of a user's list.
NEWEST_FIRST = [("created_at", -1), ("_id", -1)]
# One page of the list, and one read request's ids, at most.
MAX_PAGE = 50
MAX_TITLE = 60
MAX_BODY = 300
MAX_LINK = 300
MAX_KIND = 64
# Event types the core sends on user:<id> itself: no plugin may tell a user one.
RESERVED_KINDS = frozenset({"notification", "earnings_changed"})
# The title of a kind no plugin describes: never the raw English kind.
NEUTRAL_TITLE = "新消息"
# A link is a path inside kpay: "/" then no second "/" or "\" (a browser reads "//x"
# and "/\x" as another host), no scheme, no spaces or control characters.
LINK = re.compile(r"^/(?![/\\])[^\s\\\x00-\x1f\x7f]*$")


def check_link(link: str | None) -> str | None:
    """``link`` if it is a relative path inside kpay (or None); else 400 ``invalid_link``.
    Checked when a notification is saved, so a page can open it as it is."""
    if link is None:
        return None
    parts = urlsplit(link)
    if (len(link) > MAX_LINK or not LINK.fullmatch(link) or parts.scheme or parts.netloc):
        raise BadRequest("a notification's link must be a path inside kpay, such as "
                         "/static/course.html?id=c1", code="invalid_link", field="link")
    return link


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with "…": titles and bodies quote what users
    wrote (a question), which may be long."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def older_than(doc: dict[str, Any]) -> dict[str, Any]:
    """The filter of a user's notifications after ``doc`` in the list's order (newest
    first: older, or as old with a smaller id)."""
    at: datetime = doc["created_at"]
    return {"$or": [{"created_at": {"$lt": at}},
                    {"created_at": at, "_id": {"$lt": doc["_id"]}}]}


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], "kind": doc["kind"], "title": doc["title"],
            "body": doc["body"], "link": doc.get("link"), "created_at": doc["created_at"],
            "read": doc.get("read_at") is not None}


class Notifications:
    """``app.notifications``: each user's saved notifications."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.keep = KEEP_PER_USER
        self.check_every = CHECK_EVERY

    @property
    def collection(self) -> Any:
        return self.store[NOTIFICATIONS]

    async def add(self, user_id: str, title: str, body: str = "", link: str | None = None,
                  kind: str = "message") -> dict[str, Any]:
        """Save one notification for ``user_id`` and return it as the API shows it.
        ``title`` and ``body`` are Chinese text (cut to ``MAX_TITLE``/``MAX_BODY``);
        ``link`` a path inside kpay or None (400 ``invalid_link`` otherwise)."""
        doc = self.new_doc(user_id, title, body, link, kind)
        await self.collection.insert_one(doc)
        if self._checks_its_list():
            await self._trim(user_id)
        return public(doc)

    def new_doc(self, user_id: str, title: str, body: str = "", link: str | None = None,
                kind: str = "message") -> dict[str, Any]:
        """The stored document of one notification, checked and cut as ``add`` says."""
        now = self.clock.now()
        return {"_id": "ntf" + secrets.token_hex(10), "user_id": user_id,
                "kind": clip(kind, MAX_KIND), "title": clip(title, MAX_TITLE) or NEUTRAL_TITLE,
                "body": clip(body, MAX_BODY), "link": check_link(link),
                "created_at": now.replace(microsecond=now.microsecond // 1000 * 1000),
                "read_at": None}

    async def add_many(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Save documents made by ``new_doc`` (many users at once, as an unlock wave
        tells them) and return them as the API shows them: one ``insert_many``, and one
        count of the lists that these saves check (one in ``check_every``), so the
        round trips do not grow with the batch; only users past ``keep`` are trimmed,
        one at a time (docs/performance.md)."""
        if not docs:
            return []
        await self.collection.insert_many(docs, ordered=False)
        checked = sorted({doc["user_id"] for doc in docs if self._checks_its_list()})
        if checked:
            over = await self.collection.aggregate([
                {"$match": {"user_id": {"$in": checked}}},
                {"$group": {"_id": "$user_id", "n": {"$sum": 1}}},
                {"$match": {"n": {"$gt": self.keep}}}])
            async for user in over:
                await self._trim(user["_id"])
        return [public(doc) for doc in docs]

    def _checks_its_list(self) -> bool:
        # At random rather than every n-th save: no counter to keep per user, and no
        # user is left unchecked for long by the order saves happen to come in.
        return self.check_every <= 1 or secrets.randbelow(self.check_every) == 0

    async def _floor(self, user_id: str) -> dict[str, Any] | None:
        """The oldest notification ``user_id`` sees (the ``keep``-th newest), or None
        when they have fewer. One indexed read of at most ``keep`` entries."""
        oldest_seen = self.collection.find({"user_id": user_id}, {"created_at": 1}).sort(
            NEWEST_FIRST).skip(self.keep - 1).limit(1)
        async for floor in oldest_seen:
            return floor
        return None

    async def _trim(self, user_id: str) -> None:
        floor = await self._floor(user_id)
        if floor is not None:
            await self.collection.delete_many({"user_id": user_id, **older_than(floor)})

    async def list(self, user_id: str, limit: int = 20,
                   cursor: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``cursor`` the id of the last one of the previous page
        (400 ``invalid_cursor`` for an id that is not this user's)."""
        query: dict[str, Any] = {"user_id": user_id}
        if cursor:
            anchor = await self.collection.find_one({"_id": cursor, "user_id": user_id},
                                                    {"created_at": 1})
            if anchor is None:
                raise BadRequest("cursor: no such notification", code="invalid_cursor",
                                 field="cursor")
            # Only a later page can reach past the newest ``keep`` (MAX_PAGE < keep).
            query.update(older_than(anchor), **await self._seen_only(user_id))
        found = self.collection.find(query).sort(NEWEST_FIRST).limit(min(limit, MAX_PAGE))
        return [public(doc) async for doc in found]

    async def unread_count(self, user_id: str) -> int:
        """Unread among the newest ``keep`` (what the list shows)."""
        return await self.collection.count_documents(
            {"user_id": user_id, "read_at": None, **await self._seen_only(user_id)})

    async def _seen_only(self, user_id: str) -> dict[str, Any]:
        # A list not trimmed yet holds a few past the floor: they are not shown.
        floor = await self._floor(user_id)
        return {} if floor is None else {"$nor": [older_than(floor)]}

    async def mark_read(self, user_id: str, ids: list[str] | None = None) -> int:
        """Mark ``ids`` (at most ``MAX_PAGE``; others' ids match nothing), or every unread
        one the list shows when ``ids`` is None, read. Returns how many changed."""
        query: dict[str, Any] = {"user_id": user_id, "read_at": None}
        if ids is not None:
            query["_id"] = {"$in": list(ids)[:MAX_PAGE]}
        else:
            query.update(await self._seen_only(user_id))
        result = await self.collection.update_many(query,
                                                   {"$set": {"read_at": self.clock.now()}})
        return result.modified_count


def money_text(fen: int) -> str:
    """"¥12.34" for a notification's text (integer fen, no float)."""
    return "-¥" + yuan(-fen) if fen < 0 else "¥" + yuan(fen)


PAYOUT_LINK = "/static/console.html"


def describe_core(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The core's own kinds: payouts (docs/money.md "Payouts") and operators' refunds."""
    if kind == "payout_waiting_confirmation":
        return {"title": f"提现 {money_text(data['amount'])} 待确认收款",
                "body": "请在微信中确认收款，逾期未确认的提现将退回收入。", "link": PAYOUT_LINK}
    if kind == "payout_succeeded":
        return {"title": f"提现 {money_text(data['amount'])} 已到账",
                "body": "已转入你的微信零钱。", "link": PAYOUT_LINK}
    if kind == "order_refunded":
        to_wallet = data.get("to") == "wallet"
        done = "已退回钱包" if to_wallet else (
            "已原路退回" if data.get("status") == "succeeded" else "将原路退回")
        return {"title": f"退款 {money_text(data['amount'])} {done}",
                "body": f"订单「{data.get('title', '')}」已由客服退款。",
                "link": "/static/wallet.html" if to_wallet else None}
    if kind == "payout_returned":
        return {"title": f"提现 {money_text(data['amount'])} 已退回",
                "body": "提现未完成，金额已退回你的收入，可重新提现。", "link": PAYOUT_LINK}
    return None


async def describe(app: Any, user_id: str, kind: str, data: dict[str, Any]
                   ) -> dict[str, Any]:
    """``{"title", "body", "link"}`` for a ``tell_user`` event: the first plugin's
    ``describe_notification`` answer that is not None (pluggy's order), else the neutral
    title. An implementation that raises raises here (the caller logs it and saves
    nothing: no guessed wording)."""
    core = describe_core(kind, data)
    if core is not None:
        return core
    calls = each_implementation(app.pm, "describe_notification",
                                {"app": app, "user_id": user_id, "kind": kind,
                                  "data": data})
    try:
        for called in calls:
            answer = await called.result()
            if answer is not None:
                return {"title": str(answer["title"]), "body": str(answer.get("body") or ""),
                        "link": answer.get("link")}
    finally:
        close_awaitables(calls)
    return {"title": NEUTRAL_TITLE, "body": "", "link": None}
