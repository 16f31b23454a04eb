"""A room's share card (hook ``share_card``; docs/plugins.md): the poster of
``room:<id>`` shows its title, description, ticket price and host."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.live_qa.store import ROOMS

if TYPE_CHECKING:
    from kpay.core.app import KPay


async def share_card(app: KPay, room_id: str) -> dict[str, Any] | None:
    """Any logged-in user may see a room's title and price (``GET
    /api/v1/rooms/{id}`` shows them), so every room has a card."""
    room = await app.store[ROOMS].find_one({"_id": room_id})
    if room is None:
        return None
    card = {"title": room["title"], "description": room["description"],
            "price": room["ticket_price"], "author_id": room["host_id"],
            "path": f"/static/room.html?id={room['_id']}"}
    if room.get("cover_media_id"):
        card["cover_media_id"] = room["cover_media_id"]
    return card
