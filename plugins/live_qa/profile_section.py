"""The ``rooms`` section of a host's public profile (hook ``public_profile_sections``,
docs/plugins.md; the page: static/profile.html)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.live_qa.rooms import LIVE, SCHEDULED, shown_all
from plugins.live_qa.store import ROOMS

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Rooms a host's public profile lists at most.
PROFILE_ROOMS = 20
# Live rooms first, then those to come, then replays.
PROFILE_ORDER = {LIVE: 0, SCHEDULED: 1}


async def rooms_section(app: KPay, host_id: str) -> dict[str, Any] | None:
    """The ``rooms`` section of a public profile (hook ``public_profile_sections``): the
    host's newest rooms, live first, then upcoming, then ended (replays)."""
    cursor = app.store[ROOMS].find({"host_id": host_id}).sort("created_at", -1)
    found = await shown_all(app, await cursor.limit(PROFILE_ROOMS).to_list())
    if not found:
        return None
    found.sort(key=lambda room: PROFILE_ORDER.get(room["state"], 2))  # stable: newest first
    return {"rooms": [{key: room[key] for key in (
        "id", "title", "state", "starts_at", "started_at", "ticket_price", "sold")}
        for room in found]}
