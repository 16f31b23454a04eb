"""Shared set-up of the coupons tests: the plugins enabled, coupons, rooms and courses
made through the real API, and the balances the tests look at."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

PLUGINS = ["coupons", "live_qa", "course_drip", "consult_billing", "wechat_pay"]
ORDERS = "/api/v1/orders"
COUPONS = "/api/v1/coupons"
EARNED, FEE, PROMO = "earnings:carol", "platform:revenue", "platform:promotions"


def coupon_body(app: Any, code: str, **fields: Any) -> dict[str, Any]:
    """A valid coupon: 5.00 yuan off, ten uses, a week to go, unless told otherwise."""
    expires = app.clock.now() + timedelta(days=7)
    body = {"code": code, "expires_at": expires.isoformat(), "max_uses": 10, **fields}
    if not {"off_fen", "off_percent", "free_minutes"} & set(fields):
        body["off_fen"] = 500
    if fields.get("funded_by") == "platform":
        body.setdefault("max_off_fen", 5_000)  # a platform coupon must be capped
    return body


async def make_coupon(app: Any, by: Any, code: str, **fields: Any) -> dict[str, Any]:
    status, body = await by.post(COUPONS, coupon_body(app, code, **fields))
    assert status == 201, body
    return body["coupon"]


async def open_room(host: Any, price: int = 990) -> str:
    status, body = await host.post("/api/v1/rooms", {"title": "如何准备面试",
                                                     "ticket_price": price})
    assert status == 201, body
    return body["room"]["id"]


async def publish_course(author: Any, price: int = 2000) -> str:
    status, body = await author.post("/api/v1/courses", {
        "title": "Drip course", "price": price, "lessons": [{"title": "L0", "body": "text"}]})
    assert status == 201, body
    course_id = body["course"]["id"]
    status, body = await author.post(f"/api/v1/courses/{course_id}/publish")
    assert status == 200, body
    return course_id


def ticket(room_id: str, code: str | None = None, channel: str = "wallet") -> dict[str, Any]:
    return order({"kind": "live_ticket", "room_id": room_id}, code, channel)


def course(course_id: str, code: str | None = None, channel: str = "wallet") -> dict[str, Any]:
    return order({"kind": "course", "course_id": course_id}, code, channel)


def order(item: dict[str, Any], code: Any, channel: str) -> dict[str, Any]:
    body: dict[str, Any] = {"item": item, "channel": channel}
    if code is not None:
        body["adjust"] = {"coupon": code}
    return body


async def balances(app: Any, *accounts: str) -> list[int]:
    return [await app.money.ledger.balance(a) for a in accounts]


async def uses(app: Any, code: str) -> int:
    coupon = await app.store["coupons"].find_one({"_id": code})
    assert coupon["max_uses"] - coupon["uses_left"] == len(coupon["claims"])
    return len(coupon["claims"])


async def orders_of(client: Any) -> list[dict[str, Any]]:
    """The client's orders other than top-ups, newest first (through the API)."""
    status, body = await client.get("/api/v1/orders?limit=200")
    assert status == 200, body
    return [o for o in body["orders"] if o["kind"] != "wallet_topup"]
