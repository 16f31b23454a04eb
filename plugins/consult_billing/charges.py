"""Charging minutes: one session at a time, or many in one MongoDB transaction.

A minute is the ledger transaction ``consult:<id>:<minute>`` (the student's wallet pays
the consultant's earnings and the platform fee, split at accept) written in the same
MongoDB transaction as the guarded session update that counts it: the minute counter
and the money move together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from kpay.core import metrics
from kpay.core.failpoints import failpoint
from kpay.core.money import accounts
from kpay.core.money.ledger import Movement, StaleBatch
from plugins.consult_billing.pricing import affordable_minutes, minute_price
from plugins.consult_billing.sessions import (
    CONSULTATIONS,
    MINUTE,
    channel_of,
    minute_key,
    state_update,
    totals,
    write_state,
)
from plugins.consult_billing.settings import settings_of

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.consult_billing")


def split(app: KPay, doc: dict[str, Any]) -> tuple[list[tuple[str, int]], int, int]:
    """The credits of one minute and how they divide (earned, fee), fixed at accept."""
    rate = doc["rate_per_minute"]
    credits = app.money.earnings_credits(rate, doc["consultant_id"])
    earned = sum(v for a, v in credits if accounts.kind_of(a) == "earnings")
    fee = rate - earned
    if sum(v for _, v in credits) != rate:
        raise ValueError("earnings credits do not sum to the rate")
    return credits, earned, fee


async def charge_minute(app: KPay, doc: dict[str, Any], changes: dict[str, Any],
                        reserve: Callable[[AsyncClientSession], Awaitable[None]] | None = None
                        ) -> dict[str, Any] | None:
    """Charge minute ``changes["minute"]`` and apply ``changes`` in one transaction;
    ``reserve`` (at accept: the price adjusters' reservations) runs in it too.

    None when the session changed under us (another engine run charged it first).
    Raises InsufficientBalance when the wallet cannot pay (nothing is written).
    """
    movement = minute_movement({**doc, **changes}, changes["minute"])

    async def step(session: AsyncClientSession) -> dict[str, Any] | None:
        new = await write_state(app, doc, changes, session=session)
        if new is None:
            return None
        if reserve is not None:
            await reserve(session)
        if moves_money(movement):
            await app.money.ledger.post(movement.key, movement.postings, movement.memo,
                                        movement.meta, session=session)
        return new

    # Every minute also credits platform:revenue, so concurrent charge transactions
    # conflict on that one account and retry (bench/billing.py measured ~5 aborted
    # attempts per minute at 16 at once). One node runs them one at a time; the wallet
    # reads and events around them stay concurrent. Other nodes still race, safely.
    async with ledger_lock(app):
        failpoint("billing.before_minute")
        new = await app.store.transaction(step)
        failpoint("billing.after_minute")
    if new is not None:
        metrics.BILLING_CHARGES.inc()
    return new


def minute_movement(doc: dict[str, Any], minute: int) -> Movement:
    """The ledger transaction of one minute: the student's wallet pays the credits that
    were fixed at accept, less any price adjustment (pricing.py)."""
    paid, credits = minute_price(doc, minute)
    return Movement(minute_key(doc["_id"], minute),
                    [(accounts.wallet(doc["student_id"]), -paid), *credits],
                    f"咨询第 {minute} 分钟", {"consultation_id": doc["_id"], "minute": minute})


def moves_money(movement: Movement) -> bool:
    """False for a minute that is free to everyone (a seller-funded free minute): it is
    counted on the session but has no ledger transaction."""
    return any(value for _, value in movement.postings)


async def charge_minutes(app: KPay, due: list[tuple[dict[str, Any], datetime]]
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Charge the next minute of many sessions, each ``(doc, due time)``, in one MongoDB
    transaction of five commands whatever their number (``Ledger.post_many``, one bulk
    update of the sessions, the commit), against six per session one by one.

    Returns (the charged sessions, the sessions left as they were because their wallet
    cannot pay). Raises StaleBatch, with nothing written, when a session or a wallet
    changed since it was read: the caller then settles them one by one.
    """
    movements = [minute_movement(doc, doc["minute"] + 1) for doc, _ in due]

    async def step(session: AsyncClientSession) -> tuple[list, list, dict[str, int]]:
        batch = await app.money.ledger.post_many(session, movements)
        posted = {transaction.key for transaction in batch.posted}
        updates, charged, short = [], [], []
        for (doc, at), movement in zip(due, movements, strict=True):
            if movement.key not in posted:
                short.append(doc)
                continue
            query, update, new = state_update(
                app, doc, {"minute": doc["minute"] + 1, "paid_until": at + MINUTE})
            updates.append(UpdateOne(query, update))
            charged.append(new)
        if updates:
            result = await app.store[CONSULTATIONS].bulk_write(updates, ordered=False,
                                                               session=session)
            if result.matched_count != len(updates):
                raise StaleBatch("a session changed since the engine read it")
        return charged, short, batch.wallets

    async with ledger_lock(app):
        failpoint("billing.before_batch")
        charged, short, wallets = await app.store.transaction(step)
        failpoint("billing.after_batch")
    metrics.BILLING_CHARGES.inc(len(charged))
    for new in charged:
        try:
            await announce_charge(app, new, wallets[accounts.wallet(new["student_id"])])
        except Exception:
            # The minutes are charged; a tick that cannot be published must not make
            # the batch look failed (the page refetches on its next event or resume).
            log.exception("tick of consultation %s not published", new["_id"])
    return charged, short


def ledger_lock(app: KPay) -> asyncio.Lock:
    """One charging batch at a time per app."""
    return app.plugin_state("consult_billing.ledger_lock", asyncio.Lock)


async def announce_charge(app: KPay, doc: dict[str, Any], available: int | None = None
                          ) -> None:
    """``tick`` after each charge, and ``low_balance`` when the wallet runs low.
    ``available``: the wallet's spendable money, when the caller knows it."""
    if available is None:
        available = (await app.money.ledger.wallet(doc["student_id"]))["available"]
    rate = doc["rate_per_minute"]
    left_in_session = doc["max_minutes"] - doc["minute"]
    minutes_left = affordable_minutes(doc, available, left_in_session)
    channel = channel_of(doc["_id"])
    await app.publish(channel, "tick", {
        "minute": doc["minute"], "charged": totals(doc)["charged"],
        "amount": minute_price(doc, doc["minute"])[0],
        "balance": available, "minutes_left": minutes_left,
        "paid_until": doc["paid_until"].isoformat()})
    # The consultant's console shows earnings, whichever page is open (not saved).
    await app.money.announce_earnings([accounts.earnings(doc["consultant_id"])])
    low = settings_of(app).low_balance_minutes
    if minutes_left <= low and minutes_left < left_in_session:
        await app.publish(channel, "low_balance", {
            "balance": available, "minutes_left": minutes_left,
            "rate_per_minute": rate})
