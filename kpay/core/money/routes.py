"""Wallet and order routes (API.md "Wallet and orders") and the dev payment simulator."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kpay.core.errors import BadRequest
from kpay.core.money import accounts
from kpay.core.money.orders import public
from kpay.core.money.providers import RequestInfo
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay


class WalletHandler(BaseHandler):
    @api("The caller's wallet: balance and held, in fen")
    async def get(self) -> None:
        user = self.require_user()
        wallet = await self.kpay.money.ledger.wallet(user.id)
        self.write_json({"balance": wallet["balance"], "held": wallet["held"],
                         "available": wallet["available"], "currency": "CNY"})


class LedgerHandler(BaseHandler):
    @api("The caller's wallet ledger, newest first", query=("limit", "before"))
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 50, 1, 200)
        before_raw = self.get_query_argument("before", None)
        before = None
        if before_raw:
            try:
                before = datetime.fromisoformat(before_raw)
            except ValueError:
                raise BadRequest("before must be an ISO 8601 time", code="invalid_field",
                                 field="before") from None
        entries = await self.kpay.money.ledger.entries_of(accounts.wallet(user.id), limit, before)
        self.write_json({"entries": entries})


class OrderRequest(BaseModel):
    item: dict[str, Any]
    channel: str = Field(min_length=1, max_length=16)
    openid: str | None = Field(None, max_length=128)


class OrdersHandler(BaseHandler):
    @api("Create an order; the price is resolved on the server", body=OrderRequest, status=201)
    async def post(self) -> None:
        user = self.require_user()
        request = self.body(OrderRequest)
        info = RequestInfo(client_ip=self.request.remote_ip or "127.0.0.1",
                           openid=request.openid,
                           user_agent=self.request.headers.get("User-Agent", ""))
        order, pay = await self.kpay.money.orders.create(user, request.item, request.channel, info)
        self.write_json({"order": public(order), "pay": pay}, 201)

    @api("The caller's orders, newest first", query=("limit",))
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 50, 1, 200)
        cursor = self.kpay.money.orders.collection.find({"user_id": user.id}).sort(
            "created_at", -1).limit(limit)
        self.write_json({"orders": [public(o) async for o in cursor]})


class OrderHandler(BaseHandler):
    @api("One of the caller's orders")
    async def get(self, order_id: str) -> None:
        user = self.require_user()
        order = await self.kpay.money.orders.get_for(user, order_id)
        self.write_json({"order": public(order)})


class DevPayHandler(BaseHandler):
    @api("Dev mode: pay a pending order through the verified-notify code path")
    async def post(self, order_id: str) -> None:
        user = self.require_user()
        orders = self.kpay.money.orders
        order = await orders.get_for(user, order_id)
        provider = orders.providers.get(order["channel"])
        source = accounts.external(provider.identifier if provider else "dev")
        paid = await orders.mark_paid(order_id, order["amount"], source=source,
                                      transaction_id=f"dev-{order_id}", via="dev")
        self.write_json({"order": public(paid)})


def money_routes(app: KPay) -> list[Route]:
    routes = [
        Route("/api/v1/wallet", WalletHandler, tags=("money",)),
        Route("/api/v1/wallet/ledger", LedgerHandler, tags=("money",)),
        Route("/api/v1/orders", OrdersHandler, tags=("money",)),
        Route("/api/v1/orders/{order_id}", OrderHandler, tags=("money",)),
    ]
    if app.dev:
        routes.append(Route("/api/v1/dev/orders/{order_id}/pay", DevPayHandler, tags=("dev",)))
    return routes
