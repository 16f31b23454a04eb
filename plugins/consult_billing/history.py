"""Past consultations of a party, and the receipt of one session from the ledger."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from kpay.core.money.adjustments import public_adjustments
from plugins.consult_billing import sessions

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def history(app: KPay, user_id: str, role: str, limit: int) -> list[dict[str, Any]]:
    """Newest first; ``role`` says whether ``user_id`` is the student or the consultant."""
    field = "student_id" if role == "student" else "consultant_id"
    cursor = app.store[sessions.CONSULTATIONS].find({field: user_id}).sort(
        "requested_at", -1).limit(limit)
    return [sessions.public(doc) async for doc in cursor]


async def receipt(app: KPay, doc: dict[str, Any]) -> dict[str, Any]:
    """Every minute as the ledger booked it, with the totals; the two must agree."""
    prefix = "^" + re.escape(sessions.minute_key(doc["_id"], 0)[:-1])
    minutes = []
    async for entry in app.money.ledger.entries.find({"_id": {"$regex": prefix}}):
        student_side = sum(p["amount"] for p in entry["postings"]
                           if p["account"] == f"wallet:{doc['student_id']}")
        minutes.append({"minute": entry["meta"]["minute"], "key": entry["_id"],
                        "amount": -student_side, "charged_at": entry["created_at"]})
    # A minute free to everyone (a seller-funded free minute) has no ledger entry.
    booked = {m["minute"] for m in minutes}
    minutes += [{"minute": m, "key": None, "amount": 0, "charged_at": None}
                for m in range(1, doc.get("minute", 0) + 1) if m not in booked]
    minutes.sort(key=lambda m: m["minute"])
    return {"consultation_id": doc["_id"], "student_id": doc["student_id"],
            "consultant_id": doc["consultant_id"], "status": doc["status"],
            "rate_per_minute": doc["rate_per_minute"], **sessions.totals(doc),
            "adjustments": public_adjustments(doc.get("adjustments", [])),
            "booked": sum(m["amount"] for m in minutes),
            "accepted_at": doc.get("accepted_at"), "ended_at": doc.get("ended_at"),
            "end_reason": doc.get("end_reason"), "minutes": minutes}
