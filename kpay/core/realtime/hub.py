"""This node's connections and subscriptions, and fan-out of publications to them.

The hub's presence (``presence``, ``is_present``, ``present_users``) is this node's
only; the cluster-wide answers come from the broker, which the hub keeps informed
through ``tally`` (docs/websocket.md "Presence across nodes").
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Protocol

from kpay.core import metrics
from kpay.core.realtime.protocol import Publication

log = logging.getLogger("kpay.hub")

PresenceListener = Callable[[str, str, bool], Awaitable[None] | None]
#: (channel, user id, that user's sockets on the channel on this node now)
Tally = Callable[[str, str, int], None]


class Connection(Protocol):
    user_id: str | None

    def send_frame(self, frame: bytes) -> bool:
        """Write pre-framed bytes; False when the connection was dropped instead."""
        ...

    def end_subscription(self, channel: str, reason: str) -> None: ...


class Hub:
    def __init__(self, tally: Tally | None = None,
                 idle: Callable[[str], None] | None = None) -> None:
        self.subscribers: dict[str, set[Connection]] = defaultdict(set)
        # Per channel, how many sockets each user has there (presence is per user).
        self.users: dict[str, Counter[str]] = defaultdict(Counter)
        # Publications held for sockets that are reading a channel's history.
        self.held: dict[str, list[list[Publication]]] = {}
        # Told every change of a user's socket count on a channel (the broker's tally).
        self.tally: Tally = tally or (lambda channel, user_id, count: None)
        # Told when no socket wants a channel any more (the broker may stop routing it).
        self.idle: Callable[[str], None] = idle or (lambda channel: None)

    def deliver(self, publication: Publication) -> None:
        """Fan one publication out: the frame is built once, written to every socket.

        A socket that cannot take it (closed, or its outbound buffer full) is dropped
        by its own ``send_frame``; a socket that fails in an unexpected way is logged
        and skipped. The others still get it.
        """
        holders = self.held.get(publication.channel)
        if holders:
            for held in holders:
                held.append(publication)
        connections = self.subscribers.get(publication.channel)
        if not connections:
            return
        frame = publication.frame
        delivered = 0
        for connection in tuple(connections):
            try:
                if connection.send_frame(frame):
                    delivered += 1
            except Exception:
                log.exception("fan-out to one socket of %s failed", connection.user_id)
        metrics.DELIVERIES.inc(delivered)

    def hold(self, channel: str) -> list[Publication]:
        """Start keeping ``channel``'s publications in the returned list.

        A resuming socket holds while it awaits the broker's history, so events that
        arrive meanwhile are neither lost nor sent before the history. ``release``
        it when done.
        """
        held: list[Publication] = []
        self.held.setdefault(channel, []).append(held)
        return held

    def release(self, channel: str, held: list[Publication]) -> None:
        holders = self.held.get(channel, [])
        if any(h is held for h in holders):
            holders[:] = [h for h in holders if h is not held]
        if not holders:
            self.held.pop(channel, None)
        self.drop_if_idle(channel)

    def wants(self, channel: str) -> bool:
        """Whether a socket here is subscribed to ``channel`` or reading its history."""
        return channel in self.subscribers or channel in self.held

    def drop_if_idle(self, channel: str) -> None:
        if not self.wants(channel):
            self.idle(channel)

    def subscribe(self, channel: str, connection: Connection) -> bool:
        """Add; True when this is the user's first socket on the channel."""
        subscribers = self.subscribers[channel]
        if connection in subscribers:
            return False
        subscribers.add(connection)
        return self._count(channel, connection.user_id, +1)

    def unsubscribe(self, channel: str, connection: Connection) -> bool:
        """Remove; True when it was the user's last socket on the channel."""
        subscribers = self.subscribers.get(channel)
        if not subscribers or connection not in subscribers:
            return False
        subscribers.discard(connection)
        if not subscribers:
            del self.subscribers[channel]
            self.drop_if_idle(channel)
        return self._count(channel, connection.user_id, -1)

    def _count(self, channel: str, user_id: str | None, step: int) -> bool:
        if user_id is None:
            return False
        users = self.users[channel]
        users[user_id] += step
        self.tally(channel, user_id, max(users[user_id], 0))
        changed = users[user_id] == (1 if step > 0 else 0)
        if users[user_id] <= 0:
            del users[user_id]
        if not users:
            del self.users[channel]
        return changed

    def presence(self, channel: str) -> int:
        """Distinct users subscribed to ``channel`` on this node."""
        users = self.users.get(channel)
        return len(users) if users else 0

    def present_users(self, prefix: str) -> list[tuple[str, list[str]]]:
        """(channel, user ids) of every channel starting with ``prefix`` that has someone
        on this node."""
        return [(channel, list(users)) for channel, users in self.users.items()
                if channel.startswith(prefix)]

    def is_present(self, channel: str, user_id: str) -> bool:
        users = self.users.get(channel)
        return bool(users) and users.get(user_id, 0) > 0

    def remove_user(self, channel: str, user_id: str, reason: str) -> int:
        """End every subscription of ``user_id`` on ``channel`` (moderation)."""
        ended = 0
        for connection in tuple(self.subscribers.get(channel, ())):
            if connection.user_id == user_id:
                connection.end_subscription(channel, reason)
                ended += 1
        return ended
