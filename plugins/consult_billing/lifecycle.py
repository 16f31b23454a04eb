"""A consultation's life as its parties drive it: request, accept, decline, end."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError

from kpay.core.auth import User
from kpay.core.errors import ApiError, BadRequest, Conflict, Forbidden, InsufficientBalance
from kpay.core.ratelimit import enforce_cap
from plugins.consult_billing.charges import announce_charge, charge_minute, split
from plugins.consult_billing.pricing import check_adjust, minute_price, price_session
from plugins.consult_billing.profiles import get_profile
from plugins.consult_billing.sessions import (
    ACTIVE,
    CONSULTATIONS,
    ENDED,
    MINUTE,
    REQUESTED,
    channel_of,
    finish,
    load_for_party,
    party_of,
    presence,
    public,
)
from plugins.consult_billing.settings import settings_of

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def request(app: KPay, student: User, consultant_id: str,
                  adjust: dict[str, Any] | None = None) -> dict[str, Any]:
    """A student asks a consultant for a session at the consultant's current rate.
    ``adjust`` (``{"coupon": "CODE"}``) is checked now and priced again at accept, when
    the rate and its adjustments are fixed for the session."""
    adjust = check_adjust(app, adjust or {})
    if consultant_id == student.id:
        raise BadRequest("you cannot consult yourself", code="cannot_consult_self",
                         field="consultant_id")
    profile = await get_profile(app, consultant_id)
    if not profile["available"]:
        raise Conflict(f"{consultant_id} is not available", code="consultant_unavailable")
    if await app.store[CONSULTATIONS].find_one({"busy_consultant": consultant_id}, {"_id": 1}):
        raise Conflict(f"{consultant_id} is in another consultation", code="consultant_busy")
    await check_open_requests(app, student.id, consultant_id)
    rate, min_minutes = profile["rate_per_minute"], profile["min_minutes"]
    now = app.clock.now()
    doc = {"_id": "c" + secrets.token_hex(10), "student_id": student.id,
           "consultant_id": consultant_id, "rate_per_minute": rate,
           "credits": [list(c) for c in app.money.earnings_credits(rate, consultant_id)],
           "adjust": adjust}
    # What the adjusters would give now (a bad code is refused here, not at accept).
    doc["adjustments"] = await price_session(app, doc)
    needed = sum(minute_price(doc, m)[0] for m in range(1, min_minutes + 1))
    wallet = await app.money.ledger.wallet(student.id)
    if wallet["available"] < needed:
        raise InsufficientBalance(needed=needed, balance=wallet["available"],
                                  message=f"{min_minutes} minute(s) at {rate} fen need "
                                          f"{needed} fen; the wallet has {wallet['available']}")
    settings = settings_of(app)
    doc = {
        "_id": doc["_id"], "student_id": student.id,
        "consultant_id": consultant_id, "status": REQUESTED, "rev": 0, "minute": 0,
        "rate_per_minute": rate, "min_minutes": min_minutes, "adjust": adjust,
        "max_minutes": profile["max_minutes"],
        "requested_at": now, "updated_at": now,
        "expires_at": now + timedelta(seconds=settings.request_timeout_seconds),
        "present_on": {"student": [], "consultant": []},
        "absent_since": None, "paused_at": None, "remaining_seconds": None,
    }
    doc["next_charge_at"] = doc["expires_at"]
    await app.store[CONSULTATIONS].insert_one(doc)
    # consultation for the console page; the two ids for forwarders (template messages).
    await app.tell_user(consultant_id, "consult_request",
                        {"consultation": public(doc), "consultation_id": doc["_id"],
                         "student_id": student.id})
    return doc


async def check_open_requests(app: KPay, student_id: str, consultant_id: str) -> None:
    """409 too_many_open when the student has ``max_open_requests_per_student``
    unanswered requests, or the consultant ``max_waiting_requests_per_consultant``
    waiting (expired ones, which the engine ends, do not count)."""
    settings = settings_of(app)
    waiting = {"status": REQUESTED, "expires_at": {"$gt": app.clock.now()}}
    collection = app.store[CONSULTATIONS]
    limit = settings.max_open_requests_per_student
    await enforce_cap(collection, {"student_id": student_id, **waiting}, limit,
                      "consult_requests",
                      f"you have {limit} unanswered requests; wait for an answer or "
                      "cancel one")
    limit = settings.max_waiting_requests_per_consultant
    await enforce_cap(collection, {"consultant_id": consultant_id, **waiting}, limit,
                      "consultant_requests",
                      f"{consultant_id} has {limit} requests waiting; try again later")


async def open_request(app: KPay, user: User, consultation_id: str, action: str
                       ) -> dict[str, Any]:
    """The consultation, if it is a request still open and ``user`` the consultant asked."""
    doc = await load_for_party(app, user, consultation_id)
    if user.id != doc["consultant_id"]:
        raise Forbidden(f"only the consultant asked can {action}", code="not_your_request")
    if doc["status"] != REQUESTED:
        raise Conflict(f"the consultation is {doc['status']}, not requested",
                       code="not_requested", state=doc["status"])
    return doc


async def accept(app: KPay, user: User, consultation_id: str) -> dict[str, Any]:
    """The consultant accepts: minute 1 is charged at once and the meter starts."""
    for _ in range(5):
        doc = await open_request(app, user, consultation_id, "accept")
        now = app.clock.now()
        if doc["expires_at"] <= now:
            await finish(app, doc, "expired", doc["expires_at"])
            raise Conflict("the request has expired", code="request_expired")
        credits, earned, fee = split(app, doc)
        present = presence(doc)
        changes = {
            "status": ACTIVE, "minute": 1, "accepted_at": now, "paid_until": now + MINUTE,
            "credits": [list(c) for c in credits], "earned_per_minute": earned,
            "fee_per_minute": fee, "busy_consultant": doc["consultant_id"],
            # Parties normally join consult:<id> before accepting; one who has not yet
            # joined has the grace period to do so.
            "absent_since": None if all(present.values()) else now,
        }
        try:
            # The adjustments are priced for good now (a coupon may have expired since
            # the request) and reserved in minute 1's transaction.
            changes["adjustments"] = await price_adjustments(app, {**doc, **changes})
            new = await charge_minute(app, doc, changes,
                                      reserve=reservation(app, doc, changes["adjustments"]))
        except AdjustmentRefused as e:
            await finish(app, doc, "adjustment_refused", now)
            raise Conflict(f"the request's price adjustment was refused: {e.error.message}",
                           code="adjustment_refused", reason=e.error.code) from None
        except InsufficientBalance:
            await finish(app, doc, "funds_exhausted", now)
            raise Conflict("the student's wallet cannot pay the first minute",
                           code="funds_exhausted") from None
        except DuplicateKeyError as e:
            if "busy_consultant" in str(e):
                raise Conflict("you are in another consultation; end it first",
                               code="consultant_busy") from None
            raise
        if new is not None:
            await app.publish(channel_of(consultation_id), "accepted",
                              {"consultation": public(new)})
            await app.tell_user(new["student_id"], "consult_accepted",
                                {"consultation_id": consultation_id,
                                 "consultant_id": new["consultant_id"]})
            await announce_charge(app, new)
            return new
        # Changed since it was read (a party joined or left): decide again.
    raise Conflict("the consultation keeps changing; retry", code="retry")


async def price_adjustments(app: KPay, doc: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return await price_session(app, doc)
    except ApiError as e:
        raise AdjustmentRefused(e) from e


class AdjustmentRefused(Exception):
    """A price adjuster refused at accept (the coupon ran out or expired meanwhile)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def reservation(app: KPay, doc: dict[str, Any], adjustments: list[dict[str, Any]]
                ) -> Callable[[Any], Awaitable[None]] | None:
    """The adjusters' reservations for minute 1's transaction, if there are any."""
    if not adjustments:
        return None

    async def reserve(session: Any) -> None:
        try:
            await app.money.adjustments.reserve(f"consultation:{doc['_id']}",
                                                doc["student_id"], adjustments, session)
        except ApiError as e:
            raise AdjustmentRefused(e) from e

    return reserve


async def end_by(app: KPay, user: User, consultation_id: str) -> dict[str, Any]:
    """Either party ends (or, before accept, cancels / declines) the consultation."""
    for _ in range(5):
        doc = await load_for_party(app, user, consultation_id)
        party = party_of(doc, user.id)
        if party is None:
            raise Forbidden("only the two parties can end a consultation", code="forbidden")
        if doc["status"] == ENDED:
            raise Conflict("the consultation has already ended", code="already_ended",
                           reason=doc.get("end_reason"))
        if doc["status"] == REQUESTED:
            reason = "cancelled" if party == "student" else "declined"
        else:
            reason = f"ended_by_{party}"
        ended = await finish(app, doc, reason, app.clock.now())
        if ended is not None:
            return ended
    raise Conflict("the consultation keeps changing; retry", code="retry")


async def decline(app: KPay, user: User, consultation_id: str) -> dict[str, Any]:
    doc = await open_request(app, user, consultation_id, "decline")
    ended = await finish(app, doc, "declined", app.clock.now())
    if ended is None:
        raise Conflict("the consultation changed; reload it", code="not_requested")
    return ended
