"""Settings of the live_qa plugin (section ``[live_qa]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from kpay.core.config import Section

if TYPE_CHECKING:
    from kpay.core.app import KPay

SECTION = "live_qa"


class LiveQASettings(Section):
    # Longest question or chat text, in characters.
    max_text_chars: int = Field(2000, gt=0, le=20_000)
    default_capacity: int = Field(500, gt=0)
    max_capacity: int = Field(100_000, gt=0)
    max_price: int = Field(1_000_000, gt=0)
    # Presence counts are sent at most once per this many seconds per room.
    presence_interval_seconds: float = Field(1.0, gt=0)
    # Rooms not yet ended (scheduled or live) a host may have at once; creating one more
    # is 409 too_many_open. 0: no cap.
    max_open_rooms_per_host: int = Field(50, ge=0)


def settings_of(app: KPay) -> LiveQASettings:
    return app.settings.section(SECTION)
