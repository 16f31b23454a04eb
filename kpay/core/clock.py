"""The one clock everything reads time from.

In dev mode the clock can be advanced (like Stripe's test clocks) so billing, drip
release and expiry can be exercised without waiting. Production never moves it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0

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
