"""The price adjuster ``coupon``: ``"adjust": {"coupon": "CODE"}`` on an order (or on a
consultation request) takes the coupon off the price.

``adjust`` only reads the coupon and refuses what does not fit. ``reserve`` takes one
use inside the order's transaction with a guarded update of the coupon document: the
filter holds ``max_uses`` (``uses_left > 0``), ``per_user`` (fewer claims of this buyer
than allowed) and "not yet claimed by this owner", so 20 racing orders can never take a
sixth use of five, and a retried transaction cannot take two. ``release`` pulls the
owner's claim back, idempotently.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kpay.core.errors import BadRequest, Conflict, NotFound
from kpay.core.money.adjustments import Adjustment, PriceAdjuster, PriceTarget
from kpay_coupons import store
from kpay_coupons.store import CODE_PATTERN, describe, off_of

if TYPE_CHECKING:
    from kpay.core.app import KPay

FIELD = "adjust.coupon"


def parse_code(value: Any) -> str:
    """The code as the buyer typed it, upper-cased (codes are A-Z and digits)."""
    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or not re.fullmatch(CODE_PATTERN, code):
        raise BadRequest("a coupon code is 4 to 16 letters and digits", code="invalid_coupon",
                         field=FIELD)
    return code


def not_applicable(code: str, why: str) -> BadRequest:
    return BadRequest(f"coupon {code} {why}", code="coupon_not_applicable", field=FIELD)


def check_usable(coupon: dict[str, Any], now: datetime) -> None:
    """409 when the coupon cannot be taken by anyone any more."""
    code = coupon["_id"]
    if coupon["disabled"]:
        raise Conflict(f"coupon {code} is disabled", code="coupon_disabled", field=FIELD)
    if coupon["expires_at"] <= now:
        raise Conflict(f"coupon {code} has expired", code="coupon_expired", field=FIELD,
                       expires_at=coupon["expires_at"].isoformat())
    if coupon["uses_left"] <= 0:
        raise Conflict(f"coupon {code} is used up", code="coupon_used_up", field=FIELD)


def amount_off(coupon: dict[str, Any], target: PriceTarget) -> Adjustment:
    """The adjustment: fen off the order, or off every minute, or free minutes."""
    code = coupon["_id"]
    off, value = off_of(coupon)
    per_minute = target.unit == "minute"
    if per_minute and off == "off_fen":
        raise not_applicable(code, "takes an amount off an order, not off every minute")
    if not per_minute and off == "free_minutes":
        raise not_applicable(code, "gives free minutes of a consultation")
    label = f"优惠券 {code} {describe(coupon)}"
    ref = {"code": code}
    # The most one use takes off in all, whatever the rate or the number of minutes.
    cap = coupon.get("max_off_fen")
    if off == "free_minutes":
        return Adjustment(0, label, coupon["funded_by"], free_units=value, ref=ref,
                          max_total=cap)
    # Rounded down: the seller or the platform never pays a fen more than promised.
    fen = value if off == "off_fen" else target.amount * value // 100
    return Adjustment(min(fen, target.amount), label, coupon["funded_by"], ref=ref,
                      max_total=cap)


class CouponAdjuster(PriceAdjuster):
    name = "coupon"

    async def adjust(self, app: KPay, user_id: str, target: PriceTarget,
                     value: Any) -> Adjustment | None:
        if value is None:
            return None
        code = parse_code(value)
        coupon = await store.find(app, code)
        if coupon is None:
            raise NotFound(f"no coupon {code}", code="coupon_not_found", field=FIELD)
        check_usable(coupon, app.clock.now())
        if target.kind not in coupon["kinds"]:
            raise not_applicable(code, f"does not apply to {target.kind}")
        if coupon["seller"] is not None and target.seller != coupon["seller"]:
            raise not_applicable(code, "only applies to what its seller sells")
        if target.amount < coupon["min_amount"]:
            raise BadRequest(f"coupon {code} needs a price of at least "
                             f"{coupon['min_amount']} fen", code="coupon_min_amount",
                             field=FIELD, min_amount=coupon["min_amount"])
        return amount_off(coupon, target)

    async def reserve(self, app: KPay, owner: str, user_id: str, adjustment: dict[str, Any],
                      session: Any) -> None:
        code = adjustment["ref"]["code"]
        now = app.clock.now()
        if await store.claim(app, code, owner, user_id, now, session):
            return
        coupon = await store.find(app, code, claims=True, session=session)
        if coupon is None:
            raise NotFound(f"no coupon {code}", code="coupon_not_found", field=FIELD)
        if any(claim["owner"] == owner for claim in coupon["claims"]):
            return  # this owner's use is already taken
        check_usable(coupon, now)
        raise Conflict(f"you have used coupon {code} as often as it allows",
                       code="coupon_already_used", field=FIELD, per_user=coupon["per_user"])

    async def release(self, app: KPay, owner: str, adjustment: dict[str, Any]) -> None:
        await store.unclaim(app, adjustment["ref"]["code"], owner)
