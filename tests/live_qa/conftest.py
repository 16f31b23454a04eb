"""Fixtures for the live_qa tests: only live_qa loaded, plus a local payment provider
for the provider channels (paid through the dev simulator route), and a helper."""

from __future__ import annotations

from typing import Any

import pytest

from kpay import hookimpl
from kpay.core.money.providers import PaymentProvider, PaymentState, RequestInfo


class LocalProvider(PaymentProvider):
    """Stands in for WeChat Pay on the ``native`` channel: hands out a code URL and
    never reports a payment by itself (tests pay through /dev/orders/{id}/pay)."""

    identifier = "localpay"
    verbose_name = "local test provider"
    channels = ("native",)

    async def create_payment(self, order: dict[str, Any], request: RequestInfo) -> dict:
        return {"code_url": f"weixin://wxpay/local/{order['_id']}"}

    async def query(self, order: dict[str, Any]) -> PaymentState:
        return PaymentState("pending")

    async def refund(self, order: dict[str, Any], refund: dict[str, Any]) -> dict:
        return {"refund_id": "local-" + refund["_id"]}


class LocalProviderPlugin:
    @hookimpl
    def register_payment_providers(self, app):
        return [LocalProvider()]


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["live_qa"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("localpay", LocalProviderPlugin())]


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
