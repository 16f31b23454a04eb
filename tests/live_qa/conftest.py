"""Fixtures for the live_qa tests: only live_qa loaded, plus the shared fake payment
provider for the provider channels (paid through the dev simulator route), and a helper."""

from __future__ import annotations

from typing import Any

import pytest

from kpay.testing import FakeProvider, FakeProviderPlugin


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["live_qa"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    # Stands in for WeChat Pay on the native channel: never reports a payment by itself
    # (tests pay through /dev/orders/{id}/pay).
    return [("localpay", FakeProviderPlugin(FakeProvider("localpay", ("native",))))]


class Live:
    """Short ways to set up rooms, tickets and questions through the real API."""

    def __init__(self, api: Any, app: Any) -> None:
        self.api = api
        self.app = app

    async def host(self, user_id: str = "host") -> str:
        return await self.api.login(user_id, "consultant")

    async def room(self, host_token: str, start: bool = True, **fields: Any) -> dict:
        body = {"title": "如何准备面试", "ticket_price": 990, "question_min_price": 500,
                **fields}
        status, created = await self.api.post("/api/v1/rooms", body, host_token)
        assert status == 201, created
        room = created["room"]
        if start:
            status, started = await self.api.post(f"/api/v1/rooms/{room['id']}/start",
                                                  token=host_token)
            assert status == 200, started
            room = started["room"]
        return room

    async def student(self, user_id: str, room: dict | None = None, funds: int = 0) -> str:
        token = await self.api.login(user_id, "student")
        if funds:
            await self.api.topup(token, funds)
        if room is not None:
            await self.buy_ticket(token, room)
        return token

    async def order(self, token: str, item: dict, channel: str = "wallet") -> tuple[int, dict]:
        return await self.api.post("/api/v1/orders", {"item": item, "channel": channel}, token)

    async def buy_ticket(self, token: str, room: dict) -> dict:
        status, body = await self.order(token, {"kind": "live_ticket", "room_id": room["id"]})
        assert status == 201, body
        assert body["order"]["status"] == "fulfilled", body
        return body["order"]

    async def ask_paid(self, token: str, room: dict, text: str, bounty: int) -> tuple[int, dict]:
        return await self.order(token, {"kind": "live_question", "room_id": room["id"],
                                        "text": text, "bounty": bounty})

    async def wallet(self, token: str) -> dict:
        status, body = await self.api.get("/api/v1/wallet", token)
        assert status == 200, body
        return body

    async def balance(self, account: str) -> int:
        return await self.app.money.ledger.balance(account)

@pytest.fixture
def live(api: Any, kpay_app: Any) -> Live:
    return Live(api, kpay_app)
