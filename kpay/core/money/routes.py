"""Wallet and order routes (API.md "Wallet and orders") and the dev payment simulator."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.errors import BadRequest
from kpay.core.money import accounts
from kpay.core.money import responses as r
from kpay.core.money.orders import public
from kpay.core.money.providers import RequestInfo
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay


class WalletHandler(BaseHandler):
    @api("The caller's wallet: balance and held, in fen", response=r.Wallet)
    async def get(self) -> None:
        user = self.require_user()
        wallet = await self.kpay.money.ledger.wallet(user.id)
        self.write_json({"balance": wallet["balance"], "held": wallet["held"],
                         "available": wallet["available"], "currency": "CNY"})


class LedgerHandler(BaseHandler):
    @api("The caller's wallet ledger, newest first. ``before`` is an ISO time or the "
         "``next_before`` of the previous page", query=("limit", "before"),
         response=r.LedgerPage)
    async def get(self) -> None:
        user = self.require_user()
        self.write_json(await self.page_of(accounts.wallet(user.id)))

    async def page_of(self, account: str) -> dict[str, Any]:
        """One page of an account's ledger entries, from ``limit`` and ``before``."""
        limit = self.query_int("limit", 50, 1, 200)
        before = parse_before(self.get_query_argument("before", None))
        entries = await self.kpay.money.ledger.entries_of(account, limit, before)
        next_before = entries[-1]["key"] if len(entries) == limit else None
        return {"entries": entries, "next_before": next_before}


class EarningsHandler(LedgerHandler):
    @api("The caller's earnings (consultants and authors): balance and ledger, newest "
         "first, paged like the wallet ledger", query=("limit", "before"),
         response=r.EarningsPage)
    async def get(self) -> None:
        user = self.require_user()
        account = accounts.earnings(user.id)
        page = await self.page_of(account)
        self.write_json({"balance": await self.kpay.money.ledger.balance(account), **page})


def parse_before(raw: str | None) -> datetime | str | None:
    """``before`` is a time (ISO 8601; a '+' sent unescaped arrives as a space) or an
    entry key (the cursor of the next page)."""
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        return raw  # not a time: a key (unknown keys are a 400 from the ledger)
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    try:
        # Bounded, and as UTC: 0001-01-01 at +23:59 has no moment the database can store.
        if 1970 <= at.year <= 2200:
            return at.astimezone(UTC)
    except OverflowError:
        pass
    raise BadRequest("before must be a time between 1970 and 2200", code="invalid_field",
                     field="before")


IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,64}$")


def idempotency_key(handler: BaseHandler) -> str | None:
    """The request's ``Idempotency-Key`` header (1 to 64 printable ASCII characters), or
    None; 400 ``invalid_field`` for anything else."""
    key = handler.request.headers.get("Idempotency-Key") or None
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1 to 64 printable ASCII characters",
                         code="invalid_field", field="Idempotency-Key")
    return key


class OrderRequest(BaseModel):
    # An unknown field is a 400, not silently dropped: a misspelt "adjust" must not
    # charge the full price.
    model_config = ConfigDict(extra="forbid")

    item: dict[str, Any]
    channel: str = Field(min_length=1, max_length=16)
    openid: str | None = Field(None, max_length=128)
    adjust: dict[str, Any] = Field(default_factory=dict, description=(
        "Price adjustments asked for, by adjuster name, e.g. {\"coupon\": \"CODE\"}"))


class OrdersHandler(BaseHandler):
    @api("Create an order; the price is resolved on the server. An optional "
         "Idempotency-Key header makes a retried request return the first order",
         body=OrderRequest, status=201, response=r.OrderCreated)
    async def post(self) -> None:
        user = self.require_user()
        request = self.body(OrderRequest)
        info = RequestInfo(client_ip=self.request.remote_ip or "127.0.0.1",
                           openid=request.openid,
                           user_agent=self.request.headers.get("User-Agent", ""))
        key = idempotency_key(self)
        order, pay = await self.kpay.money.orders.create(user, request.item, request.channel,
                                                          info, key=key, adjust=request.adjust)
        if order.get("replayed"):
            self.set_header("Idempotent-Replayed", "true")
        self.write_json({"order": public(order), "pay": pay}, 201)

    @api("The caller's orders, newest first", query=("limit",), response=r.OrderList)
    async def get(self) -> None:
        user = self.require_user()
        limit = self.query_int("limit", 50, 1, 200)
        cursor = self.kpay.money.orders.collection.find({"user_id": user.id}).sort(
            "created_at", -1).limit(limit)
        self.write_json({"orders": [public(o) async for o in cursor]})


class OrderHandler(BaseHandler):
    @api("One of the caller's orders", response=r.OrderResult)
    async def get(self, order_id: str) -> None:
        user = self.require_user()
        order = await self.kpay.money.orders.get_for(user, order_id)
        self.write_json({"order": public(order)})


class DevPayHandler(BaseHandler):
    @api("Dev mode: pay a pending order through the verified-notify code path",
         response=r.OrderResult)
    async def post(self, order_id: str) -> None:
        user = self.require_user()
        orders = self.kpay.money.orders
        order = await orders.get_for(user, order_id)
        provider = orders.provider_of(order)
        source = accounts.external(provider.identifier if provider else "dev")
        paid = await orders.mark_paid(order_id, order["amount"], source=source,
                                      transaction_id=f"dev-{order_id}", via="dev")
        self.write_json({"order": public(paid)})


def money_routes(app: KPay) -> list[Route]:
    routes = [
        Route("/api/v1/wallet", WalletHandler, tags=("money",)),
        Route("/api/v1/wallet/ledger", LedgerHandler, tags=("money",)),
        Route("/api/v1/earnings", EarningsHandler, tags=("money",)),
        Route("/api/v1/orders", OrdersHandler, tags=("money",)),
        Route("/api/v1/orders/{order_id}", OrderHandler, tags=("money",)),
    ]
    if app.dev:
        routes.append(Route("/api/v1/dev/orders/{order_id}/pay", DevPayHandler, tags=("dev",)))
    return routes
