"""The dev server's clock offset, kept in the ``dev_state`` collection so that a
restarted dev server and the CLI (``kpay token``, ``kpay reconcile``) read the same
time as the server that advanced it (docs/api.md, "Dev mode")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kpay.core.clock import Clock
from kpay.core.store import Store

if TYPE_CHECKING:
    from kpay.core.app import KPay

CLOCK = {"name": "clock"}


async def remember(app: KPay) -> None:
    """Record the app clock's offset (after it moved, or was reset)."""
    await app.store["dev_state"].update_one(
        CLOCK, {"$set": {"offset": app.clock.offset}}, upsert=True)


async def restore(app: KPay) -> None:
    """At start: a restarted dev server keeps its advanced time, so stored times stay
    in the past; then the offset in use is recorded for the CLI."""
    state = await app.store["dev_state"].find_one(CLOCK)
    if state and state.get("offset", 0) > app.clock.offset:
        app.clock.advance(state["offset"] - app.clock.offset)
    await remember(app)


async def advance(app: KPay, seconds: float) -> None:
    """Move the clock forward, remember it, and run every job at once."""
    app.clock.advance(seconds)
    await remember(app)
    await app.scheduler.run_all_now()


async def stored_clock(store: Store) -> Clock:
    """The running dev server's clock, for the CLI (its offset may be negative: a
    pinned test clock)."""
    state = await store["dev_state"].find_one(CLOCK) or {}
    return Clock(state.get("offset", 0.0))
