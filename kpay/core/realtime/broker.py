"""The broker interface and the in-memory broker.

Guarantees every broker gives (the conformance suite in tests/core/test_broker.py
checks them against each implementation):
- ``publish`` assigns the channel's next ``seq`` (previous + 1) and appends to its
  history atomically per channel, then hands the publication to every node's hub at
  most once. One channel's publications reach a hub in seq order.
- ``history(channel, since)`` returns the publications after ``since`` still kept
  (bounded by ``history_size`` per channel and by ``history_ttl`` seconds of age; a ttl
  of 0 means no age limit; the memory broker also bounds all channels together),
  oldest first, and whether that is all of them (``recovered``), and the channel's
  latest seq (``top``).
- seq numbers never go backwards for a channel, also across restarts: a fresh broker
  starts each channel at a number above any it handed out before (time-based), so a
  client resuming from an old seq is told ``recovered: false`` instead of being
  handed someone else's events.
- ``listen(channel)`` returns once this node receives the channel's publications
  (a broker may deliver more channels than it was asked for; the Redis broker
  delivers only those, docs/websocket.md "Brokers").

The cluster view (docs/websocket.md "Presence across nodes"): each node reports how
many sockets each user has on each channel (``tally``, on subscribe and leave, never
per event); ``presence``, ``is_present`` and ``sockets_of`` answer for every node the
broker connects, and a node that is gone without saying so drops out of them within
``presence_ttl`` seconds. ``command`` hands a control message to every node
(itself included) through the callback set with ``on_command``, at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kpay.core import metrics
from kpay.core.realtime.protocol import Publication

log = logging.getLogger("kpay.broker")

Deliver = Callable[[Publication], None]
#: A control message: its name, its arguments, the ``member`` name of the sending node.
CommandHandler = Callable[[str, dict[str, Any], str], None]

#: The tally of a user's authenticated sockets on a node (``[realtime]
#: max_sockets_per_user``), kept as a channel no client can name (no ``prefix:``).
SOCKETS = "*sockets"

#: The memory broker's default budget for the history of all channels together.
DEFAULT_TOTAL_BYTES = 64 * 1024 * 1024


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
        self._command: CommandHandler = lambda name, args, origin: None
        #: This process's name in the cluster; the app sets its node id before start().
        self.member = ""

    def on_publication(self, deliver: Deliver) -> None:
        """Set the hub callback that receives every publication for this node."""
        self._deliver = deliver

    def on_command(self, handler: CommandHandler) -> None:
        """Set the callback that receives every control message (``command``)."""
        self._command = handler

    async def listen(self, channel: str) -> None:  # noqa: B027 (memory: every channel)
        """Return once this node receives ``channel``'s publications."""

    def unlisten(self, channel: str) -> None:  # noqa: B027
        """This node has no more use for ``channel`` (the broker may stop delivering it
        once the hub no longer wants it)."""

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

    # -- the cluster view -------------------------------------------------------------

    @abstractmethod
    def tally(self, channel: str, user_id: str, count: int) -> None:
        """This node now has ``count`` sockets of ``user_id`` on ``channel`` (0: none)."""

    @abstractmethod
    async def presence(self, channel: str) -> int:
        """Distinct users with a socket on ``channel`` on any node."""

    @abstractmethod
    async def is_present(self, channel: str, user_id: str) -> bool:
        """Whether ``user_id`` has a socket on ``channel`` on any node."""

    @abstractmethod
    async def sockets_of(self, user_id: str) -> int:
        """The authenticated sockets of ``user_id`` on every node (tally of SOCKETS)."""

    @abstractmethod
    async def command(self, name: str, args: dict[str, Any]) -> None:
        """Hand a control message to every node, this one included."""


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
    """One node: seq and history live in this process.

    Memory is bounded across channels, not only per channel:

    - every kept publication is also in one broker-wide list in publish order, so the
      oldest can be evicted globally (O(1) each) when the history of all channels
      together goes over ``history_total_bytes`` (approximate, see
      :func:`approximate_size`); a client resuming from before an evicted publication
      is answered ``recovered: false``, as for any history that is gone;
    - channels are kept in the order of their last activity (a publish, a history
      read, or a cleanup that found subscribers on it). A cleanup, run at most every
      ``cleanup_interval`` seconds of the broker's clock (from ``publish``,
      ``history`` and a background task), looks only at the front of that order and
      of the publication list: it drops expired publications and channels with no
      publication and no subscriber for ``history_ttl`` seconds. Its work is
      proportional to what it drops (plus one look per subscribed channel per ttl),
      never to everything kept.

    A dropped channel starts again, if it is ever published on, at a seq above any a
    dropped channel had reached, so a client resuming from an old seq is told
    ``recovered: false`` and never handed events it did not see.
    """

    def __init__(self, history_size: int, history_ttl: float,
                 clock: Callable[[], float] = time.time, *,
                 history_total_bytes: int = DEFAULT_TOTAL_BYTES,
                 listening: Callable[[str], bool] | None = None) -> None:
        super().__init__(history_size, history_ttl, clock)
        self.history_total_bytes = history_total_bytes
        self._listening = listening
        self._base = initial_seq()
        # Above every seq a dropped channel handed out: where a new channel starts.
        self._floor = self._base
        # Channel -> state, least recently active first.
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        # Every kept publication -> its channel, oldest first (publish order).
        self._kept: OrderedDict[Publication, _Channel] = OrderedDict()
        self._bytes = 0
        self.cleanup_interval = (min(max(history_ttl / 10, 1.0), 60.0) if history_ttl
                                 else 60.0)
        self._next_cleanup = float("-inf")
        self._cleaner: asyncio.Task[None] | None = None
        # The one node's tallies: channel -> user -> sockets.
        self._tallies: dict[str, dict[str, int]] = {}

    def on_publication(self, deliver: Deliver) -> None:
        super().on_publication(deliver)
        hub = getattr(deliver, "__self__", None)
        subscribers = getattr(hub, "subscribers", None)
        if self._listening is None and isinstance(subscribers, dict):
            # The hub of this node (app.py hands over ``hub.deliver``): a channel with
            # sockets on it is never dropped as idle.
            self._listening = subscribers.__contains__

    async def start(self) -> None:
        if self._cleaner is None:
            self._cleaner = asyncio.get_running_loop().create_task(self._clean_periodically())

    async def stop(self) -> None:
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
            self._cleaner = None

    async def _clean_periodically(self) -> None:
        # A quiet broker (nothing published or read) still gives idle channels back.
        # The sleep only paces the check; what is idle is judged on the broker's clock.
        while True:
            await asyncio.sleep(self.cleanup_interval)
            try:
                self._maybe_cleanup(self.clock())
            except Exception:
                log.exception("memory broker cleanup failed")

    async def publish(self, channel: str, type: str, data: Any) -> Publication:
        now = self.clock()
        self._maybe_cleanup(now)
        state = self._touch(channel, now)
        if state is None:
            state = self._channels[channel] = _Channel(self._floor, now)
        state.top += 1
        publication = Publication(channel, state.top, type, data, now)
        if self.history_size:
            self._trim(state, now)
            while len(state.history) >= self.history_size:
                self._forget(state.history[0], state)
            self._keep(publication, state)
        metrics.EVENTS_PUBLISHED.inc()
        self._deliver(publication)
        return publication

    async def history(self, channel: str, since: int) -> HistoryResult:
        now = self.clock()
        self._maybe_cleanup(now)
        state = self._touch(channel, now)
        if state is None:
            # Never published, or dropped as idle: nothing is kept, and no seq of it
            # is above the floor.
            return history_result((), since, self._floor)
        self._trim(state, now)
        newer = (p for p in state.history if p.seq > since)
        return history_result(newer, since, state.top)

    # -- the cluster view: this node is the whole cluster ----------------------------

    def tally(self, channel: str, user_id: str, count: int) -> None:
        users = self._tallies.setdefault(channel, {})
        if count > 0:
            users[user_id] = count
            return
        users.pop(user_id, None)
        if not users:
            del self._tallies[channel]

    async def presence(self, channel: str) -> int:
        return len(self._tallies.get(channel, ()))

    async def is_present(self, channel: str, user_id: str) -> bool:
        return user_id in self._tallies.get(channel, ())

    async def sockets_of(self, user_id: str) -> int:
        return self._tallies.get(SOCKETS, {}).get(user_id, 0)

    async def command(self, name: str, args: dict[str, Any]) -> None:
        self._command(name, args, self.member)

    # -- what is kept ---------------------------------------------------------------

    @property
    def kept_bytes(self) -> int:
        """The approximate size of all channels' history together."""
        return self._bytes

    @property
    def kept_publications(self) -> int:
        return len(self._kept)

    @property
    def channel_count(self) -> int:
        """Channels with state here (a top seq, maybe history)."""
        return len(self._channels)

    def _touch(self, channel: str, now: float) -> _Channel | None:
        state = self._channels.get(channel)
        if state is not None:
            state.active = now
            self._channels.move_to_end(channel)
        return state

    def _keep(self, publication: Publication, state: _Channel) -> None:
        state.history.append(publication)
        self._kept[publication] = state
        self._bytes += approximate_size(publication)
        # Over the budget: the oldest publications of any channel go first.
        while self._bytes > self.history_total_bytes and self._kept:
            oldest, owner = next(iter(self._kept.items()))
            self._forget(oldest, owner)

    def _forget(self, publication: Publication, state: _Channel) -> None:
        """Take the oldest publication of ``state`` out of the history."""
        first = state.history.popleft()
        assert first is publication, "a channel's history is in publish order"
        del self._kept[publication]
        self._bytes -= approximate_size(publication)

    def _trim(self, state: _Channel, now: float) -> None:
        oldest_allowed = self.oldest_kept(now)
        while state.history and state.history[0].time < oldest_allowed:
            self._forget(state.history[0], state)

    def oldest_kept(self, now: float | None = None) -> float:
        if not self.history_ttl:
            return float("-inf")
        return (self.clock() if now is None else now) - self.history_ttl

    # -- cleanup --------------------------------------------------------------------

    def _maybe_cleanup(self, now: float) -> None:
        if now >= self._next_cleanup:
            self._next_cleanup = now + self.cleanup_interval
            self.cleanup(now)

    def cleanup(self, now: float | None = None) -> int:
        """Drop expired publications and idle channels; returns the channels dropped.

        Looks only at the front of the publication list (oldest first) and of the
        channel list (least recently active first), so its cost is what it drops.
        """
        now = self.clock() if now is None else now
        oldest_allowed = self.oldest_kept(now)
        while self._kept:
            oldest, owner = next(iter(self._kept.items()))
            if oldest.time >= oldest_allowed:
                break
            self._forget(oldest, owner)
        if not self.history_ttl:
            return 0  # no age limit: channels are only bounded by their history
        idle_since = now - self.history_ttl
        listening = self._listening or (lambda channel: False)
        dropped = 0
        while self._channels:
            channel, state = next(iter(self._channels.items()))
            if state.active > idle_since:
                break
            if listening(channel):
                # Subscribed: looked at again one ttl from now.
                state.active = now
                self._channels.move_to_end(channel)
                continue
            del self._channels[channel]
            while state.history:
                self._forget(state.history[0], state)
            self._floor = max(self._floor, state.top)
            dropped += 1
        return dropped


class _Channel:
    """One channel of the memory broker: its top seq, its history, its last activity."""

    __slots__ = ("active", "history", "top")

    def __init__(self, top: int, active: float) -> None:
        self.top = top
        self.history: deque[Publication] = deque()
        self.active = active


# What one kept publication is counted as besides its JSON: the Publication object,
# its place in the two lists, and its WebSocket frame once built.
PUBLICATION_OVERHEAD = 256


def approximate_size(publication: Publication) -> int:
    """The bytes one kept publication is counted as: its event JSON twice (the text and
    the frame built from it) plus a fixed overhead. The decoded ``data`` the publisher
    passed in is not counted; the budget is approximate."""
    return 2 * len(publication.payload) + PUBLICATION_OVERHEAD
