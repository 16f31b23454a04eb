"""What the home page needs of live rooms (docs/live_qa.md "Storefront"): rooms in
``app.search``, host names on listed rooms, and the rooms a user holds a ticket to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from kpay.core.web import BaseHandler, Route, api
from plugins.live_qa import responses as r
from plugins.live_qa import rooms
from plugins.live_qa.store import ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

KIND = "room"
#: Ticket states that mean the user bought the room (a refunded one did not stay bought).
HELD = ("active", "pending")


def search_item(room: dict[str, Any], host_name: str) -> dict[str, Any]:
    """``app.search.put`` arguments for a room: found while it has not ended."""
    return {"item_id": room["_id"], "title": room["title"], "author_id": room["host_id"],
            "author_name": host_name, "category": room.get("category"),
            "visible": room["state"] != rooms.ENDED,
            "extra": {"price": room["ticket_price"], "state": room["state"],
                      "starts_at": room["starts_at"].isoformat()}}


async def index_room(app: KPay, room: dict[str, Any]) -> None:
    profile = await app.users.profile(room["host_id"]) or {}
    await app.search.put(KIND, **search_item(room, profile.get("name") or room["host_id"]))


async def backfill(app: KPay) -> None:
    """Rooms made before search existed, once (``on_startup``)."""
    async def items() -> AsyncIterator[dict[str, Any]]:
        async for room in app.store[ROOMS].find({"state": {"$ne": rooms.ENDED}}):
            profile = await app.users.profile(room["host_id"]) or {}
            yield search_item(room, profile.get("name") or room["host_id"])
    await app.search.backfill(KIND, items())


async def with_hosts(app: KPay, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each public room with ``host_name`` and ``host_avatar_url`` (None without one)."""
    profiles = await app.users.profiles(room["host_id"] for room in listed)
    for room in listed:
        profile = profiles.get(room["host_id"]) or {}
        room["host_name"] = profile.get("name") or room["host_id"]
        room["host_avatar_url"] = profile.get("avatar_url")
    return listed


class MyRoomsHandler(BaseHandler):
    @api("Rooms the caller bought a ticket to, newest ticket first", query=("limit",),
         response=r.LiveRoomList)
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 50, 1, 200)
        tickets = self.kpay.store[TICKETS].find(
            {"user_id": user.id, "status": {"$in": list(HELD)}}).sort(
            "created_at", -1).limit(limit)
        order = [ticket["room_id"] async for ticket in tickets]
        found = {room["_id"]: room async for room in
                 self.kpay.store[ROOMS].find({"_id": {"$in": order}})}
        listed = await rooms.shown_all(
            self.kpay, [found[room_id] for room_id in order if room_id in found])
        self.write_json({"rooms": await with_hosts(self.kpay, listed)})


def storefront_routes() -> list[Route]:
    return [Route("/api/v1/me/rooms", MyRoomsHandler, tags=("live_qa",))]
