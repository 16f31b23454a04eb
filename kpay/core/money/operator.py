"""Operators' refunds (docs/operations.md, "Refunding an order"): of a paid order through
``Orders.refund``, and of a payment that arrived after its order was closed.

Both the admin routes (kpay/core/money/admin_routes.py) and ``kpay refund`` call
:func:`refund_order` and :func:`refund_paid_after_close`, which write the audit log.

**Paid after close.** The payer paid at the provider after kpay had closed the order;
the notify booked nothing (the order's kind had released what it held) and put the order
on the needs-attention list (``money.notify``, ``order:<id>``). The order's payment was
never booked, so ``Orders.refund`` (which takes money back from the order's credits)
cannot refund it. :class:`LatePayments` refunds the whole amount through the provider
instead, with two ledger movements:

- ``late:<order id>:pay`` (``external:<provider>`` -> ``late:<provider>``): the money
  that came in, booked in one transaction with the refund record and a guarded claim on
  the order (``late_refund_id``), so only one refund of it can be under way;
- ``refund:<refund id>`` (``late:<provider>`` -> ``external:<provider>``): booked once
  the provider has refunded it.

``external:<provider>`` ends where it was; ``late:<provider>`` holds exactly the late
money not yet sent back. A provider that refuses leaves the refund ``failed`` and the
order claimable again (the next attempt gets a new key); an unknown outcome leaves it
``pending``, and a retry with the same key calls the provider again with the same
``out_refund_no``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from kpay.core import attention
from kpay.core.errors import ApiError, BadRequest, Conflict, NotFound, PaymentProviderError
from kpay.core.money import accounts
from kpay.core.money.notify import ATTENTION_SOURCE
from kpay.core.money.orders import public
from kpay.core.money.providers import check_refund_capability
from kpay.core.money.refunds import REVOKE, out_refund_no, public_refund

if TYPE_CHECKING:
    from kpay.core.app import KPay
    from kpay.core.money.orders import Orders

#: The refund reason of a paid-after-close refund when the operator gives none.
LATE_REASON = "paid after the order was closed"
#: The longest refund reason (characters, Chinese or not): shown to operators, audited.
MAX_REASON = 200


def checked_reason(reason: str, required: bool = True) -> str:
    """The reason stripped; 400 ``invalid_field`` when empty (if required) or too long."""
    reason = reason.strip()
    if (required and not reason) or len(reason) > MAX_REASON:
        raise BadRequest(f"give a reason of 1 to {MAX_REASON} characters",
                         code="invalid_field", field="reason")
    return reason


def late_pay_key(order_id: str) -> str:
    return f"late:{order_id}:pay"


class LatePayments:
    """Refunds of payments that arrived after their order was closed."""

    def __init__(self, orders: Orders) -> None:
        self.orders = orders
        self.app = orders.app
        self.collection = orders.app.store["refunds"]

    async def refund(self, order_id: str, reason: str = LATE_REASON, *,
                     key: str | None = None) -> dict[str, Any]:
        """Refund the whole amount paid for the closed order ``order_id`` through its
        provider; returns the refund record. 409 ``not_paid_after_close`` for an order
        that is not closed, ``not_refundable`` while another refund of it is under way."""
        order = await self.orders.get(order_id)
        if order["status"] != "closed" or not order["amount"]:
            raise Conflict(f"order {order_id} is {order['status']}: only a closed order "
                           "paid afterwards is refunded this way", code="not_paid_after_close",
                           status_now=order["status"])
        provider = self.orders.providers.get(order["channel"])
        if provider is None:
            raise Conflict(f"no payment provider for {order['channel']} is loaded",
                           code="refund_not_supported")
        check_refund_capability(provider, order, order["amount"])
        # One key per attempt: a refused attempt frees the order for the next one.
        refund_id = key or f"late{order_id}n{order.get('late_refund_attempts', 0)}"
        existing = await self.collection.find_one({"_id": refund_id})
        if existing is not None:
            return await self._replay(existing, order)
        amount, external = order["amount"], accounts.external(provider.identifier)
        refund = {"_id": refund_id, "order_id": order_id,
                  "out_refund_no": out_refund_no(self.orders, order, refund_id),
                  "amount": amount, "reason": reason, "purpose": REVOKE,
                  "user_id": order["user_id"], "to": order["channel"], "payee": external,
                  "status": "pending", "finished": True, "late": True,
                  "created_at": self.app.clock.now()}

        async def reserve(session: AsyncClientSession) -> None:
            await self.collection.insert_one(refund, session=session)
            claimed = await self.orders.collection.update_one(
                {"_id": order_id, "status": "closed", "late_refund_id": None},
                {"$set": {"late_refund_id": refund_id}, "$inc": {"refunded": amount}},
                session=session)
            if not claimed.modified_count:
                raise Conflict(f"order {order_id} is already being refunded",
                               code="not_refundable", refundable=0)
            # Booked by an earlier attempt that the provider refused: the money is in.
            if await self.app.money.ledger.entries.find_one(
                    {"_id": late_pay_key(order_id)}, {"_id": 1}, session=session) is None:
                await self.app.money.ledger.post(
                    late_pay_key(order_id), [(external, -amount),
                                             (accounts.late(provider.identifier), amount)],
                    memo=f"关闭后到账 {order['title']}", meta={"order_id": order_id},
                    session=session)

        try:
            await self.app.store.transaction(reserve)
        except DuplicateKeyError:
            raced = await self.collection.find_one({"_id": refund_id})
            if raced is None:
                raise
            return await self._replay(raced, order)
        return await self._send(order, refund)

    async def _replay(self, existing: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
        if existing["order_id"] != order["_id"] or not existing.get("late"):
            raise Conflict(f"refund key {existing['_id']!r} was used for another refund",
                           code="idempotency_conflict", key=existing["_id"])
        if existing["status"] == "pending":
            # An earlier attempt stopped between the provider and the books: resume.
            return await self._send(order, existing)
        return existing

    async def _send(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        provider = self.orders.providers[order["channel"]]
        try:
            result = await provider.refund(order, refund)
        except PaymentProviderError as e:
            error = str(e)
            await self.app.store.transaction(lambda s: self._fail(s, refund, error))
            raise
        await self.collection.update_one({"_id": refund["_id"]},
                                         {"$set": {"provider_result": result or {}}})
        await self.app.store.transaction(lambda s: self._book(s, refund, provider.identifier))
        return await self.collection.find_one({"_id": refund["_id"]}) or refund

    async def _fail(self, session: AsyncClientSession, refund: dict[str, Any],
                    error: str) -> None:
        failed = await self.collection.update_one(
            {"_id": refund["_id"], "status": "pending"},
            {"$set": {"status": "failed", "error": error}}, session=session)
        if failed.modified_count:
            await self.orders.collection.update_one(
                {"_id": refund["order_id"], "late_refund_id": refund["_id"]},
                {"$inc": {"refunded": -refund["amount"], "late_refund_attempts": 1},
                 "$unset": {"late_refund_id": ""}}, session=session)

    async def _book(self, session: AsyncClientSession, refund: dict[str, Any],
                    provider: str) -> None:
        now = self.app.clock.now()
        marked = await self.collection.find_one_and_update(
            {"_id": refund["_id"], "status": "pending"},
            {"$set": {"status": "succeeded", "succeeded_at": now}},
            session=session, return_document=ReturnDocument.AFTER)
        if marked is None:
            return  # booked by a racing call with the same key
        await self.app.money.ledger.post(
            f"refund:{refund['_id']}", [(accounts.late(provider), -refund["amount"]),
                                        (refund["payee"], refund["amount"])],
            memo="退款（关闭后到账）", meta={"order_id": refund["order_id"],
                                             "refund_id": refund["_id"]}, session=session)
        await self.orders.collection.update_one(
            {"_id": refund["order_id"]}, {"$set": {"late_refunded_at": now}}, session=session)


# -- what operators call -------------------------------------------------------------


async def refund_order(app: KPay, actor: str, source: str, order_id: str, amount: int,
                       reason: str, *, to: str = "original", purpose: str | None = None,
                       key: str | None = None) -> dict[str, Any]:
    """An operator's refund of a paid order (``Orders.refund``), in the audit log with
    its result whether it succeeded or was refused."""
    reason = checked_reason(reason)
    result: dict[str, Any] = {"amount": amount, "to": to, "purpose": purpose}
    try:
        refund = await app.money.orders.refund(order_id, amount, reason, to=to, key=key,
                                               purpose=purpose)
    except ApiError as e:
        await app.audit.record(actor, "order.refund", f"order:{order_id}", reason=reason,
                               source=source, **result, result=e.code)
        raise
    await app.audit.record(actor, "order.refund", f"order:{order_id}", reason=reason,
                           source=source, **result, purpose_applied=refund.get("purpose"),
                           refund_id=refund["_id"], result=refund["status"])
    if refund["status"] != "failed":
        # The buyer hears of an operator's refund (a kind's own refunds, such as
        # live_qa's question_refunded, are told by the kind).
        order = await app.money.orders.get(order_id)
        await app.tell_user(order["user_id"], "order_refunded", {
            "order_id": order_id, "refund_id": refund["_id"], "title": order["title"],
            "amount": refund["amount"], "to": refund["to"], "status": refund["status"]})
    return refund


async def refund_paid_after_close(app: KPay, actor: str, source: str, entry_id: str,
                                  reason: str = "", *, key: str | None = None
                                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Refund the payment of a needs-attention entry "paid after the order was closed"
    in full, to the original channel, and resolve the entry once the refund succeeded.
    Returns ``(refund, entry)``; audited with its result."""
    reason = checked_reason(reason, required=False) or LATE_REASON
    entry = await app.attention.collection.find_one({"_id": entry_id})
    if entry is None:
        raise NotFound(f"no attention entry {entry_id!r}", code="attention_not_found")
    details = entry.get("details") or {}
    if entry["source"] != ATTENTION_SOURCE or not entry["subject"].startswith("order:"):
        raise Conflict("this entry is not an order paid after it was closed",
                       code="not_paid_after_close")
    order_id = details.get("order_id") or entry["subject"].removeprefix("order:")
    order = await app.money.orders.get(order_id)
    said = details.get("amount")
    if isinstance(said, int) and said != order["amount"]:
        raise Conflict(f"the provider reported {said} fen, the order is {order['amount']} fen",
                       code="amount_mismatch", expected=order["amount"])
    try:
        refund = await LatePayments(app.money.orders).refund(order_id, reason, key=key)
    except ApiError as e:
        await app.audit.record(actor, "order.refund_late", f"order:{order_id}",
                               reason=reason, source=source, amount=order["amount"],
                               attention=entry_id, result=e.code)
        raise
    await app.audit.record(actor, "order.refund_late", f"order:{order_id}", reason=reason,
                           source=source, amount=refund["amount"], attention=entry_id,
                           refund_id=refund["_id"], result=refund["status"])
    if refund["status"] == "succeeded":
        resolved = await app.attention.resolve(
            entry_id, actor, f"refunded {refund['amount']} fen ({refund['_id']})")
    else:
        resolved = attention.public(await app.attention.collection.find_one({"_id": entry_id}))
    return refund, resolved


def admin_order(order: dict[str, Any]) -> dict[str, Any]:
    """An order as admins see it: the API's fields, whose it is, and how it was paid."""
    return {**public(order), "user_id": order["user_id"],
            "refundable": order.get("refundable", 0), "paid_from": order.get("paid_from"),
            "paid_via": order.get("paid_via"), "transaction_id": order.get("transaction_id"),
            "closed_at": order.get("closed_at"), "close_reason": order.get("close_reason"),
            "late_refund_id": order.get("late_refund_id")}


def admin_refund(refund: dict[str, Any]) -> dict[str, Any]:
    """A refund as admins see it: the public fields and the provider's side."""
    return {**public_refund(refund), "out_refund_no": refund["out_refund_no"],
            "created_at": refund["created_at"], "succeeded_at": refund.get("succeeded_at"),
            "provider_status": refund.get("provider_status"),
            "error": refund.get("error"), "late": bool(refund.get("late"))}


async def order_with_refunds(app: KPay, order_id: str) -> dict[str, Any]:
    order = await app.money.orders.get(order_id)
    cursor = app.money.orders.refunds.find({"order_id": order_id}).sort("created_at", 1)
    return {"order": admin_order(order), "refunds": [admin_refund(r) async for r in cursor]}
