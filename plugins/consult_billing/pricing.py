"""What each minute of a consultation costs once price adjustments apply.

The consultant's rate and its split are fixed at accept; so are the adjustments the
core's price adjusters gave then (a coupon: 20% off every minute, or N free minutes),
stored on the session as ``adjustments``. Minute ``m`` costs what
``kpay.core.money.adjustments.adjusted_credits`` says for unit ``m``; a session without
adjustments costs the rate every minute, as before (docs/consult_billing.md, "Coupons
and discounts").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kpay.core.errors import BadRequest
from kpay.core.money import accounts
from kpay.core.money.adjustments import PriceTarget, adjusted_credits

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: The JSON of a request's ``adjust`` is kept on the session until accept: bounded.
ADJUST_BYTES = 1024


def check_adjust(app: KPay, adjust: dict[str, Any]) -> dict[str, Any]:
    """400 for an adjustment nobody provides, or one too big to keep."""
    app.money.adjustments.check_requested(adjust)
    if len(json.dumps(adjust, default=str)) > ADJUST_BYTES:
        raise BadRequest(f"adjust is at most {ADJUST_BYTES} bytes of JSON",
                         code="invalid_field", field="adjust")
    return adjust


async def price_session(app: KPay, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Ask the price adjusters about this session's per-minute rate (nothing reserved)."""
    target = PriceTarget("consultation", {"consultant_id": doc["consultant_id"]},
                         doc["rate_per_minute"], seller=doc["consultant_id"], unit="minute")
    return await app.money.adjustments.price(doc["student_id"], target, doc.get("adjust") or {})


def minute_price(doc: dict[str, Any], minute: int,
                 adjustments: list[dict[str, Any]] | None = None
                 ) -> tuple[int, list[tuple[str, int]]]:
    """What the student pays for ``minute`` and the credits posted with it."""
    credits = [(account, value) for account, value in doc["credits"]]
    found = doc.get("adjustments", []) if adjustments is None else adjustments
    return adjusted_credits(credits, doc["rate_per_minute"], found, unit=minute)


def spans(doc: dict[str, Any], minutes: int) -> list[tuple[int, int]]:
    """Minutes 1..``minutes`` as ``(first minute, count)`` runs of one price each: the
    price only changes where a run of free minutes ends."""
    edges = sorted({a.get("free_units", 0) for a in doc.get("adjustments", [])} | {0})
    runs = []
    for i, start in enumerate(edges):
        end = min(edges[i + 1] if i + 1 < len(edges) else minutes, minutes)
        if end > start:
            runs.append((start + 1, end - start))
    return runs


def totals(doc: dict[str, Any]) -> dict[str, int]:
    """Money of the session so far: charged to the student, earned by the consultant,
    the platform's fee, and what price adjustments took off."""
    minutes = doc.get("minute", 0)
    if not doc.get("adjustments"):
        return {"billed_minutes": minutes, "charged": minutes * doc["rate_per_minute"],
                "consultant_earned": minutes * doc.get("earned_per_minute", 0),
                "platform_fee": minutes * doc.get("fee_per_minute", 0), "discount": 0}
    charged = earned = fee = 0
    capped = any(a.get("max_total") is not None for a in doc["adjustments"])
    # A capped adjustment changes the price where its cap runs out: price each minute
    # (at most [consult_billing] max_minutes_per_session of them).
    runs = [(m, 1) for m in range(1, minutes + 1)] if capped else spans(doc, minutes)
    for first, count in runs:
        paid, credits = minute_price(doc, first)
        charged += paid * count
        earned += count * sum(v for a, v in credits if accounts.kind_of(a) == "earnings")
        fee += count * sum(v for a, v in credits if a == accounts.PLATFORM_REVENUE)
    return {"billed_minutes": minutes, "charged": charged, "consultant_earned": earned,
            "platform_fee": fee, "discount": minutes * doc["rate_per_minute"] - charged}


def affordable_minutes(doc: dict[str, Any], available: int, limit: int) -> int:
    """How many of the next ``limit`` minutes ``available`` fen pay for."""
    if not doc.get("adjustments"):
        return min(limit, available // doc["rate_per_minute"])
    count = 0
    for minute in range(doc.get("minute", 0) + 1, doc.get("minute", 0) + 1 + limit):
        price = minute_price(doc, minute)[0]
        if price > available:
            break
        available -= price
        count += 1
    return count
