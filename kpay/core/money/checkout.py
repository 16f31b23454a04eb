"""Creating an order, in four steps: resolve (kind and channel), price (the kind's price,
then the price adjustments), commit (one transaction: the order, the kind's and the
adjusters' reservations, and for the wallet the payment), start the payment with the
provider. ``Orders.create`` runs them; docs/money.md, "Orders", describes the contract.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.client_session import AsyncClientSession

from kpay.core import metrics
from kpay.core.auth import User
from kpay.core.errors import ApiError, BadRequest
from kpay.core.money import accounts
from kpay.core.money.adjustments import PriceTarget, adjusted_credits
from kpay.core.money.kinds import OrderKind, Priced
from kpay.core.money.providers import RequestInfo
from kpay.core.money.refunds import WALLET_CHANNEL
from kpay.core.ratelimit import enforce_cap

if TYPE_CHECKING:
    from kpay.core.money.orders import Orders


def request_fingerprint(item: Any, channel: str, adjust: dict[str, Any] | None = None) -> str:
    """What a retried request must repeat to count as the same order request (an
    order without adjustments keeps the fingerprint it had before they existed)."""
    asked: dict[str, Any] = {"item": item, "channel": channel}
    if adjust:
        asked["adjust"] = adjust
    body = json.dumps(asked, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def check_priced(kind: OrderKind, priced: Priced) -> None:
    """A kind's price must be integer fen with credits of integer fen summing to it:
    a bug in a plugin fails the request (500) rather than booking wrong money."""
    def is_fen(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not is_fen(priced.amount) or priced.amount < 0:
        raise ValueError(f"order kind {kind.name} priced {priced.amount!r}, not integer fen")
    for account, value in priced.credits:
        if not isinstance(account, str) or ":" not in account or not is_fen(value) or value < 0:
            raise ValueError(f"order kind {kind.name}: bad credit {(account, value)!r}")
    if sum(v for _, v in priced.credits) != priced.amount:
        raise ValueError(f"order kind {kind.name}: credits do not sum to the amount")


def seller_of(credits: list[tuple[str, int]]) -> str | None:
    """The one user whose earnings a price credits, if there is exactly one."""
    earners = {account.partition(":")[2] for account, _ in credits
               if accounts.kind_of(account) == "earnings"}
    return earners.pop() if len(earners) == 1 else None


class Checkout:
    """The steps of ``Orders.create`` (reached through it)."""

    def __init__(self, orders: Orders) -> None:
        self.orders = orders
        self.app = orders.app

    def resolve(self, item: Any, channel: str, adjust: dict[str, Any]) -> OrderKind:
        """The kind named by ``item.kind``, checked against the channel and adjustments."""
        orders = self.orders
        name = item.get("kind") if isinstance(item, dict) else None
        kind = orders.kinds.get(name) if isinstance(name, str) else None
        if kind is None:
            raise BadRequest(f"unknown item kind {name!r}; kinds: "
                             + ", ".join(sorted(orders.kinds)), code="unknown_kind",
                             field="item.kind")
        if channel not in orders.channels:
            raise BadRequest(f"unknown channel {channel!r}; channels: "
                             + ", ".join(orders.channels), code="unknown_channel",
                             field="channel")
        if kind.channels is not None and channel not in kind.channels:
            raise BadRequest(f"{kind.name} cannot be paid by {channel}",
                             code="channel_not_allowed", field="channel")
        self.app.money.adjustments.check_requested(adjust)
        if adjust and not kind.adjustable:
            raise BadRequest(f"the price of {kind.name} cannot be adjusted",
                             code="not_adjustable", field="adjust")
        return kind

    async def price(self, user: User, kind: OrderKind, item: dict[str, Any], channel: str,
                    adjust: dict[str, Any], order_id: str) -> dict[str, Any]:
        """The order document, priced: the kind's price, then every adjustment."""
        priced = await kind.price(self.app, user, item)
        check_priced(kind, priced)
        adjustments: list[dict[str, Any]] = []
        if kind.adjustable:
            target = PriceTarget(kind.name, priced.item or {"kind": kind.name}, priced.amount,
                                 seller_of(priced.credits))
            adjustments = await self.app.money.adjustments.price(user.id, target, adjust)
        amount, credits = adjusted_credits(priced.credits, priced.amount, adjustments)
        now = self.app.clock.now()
        order = {
            "_id": order_id, "out_trade_no": order_id, "user_id": user.id,
            "kind": kind.name, "item": priced.item or {"kind": kind.name}, "title": priced.title,
            "amount": amount, "credits": [list(c) for c in credits],
            "channel": channel, "status": "pending", "refunded": 0,
            "refundable": amount, "created_at": now,
            "expires_at": now + timedelta(seconds=self.app.settings.money.order_expiry_seconds),
        }
        if adjustments:
            order.update(list_amount=priced.amount, adjustments=adjustments)
        # Who sold it, for the seller's dashboard (docs/analytics.md); None when no one
        # user earns it (a wallet top-up, several earners).
        order["seller"] = seller_of(credits)
        return order

    async def commit(self, user: User, kind: OrderKind, order: dict[str, Any]
                     ) -> dict[str, Any]:
        """Write the order with its reservations, in one transaction; a wallet or free
        order is paid in it too. Raises DuplicateKeyError when a retried request with
        the same key got there first."""
        now = order["created_at"]
        pay_now = order["channel"] == WALLET_CHANNEL or order["amount"] == 0
        if pay_now:
            order.update(status="paid", paid_at=now, paid_via=order["channel"],
                         paid_from=accounts.wallet(user.id) if order["amount"] else "")
        else:
            # Each pending order may have started a payment with the provider.
            cap = self.app.settings.money.max_pending_orders_per_user
            await enforce_cap(
                self.orders.collection,
                {"user_id": user.id, "status": "pending", "expires_at": {"$gt": now}},
                cap, "pending_orders",
                f"you have {cap} unpaid orders; pay one or wait until one expires")

        async def write(session: AsyncClientSession) -> dict[str, Any]:
            doc = dict(order)  # a retried transaction starts from a clean copy
            await self.orders.collection.insert_one(doc, session=session)
            await kind.reserve(self.app, doc, session)
            await self.app.money.adjustments.reserve(
                f"order:{doc['_id']}", user.id, doc.get("adjustments", []), session)
            if pay_now and doc["credits"]:
                # A free order still books a platform-funded discount.
                await self.app.money.ledger.post(
                    f"order:{doc['_id']}:pay",
                    [(accounts.wallet(user.id), -doc["amount"]),
                     *[(a, v) for a, v in doc["credits"]]],
                    memo=doc["title"], meta={"order_id": doc["_id"]}, session=session)
            return doc

        created = await self.app.store.transaction(write)
        metrics.ORDERS.labels(kind.name, created["status"]).inc()
        return created

    async def start_payment(self, created: dict[str, Any], request: RequestInfo
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Fulfil a paid order, or ask the provider to start paying a pending one."""
        orders = self.orders
        if created["status"] == "paid":
            return await orders.fulfil(created), {}
        provider = orders.providers[created["channel"]]
        try:
            pay = await provider.create_payment(created, request)
        except ApiError:
            # Refused before any money could move (provider down, no openid, ...):
            # the order must not linger as pending until it expires.
            await orders.close(created["_id"], "payment_not_started")
            raise
        # ``pay`` is kept for a retried request with the same key (prepay ids and
        # code_url stay valid for the order's life).
        await orders.collection.update_one(
            {"_id": created["_id"]}, {"$set": {"provider": provider.identifier, "pay": pay}})
        return {**created, "provider": provider.identifier}, pay

