"""Orders and their state machine.

    pending -> paid -> fulfilled
    pending -> closed
    paid | fulfilled -> refunded   (when fully refunded; partial refunds keep the state)

Payment is booked in the same MongoDB transaction as ``pending -> paid``, guarded by
the state, so an order is paid (and its money booked) exactly once however many
notifies, queries or simulator calls race. Fulfilment follows, through the kind, under
a short lease so two callers never fulfil one order at the same time; a fulfilment
that fails leaves the order ``paid`` for the ``money.fulfil_paid`` job to finish.
Refunds live in :mod:`kpay.core.money.refunds`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from kpay.core import metrics
from kpay.core.auth import User
from kpay.core.errors import Conflict, NotFound
from kpay.core.failpoints import failpoint
from kpay.core.money import accounts
from kpay.core.money.adjustments import public_adjustments
from kpay.core.money.checkout import Checkout, request_fingerprint
from kpay.core.money.kinds import OrderKind
from kpay.core.money.providers import PaymentProvider, PaymentState, RequestInfo
from kpay.core.money.refunds import WALLET_CHANNEL, Refunds, public_refund
from kpay.core.store import IndexSpec

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.orders")


# How long one caller may take to fulfil an order before another may try again.
FULFIL_LEASE = timedelta(minutes=1)
#: The refund reason of an order refunded because it could not be fulfilled.
FULFIL_FAILED = "fulfilment_failed"


def fulfillable(now: datetime) -> dict[str, Any]:
    """The query for a paid order that may be fulfilled now: not leased to another
    caller, not backing off after a failure, not given up."""
    return {"status": "paid", "fulfil_gave_up": {"$ne": True},
            "$and": [{"$or": [{"fulfil_lease": None}, {"fulfil_lease": {"$lte": now}}]},
                     {"$or": [{"fulfil_retry_at": None}, {"fulfil_retry_at": {"$lte": now}}]}]}


def fulfil_backoff(attempts: int) -> timedelta:
    """How long after the ``attempts``-th failed fulfilment to try again: 1, 2, 4 ...
    minutes, at most an hour."""
    return timedelta(minutes=min(60, 2 ** min(attempts - 1, 6)))

INDEXES = [
    IndexSpec.of("orders", "out_trade_no", unique=True),
    IndexSpec.of("orders", "user_id", ("created_at", -1)),
    IndexSpec.of("orders", "status", "created_at"),
    IndexSpec.of("orders", "status", "paid_at"),
    IndexSpec.of("orders", "seller", "paid_at"),
    IndexSpec.of("refunds", "order_id"),
    IndexSpec.of("refunds", "out_refund_no"),
    IndexSpec.of("refunds", "status", "created_at"),
]

__all__ = ["Orders", "public", "public_refund"]


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
        "list_amount": order.get("list_amount", order["amount"]),
        "adjustments": public_adjustments(order.get("adjustments", [])),
    }


class Orders:
    def __init__(self, app: KPay) -> None:
        self.app = app
        self.collection = app.store["orders"]
        self.refunds = app.store["refunds"]
        self.refunding = Refunds(self)
        self.checkout = Checkout(self)
        self.kinds: dict[str, OrderKind] = {}
        #: The provider creating new orders on each channel.
        self.providers: dict[str, PaymentProvider] = {}
        #: Every registered provider by identifier, answering-only ones too.
        self.by_identifier: dict[str, PaymentProvider] = {}

    def register(self, kinds: list[OrderKind], providers: list[PaymentProvider]) -> None:
        for kind in kinds:
            if not kind.name or kind.name in self.kinds:
                raise ValueError(f"order kind {kind.name!r} is empty or registered twice")
            self.kinds[kind.name] = kind
        for provider in providers:
            if not provider.identifier or not provider.channels:
                raise ValueError(f"payment provider {provider!r} needs an identifier and "
                                 "channels")
            if provider.identifier in self.by_identifier:
                raise ValueError(f"payment provider {provider.identifier!r} is registered "
                                 "twice")
            self.by_identifier[provider.identifier] = provider
            if not provider.creates_orders:
                continue  # answers only for the orders it started
            for channel in provider.channels:
                if channel == WALLET_CHANNEL or channel in self.providers:
                    raise ValueError(f"payment channel {channel!r} is claimed twice")
                self.providers[channel] = provider

    @property
    def channels(self) -> list[str]:
        return [WALLET_CHANNEL, *self.providers]

    def provider_of(self, order: dict[str, Any]) -> PaymentProvider | None:
        """The provider answering for ``order``: the one that started its payment
        (``order["provider"]``, even when it now only answers), else (no payment was
        started) the channel's. None when that provider is not loaded or does not serve
        the order's channel: a provider never handles another's order."""
        if order.get("provider"):
            provider = self.by_identifier.get(order["provider"])
            return provider if provider and order["channel"] in provider.channels else None
        return self.providers.get(order["channel"])

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

    async def paid_between(self, providers: list[str], start: datetime, end: datetime,
                           limit: int = 100_000) -> AsyncIterator[dict[str, Any]]:
        """The orders paid through one of ``providers`` (identifiers) with ``start <=
        paid_at < end``, oldest first, at most ``limit`` (more raises ``OverflowError``
        once ``limit`` were yielded): what a provider's bill check compares with its
        provider's statement. Refunded ones included (their payment happened)."""
        cursor = self.collection.find(
            {"status": {"$in": ["paid", "fulfilled", "refunded"]},
             "paid_at": {"$gte": start, "$lt": end}, "provider": {"$in": providers}},
            {"out_trade_no": 1, "amount": 1, "status": 1, "paid_at": 1, "provider": 1,
             "transaction_id": 1}).sort("paid_at", 1).limit(limit + 1)
        count = 0
        async for order in cursor:
            count += 1
            if count > limit:
                raise OverflowError(f"more than {limit} orders paid in [{start}, {end})")
            yield order

    async def by_out_trade_no(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """``{out_trade_no: order}`` for the numbers that name an order (at most 1000
        numbers, else ``ValueError``): one query, for a provider's bill check."""
        if len(numbers) > 1000:
            raise ValueError("at most 1000 out_trade_no at a time")
        cursor = self.collection.find({"out_trade_no": {"$in": list(numbers)}})
        return {order["out_trade_no"]: order async for order in cursor}

    # -- creating --------------------------------------------------------------------

    async def create(self, user: User, item: dict[str, Any], channel: str,
                     request: RequestInfo, *, key: str | None = None,
                     adjust: dict[str, Any] | None = None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Price the item on the server, create the order, start paying it.

        Returns ``(order, pay)``. A wallet order (and a free one) is paid here, in the
        transaction that creates it, or not created at all: a wallet that cannot pay
        raises InsufficientBalance (402) and nothing is written.

        ``adjust`` holds what the buyer sent for price adjustments (``{"coupon":
        "CODE"}``); a name no adjuster provides is a 400 ``unknown_adjustment``.
        ``key`` (the client's ``Idempotency-Key``) makes a retried request return the
        order the first one created (``order["replayed"]`` is then True) instead of
        buying twice; the same key for another item or channel is a 409.
        """
        adjust = adjust or {}
        fingerprint = request_fingerprint(item, channel, adjust)
        order_id = keyed_id(user.id, key) if key else new_id("o")
        if key and (replay := await self._replay_create(order_id, fingerprint)):
            return replay
        kind = self.checkout.resolve(item, channel, adjust)
        order = await self.checkout.price(user, kind, item, channel, adjust, order_id)
        order.update(request_key=key, request_fingerprint=fingerprint)
        try:
            created = await self.checkout.commit(user, kind, order)
        except DuplicateKeyError:
            # The same key raced in from another request, which created the order.
            if key and (replay := await self._replay_create(order_id, fingerprint)):
                return replay
            raise
        return await self.checkout.start_payment(created, request)

    async def _replay_create(self, order_id: str, fingerprint: str
                             ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        existing = await self.collection.find_one({"_id": order_id})
        if existing is None:
            return None
        if existing.get("request_fingerprint") != fingerprint:
            raise Conflict("this Idempotency-Key was used for another order",
                           code="idempotency_conflict")
        if existing["status"] == "pending" and "pay" not in existing:
            raise Conflict("the first request with this Idempotency-Key is still starting "
                           "its payment; retry shortly", code="request_in_progress")
        return {**existing, "replayed": True}, existing.get("pay", {})

    # -- paying ----------------------------------------------------------------------

    async def mark_paid(self, order_id: str, amount: int, *, source: str,
                        transaction_id: str = "", via: str = "") -> dict[str, Any]:
        """Book the payment of a pending order and fulfil it, exactly once.

        ``source`` is the account the money came from (``external:<provider>``). A
        repeated call for a paid order returns it unchanged. Raises Conflict
        ``amount_mismatch`` or ``order_closed``; nothing is booked then. A failing
        fulfilment does not raise: the money is booked, the order stays ``paid`` and
        the ``money.fulfil_paid`` job finishes it.
        """
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise Conflict(f"paid amount {amount!r} is not integer fen", code="amount_mismatch")
        now = self.app.clock.now()

        async def write(session: AsyncClientSession) -> dict[str, Any] | None:
            order = await self.collection.find_one_and_update(
                {"_id": order_id, "status": "pending", "amount": amount},
                {"$set": {"status": "paid", "paid_at": now, "paid_via": via,
                          "paid_from": source, "transaction_id": transaction_id}},
                session=session, return_document=ReturnDocument.AFTER)
            if order is None:
                return None
            if amount:
                await self.app.money.ledger.post(
                    f"order:{order_id}:pay", [(source, -amount), *order["credits"]],
                    memo=order["title"], meta={"order_id": order_id, "via": via},
                    session=session)
            return order

        failpoint("orders.mark_paid.before")
        paid = await self.app.store.transaction(write)
        failpoint("orders.mark_paid.after")
        if paid is None:
            existing = await self.get(order_id)
            if existing["amount"] != amount:
                raise Conflict(f"paid {amount} fen but the order is {existing['amount']} fen",
                               code="amount_mismatch", expected=existing["amount"])
            if existing["status"] == "closed":
                raise Conflict(f"order {order_id} is closed", code="order_closed")
            return existing
        metrics.ORDERS.labels(paid["kind"], "paid").inc()
        return await self.fulfil(paid)

    async def apply_payment_state(self, provider: PaymentProvider, state: PaymentState,
                                  via: str = "notify") -> dict[str, Any] | None:
        """Book what a provider reported (from ``handle_notify`` or ``query``): a ``paid``
        state goes through :meth:`mark_paid`; other states change nothing. Returns the
        order, or None when ``state.out_trade_no`` names no order ``provider`` answers
        for (:meth:`provider_of`; a provider never pays another's order)."""
        order = await self.collection.find_one({"out_trade_no": state.out_trade_no})
        if order is None or self.provider_of(order) is not provider:
            return None
        if state.status != "paid":
            return order
        return await self.mark_paid(order["_id"], state.amount,
                                    source=accounts.external(provider.identifier),
                                    transaction_id=state.transaction_id, via=via)

    async def fulfil(self, order: dict[str, Any]) -> dict[str, Any]:
        """Let the kind deliver a paid order, then mark it fulfilled (once).

        The caller takes a lease first, so concurrent callers (a notify racing the
        fulfil job) never run the kind's ``fulfil`` at the same time. If it raises,
        the order stays ``paid`` and the lease is dropped for the job to retry.
        """
        kind = self.kinds.get(order["kind"])
        if kind is None:
            log.error("order %s has kind %s, which no loaded plugin provides",
                      order["_id"], order["kind"])
            return order
        now = self.app.clock.now()
        lease = now + FULFIL_LEASE
        claimed = await self.collection.find_one_and_update(
            {"_id": order["_id"], **fulfillable(now)},
            {"$set": {"fulfil_lease": lease}, "$inc": {"fulfil_attempts": 1}},
            return_document=ReturnDocument.AFTER)
        if claimed is None:
            return await self.get(order["_id"])
        failpoint("orders.fulfil.before_kind")
        try:
            await kind.fulfil(self.app, claimed)
        except Exception as e:
            attempts = claimed.get("fulfil_attempts", 1)
            log.exception("fulfilment of order %s failed (attempt %d)", order["_id"], attempts)
            last = attempts >= self.app.settings.money.fulfil_max_attempts
            # The lease is dropped and, on the last attempt, the order given up in one
            # guarded write: no other node can claim it between the two.
            released = await self.collection.update_one(
                {"_id": order["_id"], "status": "paid", "fulfil_lease": lease},
                {"$set": {"fulfil_error": f"{type(e).__name__}: {e}"[:500],
                          "fulfil_retry_at": now + fulfil_backoff(attempts),
                          **({"fulfil_gave_up": True} if last else {})},
                 "$unset": {"fulfil_lease": ""}})
            if last and released.modified_count:
                await self.give_up_fulfilment(claimed, e)
            return await self.get(order["_id"])
        failpoint("orders.fulfil.after_kind")
        done = await self.collection.find_one_and_update(
            {"_id": order["_id"], "status": "paid"},
            {"$set": {"status": "fulfilled", "fulfilled_at": self.app.clock.now()},
             "$unset": {"fulfil_lease": "", "fulfil_error": ""}},
            return_document=ReturnDocument.AFTER)
        failpoint("orders.fulfil.after_mark")
        if done is None:
            return await self.get(order["_id"])
        metrics.ORDERS.labels(done["kind"], "fulfilled").inc()
        await self.app.notify("on_order_paid", order=done)
        await self.app.money.announce_earnings(account for account, _ in done["credits"])
        return done

    async def give_up_fulfilment(self, order: dict[str, Any], error: Exception | str) -> None:
        """Fulfilment failed ``fulfil_max_attempts`` times (the order is marked
        ``fulfil_gave_up``): refund what the buyer paid to their wallet and put the order
        on the attention list. The refund is keyed, so the fulfil job calls this again
        for an order still ``paid`` (a crash in between, a failed refund) and it refunds
        once."""
        details: dict[str, Any] = {"attempts": order.get("fulfil_attempts"),
                                   "kind": order["kind"], "user_id": order["user_id"]}
        key = f"fulfil-failed-{order['_id']}"
        earlier = await self.refunding.collection.find_one({"_id": key}, {"amount": 1})
        try:
            amount = earlier["amount"] if earlier else order["refundable"]
            refund = await self.refund(order["_id"], amount, FULFIL_FAILED, to="wallet",
                                       key=key)
            details["refunded"] = refund["amount"] if refund["status"] == "succeeded" else 0
        except Exception as refund_error:
            # A top-up (it credited the wallet itself) or a free order: nothing to give
            # back to the wallet; an operator decides.
            log.exception("order %s: the refund after failed fulfilment failed", order["_id"])
            details["refund_error"] = f"{type(refund_error).__name__}: {refund_error}"[:500]
        await self.app.attention.report("money.fulfil", f"order:{order['_id']}", error,
                                        **details)

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
        await self.app.money.adjustments.release(f"order:{order_id}",
                                                 order.get("adjustments", []))
        metrics.ORDERS.labels(order["kind"], "closed").inc()
        return order

    # -- refunding -------------------------------------------------------------------

    async def refund(self, order_id: str, amount: int, reason: str, *, to: str = "wallet",
                     key: str | None = None, purpose: str | None = None) -> dict[str, Any]:
        """Refund ``amount`` fen of a paid or fulfilled order, returning the refund record.

        ``to="wallet"`` credits the buyer's wallet at once; ``"original"`` pays back
        through the payment provider (a wallet order's original channel is the wallet).
        The money comes back from the accounts the order credited, in proportion.
        ``key`` makes it idempotent (default: one refund per order and reason): the
        same key again returns the first refund; with another amount it is a 409
        ``idempotency_conflict``. More than is left is a 409 ``not_refundable``.
        ``purpose`` is ``"revoke"`` (the kind takes back what was bought) or
        ``"adjust"`` (a price adjustment: the buyer keeps it); unsaid, refunding all
        that is left revokes and less adjusts.
        """
        return await self.refunding.refund(order_id, amount, reason, to=to, key=key,
                                           purpose=purpose)


def keyed_id(user_id: str, key: str) -> str:
    """The order id for a client's idempotency key: one order per user and key."""
    digest = hashlib.sha256(f"{user_id}\n{key}".encode()).hexdigest()
    return "o" + digest[:24]
