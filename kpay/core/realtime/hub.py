"""This node's connections and subscriptions, and fan-out of publications to them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Protocol

from kpay.core import metrics
from kpay.core.realtime.protocol import Publication

PresenceListener = Callable[[str, str, bool], Awaitable[None] | None]


class Connection(Protocol):
    user_id: str | None

    def send_frame(self, frame: bytes) -> bool:
        """Write pre-framed bytes; False when the connection was dropped instead."""
        ...

    def end_subscription(self, channel: str, reason: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.subscribers: dict[str, set[Connection]] = defaultdict(set)
        # Per channel, how many sockets each user has there (presence is per user).
        self.users: dict[str, Counter[str]] = defaultdict(Counter)
        self.presence_listeners: list[PresenceListener] = []

    def deliver(self, publication: Publication) -> None:
        """Fan one publication out: the frame is built once, written to every socket.

        A socket that cannot take it (closed, or its outbound buffer full) is dropped;
        the others still get it.
        """
        connections = self.subscribers.get(publication.channel)
        if not connections:
            return
        frame = publication.frame
        delivered = 0
        for connection in tuple(connections):
            if connection.send_frame(frame):
                delivered += 1
        metrics.DELIVERIES.inc(delivered)

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
        return self._count(channel, connection.user_id, -1)

    def _count(self, channel: str, user_id: str | None, step: int) -> bool:
        if user_id is None:
            return False
        users = self.users[channel]
        users[user_id] += step
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
