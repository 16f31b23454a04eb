"""Orders and their state machine.

    pending -> paid -> fulfilled
    pending -> closed
    paid | fulfilled -> refunded   (when fully refunded; partial refunds keep the state)

Payment is booked in the same MongoDB transaction as ``pending -> paid``, guarded by
the state, so an order is paid (and its money booked) exactly once however many
notifies, queries or simulator calls race. Fulfilment follows, through the kind.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from kpay.core import metrics
from kpay.core.auth import User
from kpay.core.errors import BadRequest, Conflict, NotFound, PaymentProviderError
from kpay.core.money import accounts
from kpay.core.money.kinds import OrderKind
from kpay.core.money.providers import PaymentProvider, RequestInfo
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.orders")

WALLET_CHANNEL = "wallet"
OPEN_STATES = ("pending", "paid", "fulfilled")

INDEXES = [
    IndexSpec.of("orders", "out_trade_no", unique=True),
    IndexSpec.of("orders", "user_id", ("created_at", -1)),
    IndexSpec.of("orders", "status", "created_at"),
    IndexSpec.of("refunds", "order_id"),
    IndexSpec.of("refunds", "status", "created_at"),
]


def new_id(prefix: str) -> str:
    # Letters and digits only: WeChat's out_trade_no allows nothing else (max 32).
    return prefix + secrets.token_hex(12)


def public(order: dict[str, Any]) -> dict[str, Any]:
    """The order as the API shows it."""
    return {
        "id": order["_id"], "out_trade_no": order["out_trade_no"], "kind": order["kind"],
        "title": order["title"], "amount": order["amount"], "status": order["status"],
        "channel": order["channel"], "item": order["item"],
        "refunded": order.get("refunded", 0), "created_at": order["created_at"],
        "paid_at": order.get("paid_at"), "expires_at": order.get("expires_at"),
    }


def reverse_credits(credits: list[list[Any]], amount: int, total: int) -> list[tuple[str, int]]:
    """Debits that take ``amount`` back from the credited accounts, in proportion,
    rounding down and taking the remainder from the largest credit (no fen lost)."""
    shares = [(account, amount * value // total) for account, value in credits]
    remainder = amount - sum(share for _, share in shares)
    largest = max(range(len(shares)), key=lambda i: credits[i][1])
    shares[largest] = (shares[largest][0], shares[largest][1] + remainder)
    return [(account, -share) for account, share in shares if share]


class Orders:
    def __init__(self, app: KPay) -> None:
        self.app = app
        self.collection = app.store["orders"]
        self.refunds = app.store["refunds"]
        self.kinds: dict[str, OrderKind] = {}
        self.providers: dict[str, PaymentProvider] = {}

    def register(self, kinds: list[OrderKind], providers: list[PaymentProvider]) -> None:
        for kind in kinds:
            if not kind.name or kind.name in self.kinds:
                raise ValueError(f"order kind {kind.name!r} is empty or registered twice")
            self.kinds[kind.name] = kind
        for provider in providers:
            for channel in provider.channels:
                if channel == WALLET_CHANNEL or channel in self.providers:
                    raise ValueError(f"payment channel {channel!r} is claimed twice")
                self.providers[channel] = provider

    @property
    def channels(self) -> list[str]:
        return [WALLET_CHANNEL, *self.providers]

    # -- reading ---------------------------------------------------------------------

    async def get(self, order_id: str) -> dict[str, Any]:
        order = await self.collection.find_one({"_id": order_id})
        if order is None:
            raise NotFound(f"no order {order_id}", code="order_not_found")
        return order

    async def get_for(self, user: User, order_id: str) -> dict[str, Any]:
        order = await self.get(order_id)
        if order["user_id"] != user.id and user.role != "admin":
            # Someone else's order does not exist, as far as this user can tell.
            raise NotFound(f"no order {order_id}", code="order_not_found")
        return order

    # -- creating --------------------------------------------------------------------

    async def create(self, user: User, item: dict[str, Any], channel: str,
                     request: RequestInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        """Price the item on the server, create the order, start paying it.

        Returns ``(order, pay)``. A wallet order is paid here or not created at all.
        """
        kind = self.kinds.get(item.get("kind")) if isinstance(item.get("kind"), str) else None
        if kind is None:
            raise BadRequest(f"unknown item kind {item.get('kind')!r}; kinds: "
                             + ", ".join(sorted(self.kinds)), code="unknown_kind",
                             field="item.kind")
        if channel not in self.channels:
            raise BadRequest(f"unknown channel {channel!r}; channels: "
                             + ", ".join(self.channels), code="unknown_channel",
                             field="channel")
        if kind.channels is not None and channel not in kind.channels:
            raise BadRequest(f"{kind.name} cannot be paid by {channel}",
                             code="channel_not_allowed", field="channel")
        priced = await kind.price(self.app, user, item)
        if not isinstance(priced.amount, int) or priced.amount < 0:
            raise ValueError(f"order kind {kind.name} priced a non-integer or negative amount")
        if sum(v for _, v in priced.credits) != priced.amount:
            raise ValueError(f"order kind {kind.name}: credits do not sum to the amount")
        now = self.app.clock.now()
        order_id = new_id("o")
        order = {
            "_id": order_id, "out_trade_no": order_id, "user_id": user.id,
            "kind": kind.name, "item": priced.item or item, "title": priced.title,
            "amount": priced.amount, "credits": [list(c) for c in priced.credits],
            "channel": channel, "status": "pending", "refunded": 0,
            "refundable": priced.amount, "created_at": now,
            "expires_at": now + timedelta(seconds=self.app.settings.money.order_expiry_seconds),
        }
        pay_now = channel == WALLET_CHANNEL or priced.amount == 0

        async def write(session: AsyncClientSession) -> dict[str, Any]:
            doc = dict(order)
            if pay_now:
                doc.update(status="paid", paid_at=now, paid_via=channel)
            await self.collection.insert_one(doc, session=session)
            await kind.reserve(self.app, doc, session)
            if pay_now and priced.amount:
                await self.app.money.ledger.post(
                    f"order:{order_id}:pay",
                    [(accounts.wallet(user.id), -priced.amount), *priced.credits],
                    memo=priced.title, meta={"order_id": order_id}, session=session)
            return doc

        created = await self.app.store.transaction(write)
        metrics.ORDERS.labels(kind.name, created["status"]).inc()
        if pay_now:
            return await self.fulfil(created), {}
        provider = self.providers[channel]
        try:
            pay = await provider.create_payment(created, request)
        except PaymentProviderError:
            await self.close(order_id, "payment_not_started")
            raise
        await self.collection.update_one({"_id": order_id},
                                         {"$set": {"provider": provider.identifier}})
        return created, pay

    # -- paying ----------------------------------------------------------------------

    async def mark_paid(self, order_id: str, amount: int, *, source: str,
                        transaction_id: str = "", via: str = "") -> dict[str, Any]:
        """Book the payment of a pending order and fulfil it, exactly once.

        ``source`` is the account the money came from (``external:<provider>``). A
        repeated call for a paid order returns it unchanged. Raises Conflict
        ``amount_mismatch`` or ``order_closed``; nothing is booked then.
        """
        now = self.app.clock.now()

        async def write(session: AsyncClientSession) -> dict[str, Any] | None:
            order = await self.collection.find_one_and_update(
                {"_id": order_id, "status": "pending", "amount": amount},
                {"$set": {"status": "paid", "paid_at": now, "paid_via": via,
                          "transaction_id": transaction_id}},
                session=session, return_document=ReturnDocument.AFTER)
            if order is None:
                return None
            if amount:
                await self.app.money.ledger.post(
                    f"order:{order_id}:pay", [(source, -amount), *order["credits"]],
                    memo=order["title"], meta={"order_id": order_id, "via": via},
                    session=session)
            return order

        paid = await self.app.store.transaction(write)
        if paid is None:
            existing = await self.get(order_id)
            if existing["amount"] != amount:
                raise Conflict(f"paid {amount} fen but the order is {existing['amount']} fen",
                               code="amount_mismatch")
            if existing["status"] == "closed":
                raise Conflict(f"order {order_id} is closed", code="order_closed")
            return existing
        metrics.ORDERS.labels(paid["kind"], "paid").inc()
        return await self.fulfil(paid)

    async def fulfil(self, order: dict[str, Any]) -> dict[str, Any]:
        """Let the kind deliver a paid order, then mark it fulfilled (once)."""
        kind = self.kinds.get(order["kind"])
        if kind is None:
            log.error("order %s has kind %s, which no loaded plugin provides",
                      order["_id"], order["kind"])
            return order
        await kind.fulfil(self.app, order)
        done = await self.collection.find_one_and_update(
            {"_id": order["_id"], "status": "paid"},
            {"$set": {"status": "fulfilled", "fulfilled_at": self.app.clock.now()}},
            return_document=ReturnDocument.AFTER)
        if done is None:
            return await self.get(order["_id"])
        metrics.ORDERS.labels(done["kind"], "fulfilled").inc()
        await self.app.notify("on_order_paid", order=done)
        return done

    async def close(self, order_id: str, reason: str) -> dict[str, Any]:
        """pending -> closed (expired, abandoned, failed to start). Idempotent."""
        order = await self.collection.find_one_and_update(
            {"_id": order_id, "status": "pending"},
            {"$set": {"status": "closed", "closed_at": self.app.clock.now(),
                      "close_reason": reason}},
            return_document=ReturnDocument.AFTER)
        if order is None:
            return await self.get(order_id)
        kind = self.kinds.get(order["kind"])
        if kind is not None:
            await kind.release(self.app, order)
        metrics.ORDERS.labels(order["kind"], "closed").inc()
        return order

    # -- refunding -------------------------------------------------------------------

    async def refund(self, order_id: str, amount: int, reason: str, *, to: str = "wallet",
                     key: str | None = None) -> dict[str, Any]:
        """Refund ``amount`` fen of a paid order, to the wallet or the original channel.

        ``key`` makes it idempotent (default: one full refund per order and reason).
        """
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise BadRequest("refund amount must be positive integer fen", code="invalid_amount")
        if to not in ("wallet", "original"):
            raise BadRequest("refund goes to 'wallet' or 'original'", code="invalid_field")
        refund_id = key or f"rf{order_id}{reason}"[:64]
        existing = await self.refunds.find_one({"_id": refund_id})
        if existing is not None:
            return existing
        order = await self.get(order_id)
        to_wallet = to == "wallet" or order["channel"] == WALLET_CHANNEL
        refund = {"_id": refund_id, "order_id": order_id, "out_refund_no": refund_id[:64],
                  "amount": amount, "reason": reason, "user_id": order["user_id"],
                  "to": "wallet" if to_wallet else order["channel"], "status": "pending",
                  "created_at": self.app.clock.now()}

        async def reserve(session: AsyncClientSession) -> None:
            taken = await self.collection.update_one(
                {"_id": order_id, "status": {"$in": ["paid", "fulfilled"]},
                 "refundable": {"$gte": amount}},
                {"$inc": {"refundable": -amount, "refunded": amount}}, session=session)
            if taken.matched_count == 0:
                raise Conflict(f"order {order_id} cannot refund {amount} fen",
                               code="not_refundable", refundable=order.get("refundable", 0))
            await self.refunds.insert_one(refund, session=session)
            if to_wallet:
                await self._book_refund(session, order, refund)

        try:
            await self.app.store.transaction(reserve)
        except DuplicateKeyError:
            return await self.refunds.find_one({"_id": refund_id}) or refund
        if not to_wallet:
            await self._refund_outside(order, refund)
        return await self._finish_refund(order, refund)

    async def _refund_outside(self, order: dict[str, Any], refund: dict[str, Any]) -> None:
        provider = self.providers.get(order["channel"])
        try:
            if provider is None:
                raise PaymentProviderError(f"no provider for channel {order['channel']}")
            await provider.refund(order, refund)
        except PaymentProviderError:
            await self.app.store.transaction(lambda s: self._undo_refund(s, order, refund))
            raise

        async def book(session: AsyncClientSession) -> None:
            await self._book_refund(session, order, refund)

        await self.app.store.transaction(book)

    async def _undo_refund(self, session: AsyncClientSession, order: dict[str, Any],
                           refund: dict[str, Any]) -> None:
        await self.collection.update_one(
            {"_id": order["_id"]},
            {"$inc": {"refundable": refund["amount"], "refunded": -refund["amount"]}},
            session=session)
        await self.refunds.update_one({"_id": refund["_id"]}, {"$set": {"status": "failed"}},
                                      session=session)

    async def _book_refund(self, session: AsyncClientSession, order: dict[str, Any],
                           refund: dict[str, Any]) -> None:
        payee = (accounts.wallet(order["user_id"]) if refund["to"] == "wallet"
                 else accounts.external(order.get("provider", order["channel"])))
        postings = [*reverse_credits(order["credits"], refund["amount"], order["amount"]),
                    (payee, refund["amount"])]
        await self.app.money.ledger.post(f"refund:{refund['_id']}", postings,
                                         memo=f"退款 {order['title']}",
                                         meta={"order_id": order["_id"]}, session=session)
        await self.refunds.update_one({"_id": refund["_id"]},
                                      {"$set": {"status": "succeeded"}}, session=session)
        await self.collection.update_one(
            {"_id": order["_id"], "refundable": 0},
            {"$set": {"status": "refunded", "refunded_at": self.app.clock.now()}},
            session=session)

    async def _finish_refund(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        done = await self.refunds.find_one({"_id": refund["_id"]}) or refund
        kind = self.kinds.get(order["kind"])
        if kind is not None:
            await kind.on_refund(self.app, order, done)
        metrics.ORDERS.labels(order["kind"], "refunded").inc()
        await self.app.notify("on_order_refunded", order=await self.get(order["_id"]),
                              refund=public_refund(done))
        return done


def public_refund(refund: dict[str, Any]) -> dict[str, Any]:
    return {"id": refund["_id"], "order_id": refund["order_id"], "amount": refund["amount"],
            "reason": refund["reason"], "to": refund["to"], "status": refund["status"]}
