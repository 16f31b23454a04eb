"""The audit log: who did what to whom, when, from where, and why.

Every operator action that changes someone else's standing or money is recorded here
before it is answered: role changes, blocks and unblocks, logging a user out
everywhere, resolving a needs-attention entry (and, as they come, refunds and payout
approvals). Records are only ever inserted. Admins read them through
``GET /api/v1/admin/audit`` or ``kpay audit``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import DESCENDING

from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.clock import Clock
    from kpay.core.store import Store

AUDIT = "audit_log"
INDEXES = [IndexSpec.of(AUDIT, ("at", DESCENDING)),
           IndexSpec.of(AUDIT, "target", ("at", DESCENDING)),
           IndexSpec.of(AUDIT, "actor", ("at", DESCENDING))]
MAX_REASON = 500


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["_id"], "at": record["at"].isoformat(), "actor": record["actor"],
            "action": record["action"], "target": record["target"],
            "reason": record.get("reason", ""), "source": record.get("source", ""),
            "details": record.get("details", {})}


class AuditLog:
    """``app.audit``."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock

    @property
    def collection(self) -> Any:
        return self.store[AUDIT]

    async def record(self, actor: str, action: str, target: str, *, reason: str = "",
                     source: str = "", **details: Any) -> dict[str, Any]:
        """Append one record. ``actor``: a user id or ``cli:<name>``; ``action``: e.g.
        ``user.role``; ``target``: e.g. ``user:alice``; ``source``: the client IP or
        ``cli``."""
        record = {"_id": "au" + uuid.uuid4().hex[:22], "at": self.clock.now(),
                  "actor": actor, "action": action, "target": target,
                  "reason": reason[:MAX_REASON], "source": source, "details": details}
        await self.collection.insert_one(record)
        return public(record)

    async def list(self, *, actor: str | None = None, target: str | None = None,
                   action: str | None = None, limit: int = 50,
                   before: datetime | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {k: v for k, v in
                                 (("actor", actor), ("target", target), ("action", action))
                                 if v}
        if before is not None:
            query["at"] = {"$lt": before}
        cursor = self.collection.find(query).sort("at", DESCENDING).limit(limit)
        return [public(r) async for r in cursor]
