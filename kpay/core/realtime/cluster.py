"""What one node asks of every node, through the broker's control messages
(docs/websocket.md "Presence across nodes"):

- ``remove_user``: end a user's subscriptions to a channel (live_qa's host removing
  someone) on every node;
- ``standing``: check again the standing of some users and close their sockets that
  lost it (kpay/core/sessions.py: a block, a role change, a logout), on every node at
  once rather than at the next poll of ``watch_standing``.

The sending node applies a command itself before sending it (so it knows what it
did here); ``handle`` applies what other nodes sent and skips its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kpay.core import sessions

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.cluster")

REMOVE_USER = "remove_user"
#: Ids, channels and reasons longer than this are not ours: the message is ignored.
MAX_FIELD = 300


async def remove_user(app: KPay, channel: str, user_id: str, reason: str) -> int:
    """End every subscription of ``user_id`` to ``channel`` on every node, with
    ``{"op":"unsubscribed","reason": reason}``; returns how many ended on this node."""
    ended = app.hub.remove_user(channel, user_id, reason)
    await app.broker.command(REMOVE_USER, {"channel": channel, "user_id": user_id,
                                           "reason": reason})
    return ended


def handle(app: KPay, name: str, args: dict[str, Any], origin: str) -> None:
    """Apply a control message another node sent (the broker's ``on_command``)."""
    if origin == app.broker.member or app.stopped:
        return
    if name == REMOVE_USER:
        fields = [args.get(k) for k in ("channel", "user_id", "reason")]
        if all(isinstance(f, str) and len(f) <= MAX_FIELD for f in fields):
            app.hub.remove_user(*fields)
            return
    elif name == sessions.STANDING_CHANGED:
        ids = args.get("user_ids")
        if (isinstance(ids, list) and len(ids) <= sessions.MAX_USERS_PER_MESSAGE
                and all(isinstance(i, str) and len(i) <= MAX_FIELD for i in ids)):
            app.spawn(sessions.enforce_standing(app, ids, tell_others=False))
            return
    log.warning("control message %r from %s ignored: unknown or malformed", name, origin)
