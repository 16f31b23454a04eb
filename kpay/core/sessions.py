"""Ending sessions that lost their standing: the sockets of a user who was blocked,
demoted or logged out are closed, on this process at once, on every other node as soon
as the broker's control message arrives (kpay/core/realtime/cluster.py), and in any
case within ``[auth] standing_cache_seconds`` (docs/operations.md, "Users and roles")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kpay.core.errors import ApiError
from kpay.core.realtime.socket import CLOSE_UNAUTHORIZED
from kpay.core.users import authenticate_claims

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.sessions")

#: The control message asking every node to enforce some users' standing now.
STANDING_CHANGED = "standing"
#: At most this many user ids in one such message (a bigger set is split).
MAX_USERS_PER_MESSAGE = 500


async def enforce_standing(app: KPay, user_ids: Iterable[str], *,
                           tell_others: bool = True) -> int:
    """Drop cached standings of ``user_ids`` and close their sockets that may no longer
    act (blocked, revoked, or a role other than the one they signed in with); returns
    how many closed here. ``tell_others``: ask every other node to do the same now."""
    wanted = set(user_ids)
    for user_id in wanted:
        app.users.forget(user_id)
    closed = 0
    for socket in tuple(app.sockets):
        claims = socket.state.claims
        if claims is None or claims.user.id not in wanted:
            continue
        try:
            # A role change bumps the token version: it closes here as token_revoked.
            await authenticate_claims(app.users, claims)
        except ApiError as e:
            socket.close(CLOSE_UNAUTHORIZED, e.code)
            closed += 1
    if tell_others and wanted:
        await tell_standing_changed(app, wanted)
    return closed


async def tell_standing_changed(app: KPay, user_ids: set[str]) -> None:
    """Ask the other nodes to enforce these users' standing now (applied there by
    kpay/core/realtime/cluster.py). A failure is logged: their ``watch_standing`` poll
    still closes the sockets within the cache time."""
    ids = sorted(user_ids)
    try:
        for start in range(0, len(ids), MAX_USERS_PER_MESSAGE):
            await app.broker.command(STANDING_CHANGED,
                                     {"user_ids": ids[start:start + MAX_USERS_PER_MESSAGE]})
    except Exception:
        log.exception("could not tell the other nodes that %d user(s) changed", len(ids))


async def watch_standing(app: KPay) -> None:
    """Every ``standing_cache_seconds``, ask the database which users changed since the
    last look (a change made on another node or with the CLI) and enforce them."""
    interval = max(1.0, app.settings.auth.standing_cache_seconds)
    mark = None
    while True:
        try:
            changed, mark = await app.users.changes_since(mark)
            if changed:
                # Every node polls: none needs telling.
                closed = await enforce_standing(app, changed, tell_others=False)
                if closed:
                    log.info("closed %d socket(s) of %d user(s) whose standing changed",
                             closed, len(changed))
        except Exception:
            log.exception("could not check for changed users; trying again")
        await asyncio.sleep(interval)
