"""Consultation documents and their state machine (see docs/consult_billing.md).

    requested -> active <-> paused -> ended
    requested -> ended   (declined, cancelled, expired, funds_exhausted at accept)

Every state change is an update guarded on ``status`` and ``rev`` (a counter bumped by
each change), so two writers racing on one session (two engine runs, an end request and
the engine) never both win. Charging minutes is in charges.py, what the parties do in
lifecycle.py, the engine in meter.py.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.client_session import AsyncClientSession

from kpay.core.access import ResourceRule
from kpay.core.auth import User
from kpay.core.errors import NotFound
from kpay.core.money.adjustments import public_adjustments
from kpay.core.store import IndexSpec
from plugins.consult_billing import pricing
from plugins.consult_billing.settings import settings_of

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
    """Money of the session so far. The rate, its split and any price adjustments are
    fixed at accept, so the totals follow from the minute count (pricing.py)."""
    return pricing.totals(doc)


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The consultation as the API shows it to its two parties."""
    return {
        "id": doc["_id"], "status": doc["status"], "student_id": doc["student_id"],
        "consultant_id": doc["consultant_id"], "rate_per_minute": doc["rate_per_minute"],
        "min_minutes": doc["min_minutes"], "max_minutes": doc["max_minutes"],
        **totals(doc), "adjustments": public_adjustments(doc.get("adjustments", [])),
        "requested_at": doc["requested_at"], "expires_at": doc["expires_at"],
        "accepted_at": doc.get("accepted_at"), "paid_until": doc.get("paid_until"),
        "present": presence(doc), "absent_since": doc.get("absent_since"),
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


async def is_party(app: KPay, user: User, consultation_id: str) -> bool:
    """``user`` is the student or the consultant of the consultation: who may subscribe
    to ``consult:<id>`` and ``join`` the resource ``consultation:<id>``."""
    doc = await load(app, consultation_id)
    return doc is not None and party_of(doc, user.id) is not None


# -- the resource consultation:<id> (docs/consult_billing.md, "Access for other plugins")


async def consultant_of(app: KPay, consultation_id: str) -> str | None:
    doc = await app.store[CONSULTATIONS].find_one({"_id": consultation_id},
                                                  {"consultant_id": 1})
    return doc["consultant_id"] if doc else None


async def consultation_allows(app: KPay, user: User, action: str,
                              consultation_id: str) -> bool:
    return await is_party(app, user, consultation_id)  # "join", the rule's one action


RESOURCE = ResourceRule("consultation", consultant_of, consultation_allows, actions=("join",))


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


def state_update(app: KPay, doc: dict[str, Any], changes: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(filter, update, new document): the update applying ``changes`` to the session
    only while it is as ``doc`` shows it, and the document that leaves."""
    grace = timedelta(seconds=settings_of(app).grace_seconds)
    new = {**doc, **changes, "rev": doc["rev"] + 1, "updated_at": app.clock.now()}
    new["next_charge_at"] = wake_time(new, grace)
    sets = {k: new[k] for k in (*changes, "next_charge_at", "updated_at")}
    update: dict[str, Any] = {"$set": sets, "$inc": {"rev": 1}}
    if new["status"] not in (ACTIVE, PAUSED) and "busy_consultant" in doc:
        update["$unset"] = {"busy_consultant": ""}
        new.pop("busy_consultant", None)
    return guarded(doc), update, new


async def write_state(app: KPay, doc: dict[str, Any], changes: dict[str, Any],
                      session: AsyncClientSession | None = None) -> dict[str, Any] | None:
    """Apply ``changes`` if the session is still as ``doc`` shows; the new document, or
    None when another writer changed it first."""
    query, update, new = state_update(app, doc, changes)
    result = await app.store[CONSULTATIONS].update_one(query, update, session=session)
    return new if result.matched_count else None


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
        await app.tell_user(user_id, "consult_ended",
                            {"consultation_id": doc["_id"], "reason": reason})
    return ended


# -- presence ---------------------------------------------------------------------------


def presence(doc: dict[str, Any]) -> dict[str, bool]:
    """Which parties have a socket on ``consult:<id>``, on any node: ``present_on`` holds,
    per party, the nodes where they do."""
    where = doc.get("present_on") or {}
    return {party: bool(where.get(party)) for party in PARTIES}
