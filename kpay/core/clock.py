"""The one clock everything reads time from.

The clock is the wall clock plus an offset. Production keeps the offset at 0. In dev
mode the clock can be advanced (like Stripe's test clocks) so billing, drip release
and expiry can be exercised without waiting, and tests start it at a pinned instant
(``Clock.starting_at``), past or future, so no test depends on the hour it runs.
Nothing that judges time may read the wall clock instead: see docs/plugins.md
("Time") for the few places that deliberately use another clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        #: Seconds added to the wall clock; negative when the clock runs in the past.
        self._offset = float(offset)

    @classmethod
    def starting_at(cls, moment: datetime) -> Clock:
        """A clock that reads ``moment`` now and runs on from there."""
        return cls(offset_to(moment))

    def time(self) -> float:
        """Seconds since the epoch, with any dev offset."""
        return time.time() + self._offset

    def now(self) -> datetime:
        """Timezone-aware UTC now, with any dev offset."""
        return datetime.fromtimestamp(self.time(), UTC)

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        return self.now()

    def reset(self) -> datetime:
        """Dev mode: back to the wall clock (offset 0), the one move backwards allowed:
        times stored while it ran ahead stay in the future."""
        self._offset = 0.0
        return self.now()


def offset_to(moment: datetime) -> float:
    """The offset that makes a clock read ``moment`` now (an aware datetime)."""
    if moment.tzinfo is None:
        raise ValueError("a clock's start instant needs a time zone")
    return moment.timestamp() - time.time()
