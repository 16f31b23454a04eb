"""The broker interface and the in-memory broker.

Guarantees every broker gives (the conformance suite in tests/core/test_broker.py
checks them against each implementation):
- ``publish`` assigns the channel's next ``seq`` (previous + 1) and appends to its
  history atomically per channel, then hands the publication to every node's hub at
  most once. One channel's publications reach a hub in seq order.
- ``history(channel, since)`` returns the publications after ``since`` still kept
  (bounded by ``history_size`` per channel and by ``history_ttl`` seconds of age; a ttl
  of 0 means no age limit), oldest first, and whether that is all of them
  (``recovered``), and the channel's latest seq (``top``).
- seq numbers never go backwards for a channel, also across restarts: a fresh broker
  starts each channel at a number above any it handed out before (time-based), so a
  client resuming from an old seq is told ``recovered: false`` instead of being
  handed someone else's events.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kpay.core import metrics
from kpay.core.realtime.protocol import Publication

Deliver = Callable[[Publication], None]


@dataclass(frozen=True)
class HistoryResult:
    publications: list[Publication]
    recovered: bool
    top: int


class Broker(ABC):
    def __init__(self, history_size: int, history_ttl: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.clock = clock
        self._deliver: Deliver = lambda publication: None

    def on_publication(self, deliver: Deliver) -> None:
        """Set the hub callback that receives every publication for this node."""
        self._deliver = deliver

    async def start(self) -> None:  # noqa: B027 (optional step, empty by default)
        """Connect; called before the server accepts sockets."""

    async def stop(self) -> None:  # noqa: B027
        """Disconnect; called at shutdown."""

    @abstractmethod
    async def publish(self, channel: str, type: str, data: Any) -> Publication:
        """Assign seq, keep in history, deliver to every node. Returns the publication."""

    @abstractmethod
    async def history(self, channel: str, since: int) -> HistoryResult:
        """Publications with seq > since that are still kept, oldest first."""

    def oldest_kept(self) -> float:
        """Publications older than this (clock time) are out of history."""
        return self.clock() - self.history_ttl if self.history_ttl else float("-inf")


def initial_seq() -> int:
    """Where a fresh broker starts counting: above anything a previous process used,
    as long as that process published fewer than 1,000 events a millisecond."""
    return int(time.time() * 1000) * 1000


def history_result(kept: Iterable[Publication], since: int, top: int) -> HistoryResult:
    """Judge what a client that saw everything up to ``since`` can get back.

    ``kept`` is the channel's history after ``since``, already trimmed, oldest first.
    """
    publications = list(kept)
    if since >= top:
        # Nothing newer exists; a since above top is a seq from another life of the
        # channel (its history was lost), so the client cannot know what it missed.
        return HistoryResult([], since == top, top)
    recovered = bool(publications) and publications[0].seq == since + 1
    return HistoryResult(publications, recovered, top)


class MemoryBroker(Broker):
    """One node: seq and history live in this process."""

    def __init__(self, history_size: int, history_ttl: float,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(history_size, history_ttl, clock)
        self._base = initial_seq()
        self._top: dict[str, int] = {}
        self._history: dict[str, deque[Publication]] = {}

    async def publish(self, channel: str, type: str, data: Any) -> Publication:
        seq = self._top.get(channel, self._base) + 1
        self._top[channel] = seq
        publication = Publication(channel, seq, type, data, self.clock())
        if self.history_size:
            kept = self._history.get(channel)
            if kept is not None:
                self._trim(channel, kept)
            if not kept:
                kept = self._history[channel] = deque(maxlen=self.history_size)
            kept.append(publication)
        metrics.EVENTS_PUBLISHED.inc()
        self._deliver(publication)
        return publication

    async def history(self, channel: str, since: int) -> HistoryResult:
        top = self._top.get(channel, self._base)
        kept = self._history.get(channel)
        if kept:
            self._trim(channel, kept)
        newer = (p for p in kept or () if p.seq > since)
        return history_result(newer, since, top)

    def _trim(self, channel: str, kept: deque[Publication]) -> None:
        oldest_allowed = self.oldest_kept()
        while kept and kept[0].time < oldest_allowed:
            kept.popleft()
        if not kept:
            # A quiet channel gives its memory back; its top seq (one int) stays.
            del self._history[channel]
