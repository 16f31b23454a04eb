"""The coupons collection: what a coupon is, creating, listing and disabling them,
and what a buyer sees of one.

A coupon takes off exactly one of: ``off_fen`` (a fixed amount of an order),
``off_percent`` (of an order, or of every minute of a consultation) or
``free_minutes`` (the first minutes of a consultation). A seller's coupon is funded by
the seller and applies only to what that seller sells; an admin's may be funded by the
platform and apply to anything.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from kpay.core.auth import User
from kpay.core.errors import BadRequest, Conflict, Forbidden, NotFound
from kpay.core.ratelimit import enforce_cap
from kpay.core.store import IndexSpec
from kpay_coupons.settings import settings_of

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: The only collection this plugin reads or writes: one document per coupon, ``_id``
#: its code, its uses kept on it (``uses_left`` and ``claims``).
COUPONS = "coupons"

CODE_PATTERN = r"^[A-Z0-9]{4,16}$"
#: A consultation is priced per minute under this kind (docs/money.md, "Price
#: adjustments"); every other kind is an order.
CONSULTATION = "consultation"
ORDER_KINDS = ("live_ticket", "course")
MAX_FEN = 10_000_000  # 100,000.00 yuan: above any price a seller may set
MAX_FREE_MINUTES = 600
MAX_PER_USER = 100
MAX_KINDS = 8

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


def bounded(low: int, high: int) -> Any:
    """A strict integer (no "5" or 5.0) within [low, high]."""
    return Field(strict=True, ge=low, le=high)


class CouponCreate(BaseModel):
    """``POST /api/v1/coupons``: exactly one of ``off_fen``, ``off_percent``,
    ``free_minutes``."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    off_fen: Annotated[int, bounded(1, MAX_FEN)] | None = None
    off_percent: Annotated[int, bounded(1, 100)] | None = None
    free_minutes: Annotated[int, bounded(1, MAX_FREE_MINUTES)] | None = None
    min_amount: Annotated[int, bounded(0, MAX_FEN)] = 0
    expires_at: AwareDatetime
    max_uses: Annotated[int, Field(strict=True, ge=1)]
    per_user: Annotated[int, bounded(1, MAX_PER_USER)] = 1
    funded_by: Literal["seller", "platform"] = "seller"
    #: The most one use takes off in all (the order, or the whole consultation). Required
    #: for a platform coupon: it is money the platform gives away.
    max_off_fen: Annotated[int, bounded(1, MAX_FEN)] | None = None
    kinds: Annotated[list[Kind], Field(min_length=1, max_length=MAX_KINDS)] | None = None


def off_of(coupon: CouponCreate | dict[str, Any]) -> tuple[str, int]:
    """``(field, value)`` of the one thing the coupon takes off."""
    values = coupon if isinstance(coupon, dict) else coupon.model_dump()
    given = [(name, values[name]) for name in ("off_fen", "off_percent", "free_minutes")
             if values.get(name) is not None]
    return given[0] if len(given) == 1 else ("", 0)


def kinds_for(off: str, kinds: list[str] | None) -> list[str]:
    """The kinds a coupon applies to: fixed fen only to orders, free minutes only to
    consultations, a percentage to both. 400 when the asked kinds do not fit."""
    fits = {"off_fen": ORDER_KINDS, "free_minutes": (CONSULTATION,),
            "off_percent": (*ORDER_KINDS, CONSULTATION)}[off]
    if kinds is None:
        return list(fits)
    for kind in kinds:
        # Fen off an order is fen off the whole price, not off every minute.
        if (kind == CONSULTATION) != (off == "free_minutes") and off != "off_percent":
            raise BadRequest(f"{off} does not apply to {kind}", code="invalid_field",
                             field="kinds")
    return sorted(set(kinds))


def check_create(app: KPay, user: User, wanted: CouponCreate, now: datetime) -> None:
    """What the model alone cannot check: one thing off, the settings' bounds, who
    may fund."""
    if not off_of(wanted)[0]:
        raise BadRequest("give exactly one of off_fen, off_percent, free_minutes",
                         code="invalid_field", field="off_fen")
    config = settings_of(app)
    if wanted.max_uses > config.max_uses:
        raise BadRequest(f"max_uses must be at most {config.max_uses}", code="invalid_field",
                         field="max_uses")
    if not now < wanted.expires_at <= now + timedelta(days=config.max_valid_days):
        raise BadRequest(f"expires_at must lie within the next {config.max_valid_days} days",
                         code="invalid_field", field="expires_at")
    if wanted.funded_by == "platform" and user.role != "admin":
        raise Forbidden("only an admin may create a platform-funded coupon",
                        code="admin_only", field="funded_by")
    if wanted.funded_by == "platform":
        # Without a cap, a seller buying their own goods from a second account with a
        # platform coupon is paid by the platform: at most this much per use.
        most = config.max_platform_off_fen
        if wanted.max_off_fen is None or wanted.max_off_fen > most:
            raise BadRequest(f"a platform coupon needs max_off_fen of at most {most} fen",
                             code="invalid_field", field="max_off_fen", max=most)


async def create(app: KPay, user: User, wanted: CouponCreate) -> dict[str, Any]:
    now = app.clock.now()
    check_create(app, user, wanted, now)
    off, value = off_of(wanted)
    kinds = kinds_for(off, wanted.kinds)
    cap = settings_of(app).max_active_per_seller
    await enforce_cap(app.store[COUPONS], active_of(user.id, now), cap, "active_coupons",
                      f"you have {cap} active coupons; disable one or wait until one expires")
    coupon = {
        "_id": wanted.code, "created_by": user.id,
        # A platform coupon sells nobody's goods in particular; a seller's only its own.
        "seller": None if wanted.funded_by == "platform" else user.id,
        "funded_by": wanted.funded_by, "off_fen": None, "off_percent": None,
        "free_minutes": None, off: value, "min_amount": wanted.min_amount,
        "expires_at": wanted.expires_at, "max_uses": wanted.max_uses,
        "per_user": wanted.per_user, "kinds": kinds, "max_off_fen": wanted.max_off_fen,
        "disabled": False, "created_at": now,
        "uses_left": wanted.max_uses, "claims": [],
    }
    try:
        await app.store[COUPONS].insert_one(coupon)
    except DuplicateKeyError:
        raise Conflict(f"the code {wanted.code} is taken", code="coupon_code_taken",
                       field="code") from None
    return coupon


def indexes() -> list[IndexSpec]:
    # "My coupons", newest first, and the count of a seller's active ones.
    return [IndexSpec.of(COUPONS, "created_by", ("created_at", -1))]


def active_of(user_id: str, now: datetime) -> dict[str, Any]:
    return {"created_by": user_id, "disabled": False, "expires_at": {"$gt": now}}


async def listing(app: KPay, user: User, limit: int) -> list[dict[str, Any]]:
    """The caller's coupons, newest first."""
    cursor = app.store[COUPONS].find({"created_by": user.id}, {"claims": 0}) \
        .sort("created_at", -1).limit(limit)
    return [public(coupon) async for coupon in cursor]


async def disable(app: KPay, user: User, code: str) -> dict[str, Any]:
    """Disable a coupon (its creator or an admin), idempotently. Uses already taken
    stay taken; a released one comes back but cannot be taken again."""
    owned = {} if user.role == "admin" else {"created_by": user.id}
    coupon = await app.store[COUPONS].find_one_and_update(
        {"_id": code, **owned}, {"$set": {"disabled": True}}, {"claims": 0},
        return_document=ReturnDocument.AFTER)
    if coupon is None:
        raise NotFound(f"no coupon {code} of yours", code="coupon_not_found")
    return coupon


async def find(app: KPay, code: str, claims: bool = False,
               session: Any = None) -> dict[str, Any] | None:
    """The coupon, without its (long) list of claims unless asked for."""
    return await app.store[COUPONS].find_one({"_id": code}, None if claims else {"claims": 0},
                                             session=session)


async def claim(app: KPay, code: str, owner: str, user_id: str, now: datetime,
                session: Any) -> bool:
    """Take one use for ``owner`` in one guarded update: the filter holds every limit at
    once (not disabled, not expired, a use left, fewer claims of this buyer than
    ``per_user``, none yet of this owner), so racing claims can never overdraw it.
    False when the filter did not match (the caller finds out why)."""
    mine = {"$filter": {"input": "$claims", "as": "claim",
                        # $literal: a user id starting with "$" is not a field path.
                        "cond": {"$eq": ["$$claim.user", {"$literal": user_id}]}}}
    taken = await app.store[COUPONS].update_one(
        {"_id": code, "disabled": False, "expires_at": {"$gt": now},
         "uses_left": {"$gt": 0}, "claims.owner": {"$ne": owner},
         "$expr": {"$lt": [{"$size": mine}, "$per_user"]}},
        {"$push": {"claims": {"owner": owner, "user": user_id, "at": now}},
         "$inc": {"uses_left": -1}}, session=session)
    return taken.matched_count == 1


async def unclaim(app: KPay, code: str, owner: str) -> None:
    """Give ``owner``'s use back. Guarded by the claim itself: a second call finds none
    and changes nothing."""
    await app.store[COUPONS].update_one(
        {"_id": code, "claims.owner": owner},
        {"$pull": {"claims": {"owner": owner}}, "$inc": {"uses_left": 1}})


def describe(coupon: dict[str, Any]) -> str:
    """What a buyer reads: 减 5.00 元, 8 折, 8.5 折, 免费 3 分钟."""
    off, value = off_of(coupon)
    if off == "off_fen":
        return f"减 {value / 100:.2f} 元"
    if off == "free_minutes":
        return f"免费 {value} 分钟"
    pays = 100 - value
    if pays == 0:
        return "免费"
    return f"{pays // 10} 折" if pays % 10 == 0 else f"{pays / 10:g} 折"


def public(coupon: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": coupon["_id"], "created_by": coupon["created_by"], "seller": coupon["seller"],
        "funded_by": coupon["funded_by"], "off_fen": coupon["off_fen"],
        "off_percent": coupon["off_percent"], "free_minutes": coupon["free_minutes"],
        "label": describe(coupon), "min_amount": coupon["min_amount"],
        "expires_at": coupon["expires_at"], "max_uses": coupon["max_uses"],
        "used": coupon["max_uses"] - coupon["uses_left"], "per_user": coupon["per_user"],
        "kinds": coupon["kinds"], "max_off_fen": coupon.get("max_off_fen"),
        "disabled": coupon["disabled"],
        "created_at": coupon["created_at"],
    }
