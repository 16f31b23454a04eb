"""Consultation minutes on a seller's dashboard (hook ``analytics_sections``,
docs/plugins.md; docs/analytics.md): the minutes billed in consultations requested in
the range, and how many consultations; one aggregation on the
``(consultant_id, requested_at)`` index."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugins.consult_billing.sessions import CONSULTATIONS

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def minutes_section(app: KPay, owner_id: str | None, start: datetime,
                          end: datetime) -> list[dict[str, Any]] | None:
    match: dict[str, Any] = {"requested_at": {"$gte": start, "$lt": end}}
    if owner_id is not None:
        match["consultant_id"] = owner_id
    rows = [row async for row in await app.store[CONSULTATIONS].aggregate([
        {"$match": match},
        {"$group": {"_id": None, "count": {"$sum": 1},
                    "minutes": {"$sum": {"$ifNull": ["$minute", 0]}}}}])]
    if not rows or not rows[0]["count"]:
        return None
    return [{"key": "consult_minutes", "title": "咨询", "unit": "minutes",
             "items": [{"label": "计费分钟", "value": int(rows[0]["minutes"]),
                        "note": f"{rows[0]['count']} 次咨询"}]}]
