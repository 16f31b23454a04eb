"""Consultation documents and their state machine (see docs/consult_billing.md).

    requested -> active <-> paused -> ended
    requested -> ended   (declined, cancelled, expired, funds_exhausted at accept)

Every state change is an update guarded on ``status`` and ``rev`` (a counter bumped by
each change), so two writers racing on one session (two engine runs, an end request and
the engine) never both win. A minute's charge is one MongoDB transaction holding the
guarded session update and the ledger transaction ``consult:<id>:<minute>``: the minute
counter and the money move together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from kpay.core.auth import User
from kpay.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientBalance,
    NotFound,
)
from kpay.core.money import accounts
from kpay.core.store import IndexSpec
from plugins.consult_billing.profiles import get_profile

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.consult_billing")

CONSULTATIONS = "consultations"
REQUESTED, ACTIVE, PAUSED, ENDED = "requested", "active", "paused", "ended"
OPEN = (REQUESTED, ACTIVE, PAUSED)
PARTIES = ("student", "consultant")
MINUTE = timedelta(seconds=60)

INDEXES = [
    # The engine's sweep: open sessions whose next_charge_at has come.
    IndexSpec.of(CONSULTATIONS, "status", "next_charge_at"),
    IndexSpec.of(CONSULTATIONS, "student_id", ("requested_at", -1)),
    IndexSpec.of(CONSULTATIONS, "consultant_id", ("requested_at", -1)),
    # A consultant is in at most one running session: the field exists only while
    # the session is active or paused, and is unique.
    IndexSpec.of(CONSULTATIONS, "busy_consultant", unique=True, sparse=True),
]


def channel_of(consultation_id: str) -> str:
    return f"consult:{consultation_id}"


def minute_key(consultation_id: str, minute: int) -> str:
    """The ledger idempotency key of one minute: the final guard against a double charge."""
    return f"consult:{consultation_id}:{minute}"


# -- reading ---------------------------------------------------------------------------


def totals(doc: dict[str, Any]) -> dict[str, int]:
    """Money of the session so far. The rate and its split are fixed at accept, so every
    minute moved the same postings: the totals are the minute count times the split."""
    minutes = doc.get("minute", 0)
    return {"billed_minutes": minutes, "charged": minutes * doc["rate_per_minute"],
            "consultant_earned": minutes * doc.get("earned_per_minute", 0),
            "platform_fee": minutes * doc.get("fee_per_minute", 0)}


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The consultation as the API shows it to its two parties."""
    return {
        "id": doc["_id"], "status": doc["status"], "student_id": doc["student_id"],
        "consultant_id": doc["consultant_id"], "rate_per_minute": doc["rate_per_minute"],
        "min_minutes": doc["min_minutes"], "max_minutes": doc["max_minutes"],
        **totals(doc),
        "requested_at": doc["requested_at"], "expires_at": doc["expires_at"],
        "accepted_at": doc.get("accepted_at"), "paid_until": doc.get("paid_until"),
        "present": doc.get("present", {}), "absent_since": doc.get("absent_since"),
        "paused_at": doc.get("paused_at"), "remaining_seconds": doc.get("remaining_seconds"),
        "ended_at": doc.get("ended_at"), "end_reason": doc.get("end_reason"),
    }


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {**totals(doc), "rate_per_minute": doc["rate_per_minute"],
            "accepted_at": doc.get("accepted_at"), "ended_at": doc.get("ended_at")}


def party_of(doc: dict[str, Any], user_id: str) -> str | None:
    if user_id == doc["student_id"]:
        return "student"
    if user_id == doc["consultant_id"]:
        return "consultant"
    return None


async def load(app: KPay, consultation_id: str) -> dict[str, Any] | None:
    return await app.store[CONSULTATIONS].find_one({"_id": consultation_id})


async def load_for_party(app: KPay, user: User, consultation_id: str) -> dict[str, Any]:
    """The consultation, if ``user`` is one of its parties (or an admin); others get 404,
    as if it did not exist."""
    doc = await load(app, consultation_id)
    if doc is None or (party_of(doc, user.id) is None and user.role != "admin"):
        raise NotFound(f"no consultation {consultation_id}", code="consultation_not_found")
    return doc


# -- the engine's clock ------------------------------------------------------------------


def wake_time(doc: dict[str, Any], grace: timedelta) -> datetime | None:
    """When the engine must next look at the session (the indexed ``next_charge_at``)."""
    status = doc["status"]
    if status == REQUESTED:
        return doc["expires_at"]
    if status == ACTIVE:
        absent = doc.get("absent_since")
        if absent is not None and doc["paid_until"] > absent:
            # The next minute waits while someone is away; decide when the grace ends.
            return absent + grace
        return doc["paid_until"]
    if status == PAUSED:
        return doc["absent_deadline"]
    return None


def guarded(doc: dict[str, Any]) -> dict[str, Any]:
    """The filter that matches the session only in the state ``doc`` was read in."""
    return {"_id": doc["_id"], "status": doc["status"], "rev": doc["rev"],
            "minute": doc["minute"]}


async def write_state(app: KPay, doc: dict[str, Any], changes: dict[str, Any],
                      session: AsyncClientSession | None = None) -> dict[str, Any] | None:
    """Apply ``changes`` if the session is still as ``doc`` shows; the new document, or
    None when another writer changed it first."""
    grace = timedelta(seconds=app.settings.consult_billing.grace_seconds)
    new = {**doc, **changes, "rev": doc["rev"] + 1, "updated_at": app.clock.now()}
    new["next_charge_at"] = wake_time(new, grace)
    sets = {k: new[k] for k in (*changes, "next_charge_at", "updated_at")}
    update: dict[str, Any] = {"$set": sets, "$inc": {"rev": 1}}
    if new["status"] not in (ACTIVE, PAUSED) and "busy_consultant" in doc:
        update["$unset"] = {"busy_consultant": ""}
        new.pop("busy_consultant", None)
    result = await app.store[CONSULTATIONS].update_one(guarded(doc), update, session=session)
    return new if result.matched_count else None


# -- request, accept, end ------------------------------------------------------------------


async def request(app: KPay, student: User, consultant_id: str) -> dict[str, Any]:
    """A student asks a consultant for a session at the consultant's current rate."""
    if consultant_id == student.id:
        raise BadRequest("you cannot consult yourself", code="cannot_consult_self",
                         field="consultant_id")
    profile = await get_profile(app, consultant_id)
    if not profile["available"]:
        raise Conflict(f"{consultant_id} is not available", code="consultant_unavailable")
    if await app.store[CONSULTATIONS].find_one({"busy_consultant": consultant_id}, {"_id": 1}):
        raise Conflict(f"{consultant_id} is in another consultation", code="consultant_busy")
    rate, min_minutes = profile["rate_per_minute"], profile["min_minutes"]
    needed = rate * min_minutes
    wallet = await app.money.ledger.wallet(student.id)
    if wallet["available"] < needed:
        raise InsufficientBalance(needed=needed, balance=wallet["available"],
                                  message=f"{min_minutes} minute(s) at {rate} fen need "
                                          f"{needed} fen; the wallet has {wallet['available']}")
    now = app.clock.now()
    settings = app.settings.consult_billing
    doc = {
        "_id": "c" + secrets.token_hex(10), "student_id": student.id,
        "consultant_id": consultant_id, "status": REQUESTED, "rev": 0, "minute": 0,
        "rate_per_minute": rate, "min_minutes": min_minutes,
        "max_minutes": profile["max_minutes"],
        "requested_at": now, "updated_at": now,
        "expires_at": now + timedelta(seconds=settings.request_timeout_seconds),
        "present": {"student": False, "consultant": False},
        "absent_since": None, "paused_at": None, "remaining_seconds": None,
    }
    doc["next_charge_at"] = doc["expires_at"]
    await app.store[CONSULTATIONS].insert_one(doc)
    await app.publish(f"user:{consultant_id}", "consult_request", {"consultation": public(doc)})
    await app.notify("on_user_notification", user_id=consultant_id, kind="consult_request",
                     data={"consultation_id": doc["_id"], "student_id": student.id})
    return doc


def split(app: KPay, doc: dict[str, Any]) -> tuple[list[tuple[str, int]], int, int]:
    """The credits of one minute and how they divide (earned, fee), fixed at accept."""
    rate = doc["rate_per_minute"]
    credits = app.money.earnings_credits(rate, doc["consultant_id"])
    earned = sum(v for a, v in credits if accounts.kind_of(a) == "earnings")
    fee = rate - earned
    if sum(v for _, v in credits) != rate:
        raise ValueError("earnings credits do not sum to the rate")
    return credits, earned, fee


async def charge_minute(app: KPay, doc: dict[str, Any], changes: dict[str, Any]
                        ) -> dict[str, Any] | None:
    """Charge minute ``changes["minute"]`` and apply ``changes`` in one transaction.

    None when the session changed under us (another engine run charged it first).
    Raises InsufficientBalance when the wallet cannot pay (nothing is written).
    """
    minute = changes["minute"]
    rate = doc["rate_per_minute"]
    credits = [(a, v) for a, v in changes.get("credits", doc.get("credits", []))]
    postings = [(accounts.wallet(doc["student_id"]), -rate), *credits]

    async def step(session: AsyncClientSession) -> dict[str, Any] | None:
        new = await write_state(app, doc, changes, session=session)
        if new is None:
            return None
        await app.money.ledger.post(
            minute_key(doc["_id"], minute), postings, f"咨询第 {minute} 分钟",
            {"consultation_id": doc["_id"], "minute": minute}, session=session)
        return new

    # Every minute also credits platform:revenue, so concurrent charge transactions
    # conflict on that one account and retry (bench/billing.py measured ~5 aborted
    # attempts per minute at 16 at once). One node runs them one at a time; the wallet
    # reads and events around them stay concurrent. Other nodes still race, safely.
    async with ledger_lock(app):
        return await app.store.transaction(step)


_ledger_locks: WeakKeyDictionary = WeakKeyDictionary()


def ledger_lock(app: KPay) -> asyncio.Lock:
    if app not in _ledger_locks:
        _ledger_locks[app] = asyncio.Lock()
    return _ledger_locks[app]


async def accept(app: KPay, user: User, consultation_id: str) -> dict[str, Any]:
    """The consultant accepts: minute 1 is charged at once and the meter starts."""
    doc = await load_for_party(app, user, consultation_id)
    if user.id != doc["consultant_id"]:
        raise Forbidden("only the consultant asked can accept", code="not_your_request")
    if doc["status"] != REQUESTED:
        raise Conflict(f"the consultation is {doc['status']}, not requested",
                       code="not_requested", state=doc["status"])
    now = app.clock.now()
    if doc["expires_at"] <= now:
        await finish(app, doc, "expired", doc["expires_at"])
        raise Conflict("the request has expired", code="request_expired")
    credits, earned, fee = split(app, doc)
    present = {party: await is_present(app, doc, party) for party in PARTIES}
    changes = {
        "status": ACTIVE, "minute": 1, "accepted_at": now, "paid_until": now + MINUTE,
        "credits": [list(c) for c in credits], "earned_per_minute": earned,
        "fee_per_minute": fee, "busy_consultant": doc["consultant_id"], "present": present,
        # Parties normally join consult:<id> before accepting; one who has not yet
        # joined has the grace period to do so.
        "absent_since": None if all(present.values()) else now,
    }
    try:
        new = await charge_minute(app, doc, changes)
    except InsufficientBalance:
        await finish(app, doc, "funds_exhausted", now)
        raise Conflict("the student's wallet cannot pay the first minute",
                       code="funds_exhausted") from None
    except DuplicateKeyError as e:
        if "busy_consultant" in str(e):
            raise Conflict("you are in another consultation; end it first",
                           code="consultant_busy") from None
        raise
    if new is None:
        current = await load(app, consultation_id) or doc
        raise Conflict(f"the consultation is {current['status']}, not requested",
                       code="not_requested", state=current["status"])
    await app.publish(channel_of(consultation_id), "accepted", {"consultation": public(new)})
    await announce_charge(app, new)
    return new


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
    doc = await load_for_party(app, user, consultation_id)
    if user.id != doc["consultant_id"]:
        raise Forbidden("only the consultant asked can decline", code="not_your_request")
    if doc["status"] != REQUESTED:
        raise Conflict(f"the consultation is {doc['status']}, not requested",
                       code="not_requested", state=doc["status"])
    ended = await finish(app, doc, "declined", app.clock.now())
    if ended is None:
        raise Conflict("the consultation changed; reload it", code="not_requested")
    return ended


async def finish(app: KPay, doc: dict[str, Any], reason: str, at: datetime
                 ) -> dict[str, Any] | None:
    """End the session (guarded); publish ``ended``. None if it changed under us."""
    ended = await write_state(app, doc, {"status": ENDED, "end_reason": reason,
                                         "ended_at": at, "absent_since": None})
    if ended is None:
        return None
    await app.publish(channel_of(doc["_id"]), "ended",
                      {"reason": reason, "summary": summary(ended)})
    for user_id in (doc["student_id"], doc["consultant_id"]):
        await app.publish(f"user:{user_id}", "consult_ended",
                          {"consultation_id": doc["_id"], "reason": reason})
    return ended


# -- events -----------------------------------------------------------------------------


async def announce_charge(app: KPay, doc: dict[str, Any]) -> None:
    """``tick`` after each charge, and ``low_balance`` when the wallet runs low."""
    wallet = await app.money.ledger.wallet(doc["student_id"])
    rate = doc["rate_per_minute"]
    affordable = wallet["available"] // rate
    minutes_left = min(affordable, doc["max_minutes"] - doc["minute"])
    channel = channel_of(doc["_id"])
    await app.publish(channel, "tick", {
        "minute": doc["minute"], "charged": totals(doc)["charged"], "amount": rate,
        "balance": wallet["available"], "minutes_left": minutes_left,
        "paid_until": doc["paid_until"].isoformat()})
    low = app.settings.consult_billing.low_balance_minutes
    if affordable <= low and affordable < doc["max_minutes"] - doc["minute"]:
        await app.publish(channel, "low_balance", {
            "balance": wallet["available"], "minutes_left": minutes_left,
            "rate_per_minute": rate})


async def is_present(app: KPay, doc: dict[str, Any], party: str) -> bool:
    user_id = doc[f"{party}_id"]
    return app.hub.is_present(channel_of(doc["_id"]), user_id)
