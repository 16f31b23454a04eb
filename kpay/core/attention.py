"""The "needs attention" list: records a job could not handle, kept for an operator.

One bad record must never stop a job for everyone. A periodic job, a recompute or a
fulfilment that fails on one record logs it with its id, puts it here and goes on with
the rest::

    for enrollment in due:
        async with app.attention.isolate("course_drip.unlock_sweep",
                                         f"enrollment:{enrollment['_id']}"):
            await announce(enrollment)

An entry is one ``(source, subject)`` pair: the same record failing again bumps its
count and last error instead of adding rows. Operators read the list through
``GET /api/v1/admin/attention`` or ``kpay attention`` and mark entries resolved;
an entry that fails again after being resolved opens again.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pymongo import DESCENDING, ReturnDocument

from kpay.core import metrics
from kpay.core.errors import NotFound
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.clock import Clock
    from kpay.core.store import Store

log = logging.getLogger("kpay.attention")

ATTENTION = "attention"
INDEXES = [IndexSpec.of(ATTENTION, "status", ("last_seen_at", DESCENDING))]
#: Stored error text is cut to this many characters (a traceback's tail is kept).
MAX_ERROR_CHARS = 2000
STATUSES = ("open", "resolved")


def public(entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry["_id"], "source": entry["source"], "subject": entry["subject"],
            "status": entry["status"], "count": entry["count"], "error": entry["error"],
            "details": entry.get("details", {}),
            "first_seen_at": entry["first_seen_at"].isoformat(),
            "last_seen_at": entry["last_seen_at"].isoformat(),
            "resolved_at": entry["resolved_at"].isoformat() if entry.get("resolved_at")
            else None,
            "resolved_by": entry.get("resolved_by"), "note": entry.get("note")}


class Attention:
    """``app.attention``: report, list and resolve entries."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock

    @property
    def collection(self) -> Any:
        return self.store[ATTENTION]

    async def report(self, source: str, subject: str, error: BaseException | str,
                     **details: Any) -> None:
        """Put ``subject`` (e.g. ``order:o123``) from ``source`` (a job or plugin name)
        on the list. Never raises: the caller is already handling a failure."""
        text = error if isinstance(error, str) else describe(error)
        now = self.clock.now()
        try:
            await self.collection.update_one(
                {"_id": entry_id(source, subject)},
                {"$set": {"source": source, "subject": subject, "status": "open",
                          "error": text[-MAX_ERROR_CHARS:], "details": details,
                          "last_seen_at": now},
                 "$setOnInsert": {"first_seen_at": now},
                 "$unset": {"resolved_at": "", "resolved_by": "", "note": ""},
                 "$inc": {"count": 1}}, upsert=True)
        except Exception:
            log.exception("could not record %s %s on the attention list", source, subject)
        metrics.ATTENTION.labels(source).inc()

    def isolate(self, source: str, subject: str, **details: Any) -> Isolated:
        """An ``async with`` block whose exception is logged, reported and swallowed."""
        return Isolated(self, source, subject, details)

    async def list(self, status: str | None = "open", limit: int = 50,
                   before: datetime | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before`` pages on ``last_seen_at``."""
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status
        if before is not None:
            query["last_seen_at"] = {"$lt": before}
        cursor = self.collection.find(query).sort("last_seen_at", DESCENDING).limit(limit)
        return [public(entry) async for entry in cursor]

    async def resolve(self, entry_id: str, by: str, note: str = "") -> dict[str, Any]:
        entry = await self.collection.find_one_and_update(
            {"_id": entry_id},
            {"$set": {"status": "resolved", "resolved_at": self.clock.now(),
                      "resolved_by": by, "note": note}}, return_document=ReturnDocument.AFTER)
        if entry is None:
            raise NotFound(f"no attention entry {entry_id!r}", code="attention_not_found")
        return public(entry)


class Isolated:
    """See :meth:`Attention.isolate`. ``failed`` tells the caller whether it failed."""

    def __init__(self, attention: Attention, source: str, subject: str,
                 details: dict[str, Any]) -> None:
        self.attention, self.source, self.subject = attention, source, subject
        self.details = details
        self.failed = False

    async def __aenter__(self) -> Isolated:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> bool:
        if error is None or not isinstance(error, Exception):
            return False  # cancellation and exits pass through
        self.failed = True
        log.error("%s: %s failed, skipped; on the attention list", self.source, self.subject,
                  exc_info=(kind, error, tb))
        await self.attention.report(self.source, self.subject, error, **self.details)
        return True


def entry_id(source: str, subject: str) -> str:
    """A short, URL-safe id, the same each time one record fails in one place."""
    return "a" + hashlib.sha256(f"{source}\n{subject}".encode()).hexdigest()[:23]


def describe(error: BaseException) -> str:
    """``Type: message`` and the last frames, enough to find the cause."""
    frames = traceback.format_exception(type(error), error, error.__traceback__, limit=-4)
    return "".join(frames).strip()
