"""Refunds of paid orders, full or partial, to the wallet or the original channel.

A refund is a record (``refunds``) with its own states: ``pending -> succeeded`` or
``pending -> failed``. Its amount is taken from the order's ``refundable`` with a guard
in the update (``refundable >= amount``), so concurrent refunds never exceed what was
paid. A refund to the wallet is reserved and booked in one transaction; a refund to
the original channel is reserved, sent to the provider, then booked (so a crash in
between leaves a ``pending`` refund that a retry with the same key resumes).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from kpay.core import metrics
from kpay.core.errors import BadRequest, Conflict, PaymentProviderError
from kpay.core.failpoints import failpoint
from kpay.core.money import accounts
from kpay.core.money.providers import check_refund_capability, refund_number

if TYPE_CHECKING:
    from kpay.core.money.orders import Orders

WALLET_CHANNEL = "wallet"
#: A refund's purpose: take back what was bought, or only adjust its price.
REVOKE, ADJUST = "revoke", "adjust"
PURPOSES = (REVOKE, ADJUST)
#: How long one caller may take over a booked refund's hooks before another may.
FINISH_LEASE = timedelta(minutes=1)


def out_refund_no(orders: Orders, order: dict[str, Any], refund_id: str) -> str:
    """The refund number the order's provider gives the refund id (the same for every
    retry of one refund); the default numbering when no provider paid the order."""
    provider = orders.provider_of(order)
    return provider.refund_number(refund_id) if provider else refund_number(refund_id)


def refund_debits(credits: list[list[Any]], reversed_so_far: list[list[Any]],
                  amount: int) -> list[tuple[str, int]]:
    """The debits that take ``amount`` back from the accounts the order credited.

    Each account gives back its proportional share (rounded down), never more than it
    still holds from this order; the rounding remainder comes from the accounts with
    the most left. So every line is a debit, the lines sum to ``amount``, and once the
    order is fully refunded each account has given back exactly what it was credited.
    """
    credited: dict[str, int] = {}
    for account, value in credits:
        credited[account] = credited.get(account, 0) + value
    total = sum(credited.values())
    done = {account: value for account, value in reversed_so_far}
    left_in = {a: v - done.get(a, 0) for a, v in credited.items()}
    if amount > sum(left_in.values()):
        raise ValueError(f"cannot take back {amount} fen: only {sum(left_in.values())} left")
    shares = {a: min(left_in[a], amount * v // total) for a, v in credited.items()}
    rest = amount - sum(shares.values())
    for account in sorted(credited, key=lambda a: (-(left_in[a] - shares[a]), a)):
        take = min(rest, left_in[account] - shares[account])
        shares[account] += take
        rest -= take
    return [(account, -share) for account, share in shares.items() if share]


def reversal(credits: list[list[Any]], reversed_so_far: list[list[Any]], amount: int,
             paid: int, booked_before: int) -> list[tuple[str, int]]:
    """The postings (besides the payee's) that undo ``amount`` fen of a refund.

    An order's credits may hold a negative line: ``platform:promotions`` paid part of a
    platform-funded discount. A refund gives it back its share (rounded down, and all
    that is left once the order is fully refunded), so the accounts that were credited
    give back ``amount`` plus that share; a 100% refund undoes every line exactly.
    """
    positive = [[a, v] for a, v in credits if v > 0]
    negative = [[a, -v] for a, v in credits if v < 0]
    if not negative:
        return refund_debits(positive, reversed_so_far, amount)
    done = {a: v for a, v in reversed_so_far}
    negative_left = sum(v for _, v in negative) + sum(done.get(a, 0) for a, _ in negative)
    if booked_before + amount >= paid:
        back = negative_left
    else:
        back = min(negative_left, sum(v for _, v in negative) * amount // paid)
    reversed_negative = [[a, -done.get(a, 0)] for a, _ in negative]
    returned = [(a, -d) for a, d in refund_debits(negative, reversed_negative, back)]
    reversed_positive = [[a, v] for a, v in reversed_so_far if v > 0]
    return [*refund_debits(positive, reversed_positive, amount + back), *returned]


class Refunds:
    """The refund half of :class:`kpay.core.money.orders.Orders` (reached through it)."""

    def __init__(self, orders: Orders) -> None:
        self.orders = orders
        self.app = orders.app
        self.collection = orders.app.store["refunds"]

    async def refund(self, order_id: str, amount: int, reason: str, *, to: str = "wallet",
                     key: str | None = None, purpose: str | None = None) -> dict[str, Any]:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise BadRequest("refund amount must be positive integer fen", code="invalid_amount")
        if to not in ("wallet", "original"):
            raise BadRequest("refund goes to 'wallet' or 'original'", code="invalid_field",
                             field="to")
        if purpose not in (None, *PURPOSES):
            raise BadRequest("a refund's purpose is 'revoke' or 'adjust'",
                             code="invalid_field", field="purpose")
        order = await self.orders.get(order_id)
        refund_id = key or f"rf{order_id}{reason}"
        existing = await self.collection.find_one({"_id": refund_id})
        if existing is not None:
            return await self._replay(existing, order, amount)
        payee = self._payee(order, to)
        if payee != accounts.wallet(order["user_id"]):
            check_refund_capability(self.orders.provider_of(order), order, amount)
        refund = {"_id": refund_id, "order_id": order_id,
                  "out_refund_no": out_refund_no(self.orders, order, refund_id),
                  "amount": amount, "reason": reason, "purpose": purpose,
                  "user_id": order["user_id"],
                  "to": WALLET_CHANNEL if payee == accounts.wallet(order["user_id"])
                  else order["channel"],
                  "payee": payee, "status": "pending", "finished": False,
                  "created_at": self.app.clock.now()}

        async def reserve(session: AsyncClientSession) -> None:
            # The record first: a racing call with the same key fails on it (and replays
            # this refund) rather than on the amount this one takes.
            await self.collection.insert_one(refund, session=session)
            before = await self.orders.collection.find_one_and_update(
                {"_id": order_id, "status": {"$in": ["paid", "fulfilled"]},
                 "refundable": {"$gte": amount}},
                {"$inc": {"refundable": -amount, "refunded": amount}}, session=session,
                projection={"refundable": 1}, return_document=ReturnDocument.BEFORE)
            if before is None:
                now = await self.orders.collection.find_one({"_id": order_id}, session=session)
                raise Conflict(f"order {order_id} cannot refund {amount} fen",
                               code="not_refundable", status_now=now["status"],
                               refundable=now.get("refundable", 0))
            if purpose is None:
                # Unsaid: refunding all that is left takes back what was bought; less is
                # a price adjustment. Judged on what this transaction took from, so two
                # racing partial refunds that empty the order cannot both "adjust".
                refund["purpose"] = REVOKE if amount >= before["refundable"] else ADJUST
                await self.collection.update_one({"_id": refund_id},
                                                 {"$set": {"purpose": refund["purpose"]}},
                                                 session=session)
            if refund["to"] == WALLET_CHANNEL:
                await self._book(session, refund)

        failpoint("refunds.before_reserve")
        try:
            await self.app.store.transaction(reserve)
        except DuplicateKeyError:
            # The same key raced in from another request: that one is the refund.
            raced = await self.collection.find_one({"_id": refund_id})
            if raced is None:
                raise
            return await self._replay(raced, order, amount)
        # To the wallet the refund is booked now; to the original channel it is pending.
        failpoint("refunds.after_reserve")
        if refund["to"] != WALLET_CHANNEL and not await self._send(order, refund):
            return await self.collection.find_one({"_id": refund_id}) or refund
        return await self._finish(order, refund)

    async def by_out_refund_no(self, numbers: list[str]) -> dict[str, dict[str, Any]]:
        """``{out_refund_no: refund}`` for the numbers that name a refund (at most 1000
        numbers, else ``ValueError``): one query, for a provider's bill check."""
        if len(numbers) > 1000:
            raise ValueError("at most 1000 out_refund_no at a time")
        cursor = self.collection.find({"out_refund_no": {"$in": list(numbers)}})
        return {refund["out_refund_no"]: refund async for refund in cursor}

    def _payee(self, order: dict[str, Any], to: str) -> str:
        wallet = accounts.wallet(order["user_id"])
        if order["channel"] == WALLET_CHANNEL or to == "wallet":
            if to == "wallet" and any(a == wallet for a, _ in order["credits"]):
                # A top-up refunded into the wallet it filled would move nothing.
                raise BadRequest("this order credited the wallet; refund it to 'original'",
                                 code="invalid_refund_target", field="to")
            return wallet
        return order.get("paid_from") or accounts.external(
            order.get("provider") or order["channel"])

    async def _replay(self, existing: dict[str, Any], order: dict[str, Any],
                      amount: int) -> dict[str, Any]:
        if existing["order_id"] != order["_id"] or existing["amount"] != amount:
            raise Conflict(f"refund key {existing['_id']!r} was used for another refund",
                           code="idempotency_conflict", key=existing["_id"])
        if existing["status"] == "pending" and existing["to"] != WALLET_CHANNEL:
            # An earlier attempt stopped between the provider and the books: resume.
            if await self._send(order, existing):
                return await self._finish(order, existing)
            return await self.collection.find_one({"_id": existing["_id"]}) or existing
        if existing["status"] == "succeeded" and existing.get("finished") is False:
            # Booked, but the caller crashed before the kind undid the purchase.
            return await self._finish(order, existing)
        return existing

    async def _send(self, order: dict[str, Any], refund: dict[str, Any]) -> bool:
        """Ask the provider to pay the refund out, then book it; True if this call
        booked it (a racing call with the same key may have done so first).

        ``PaymentProviderError`` means the provider refunded nothing: the amount becomes
        refundable again and the refund ``failed``. Any other exception leaves it
        ``pending`` (the outcome is unknown); retrying with the same key resumes it,
        and the provider gets the same ``out_refund_no`` so it never pays twice.
        """
        provider = self.orders.provider_of(order)
        try:
            if provider is None:
                raise PaymentProviderError(f"no payment provider for {order['channel']}")
            result = await provider.refund(order, refund)
        except PaymentProviderError as e:
            error = str(e)
            await self.app.store.transaction(lambda s: self._fail(s, refund, error))
            raise
        failpoint("refunds.after_provider")
        await self.collection.update_one({"_id": refund["_id"]},
                                         {"$set": {"provider_result": result or {}}})
        booked = await self.app.store.transaction(lambda s: self._book(s, refund))
        failpoint("refunds.after_booking")
        return booked

    async def _fail(self, session: AsyncClientSession, refund: dict[str, Any],
                    error: str) -> None:
        failed = await self.collection.update_one(
            {"_id": refund["_id"], "status": "pending"},
            {"$set": {"status": "failed", "error": error}}, session=session)
        if failed.modified_count:
            await self.orders.collection.update_one(
                {"_id": refund["order_id"]},
                {"$inc": {"refundable": refund["amount"], "refunded": -refund["amount"]}},
                session=session)

    async def _book(self, session: AsyncClientSession, refund: dict[str, Any]) -> bool:
        """Move the money back (once: guarded by the refund's ``pending`` state); True
        if this call did."""
        now = self.app.clock.now()
        marked = await self.collection.find_one_and_update(
            {"_id": refund["_id"], "status": "pending"},
            {"$set": {"status": "succeeded", "succeeded_at": now}},
            session=session, return_document=ReturnDocument.AFTER)
        if marked is None:
            return False
        order = await self.orders.collection.find_one({"_id": refund["order_id"]},
                                                      session=session)
        reversed_so_far = order.get("reversed_credits", [])
        debits = reversal(order["credits"], reversed_so_far, refund["amount"], order["amount"],
                          order.get("refund_booked", 0))
        await self.app.money.ledger.post(
            f"refund:{refund['_id']}", [*debits, (refund["payee"], refund["amount"])],
            memo=f"退款 {order['title']}",
            meta={"order_id": order["_id"], "refund_id": refund["_id"]}, session=session)
        totals = dict((a, v) for a, v in reversed_so_far)
        for account, debit in debits:
            totals[account] = totals.get(account, 0) - debit
        booked = order.get("refund_booked", 0) + refund["amount"]
        change: dict[str, Any] = {"reversed_credits": [[a, v] for a, v in totals.items()],
                                  "refund_booked": booked}
        if booked == order["amount"]:
            change.update(status="refunded", refunded_at=now)
        await self.orders.collection.update_one({"_id": order["_id"]}, {"$set": change},
                                                session=session)
        return True

    async def _finish(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        """Let the kind undo what was bought and tell plugins, once per booked refund.

        Claimed with a lease, then marked ``finished``: a caller that retries after a
        crash between the booking and here (the refund's contract) finishes it, and
        concurrent callers do not run the kind twice at once. A crash inside the kind's
        ``on_refund`` runs it again on the next retry (at least once)."""
        now = self.app.clock.now()
        done = await self.collection.find_one_and_update(
            # Not ``finished: False``: a refund booked before the flag existed has no
            # field, and one resumed now must still run its hooks.
            {"_id": refund["_id"], "status": "succeeded", "finished": {"$ne": True},
             "$or": [{"finish_lease": None}, {"finish_lease": {"$lte": now}}]},
            {"$set": {"finish_lease": now + FINISH_LEASE}},
            return_document=ReturnDocument.AFTER)
        if done is None:  # finished already, or by a racing call right now
            return await self.collection.find_one({"_id": refund["_id"]}) or refund
        kind = self.orders.kinds.get(order["kind"])
        if kind is not None:
            await kind.on_refund(self.app, order, {**done, "purpose": done.get("purpose", REVOKE)})
        now_order = await self.orders.get(order["_id"])
        if now_order["status"] == "refunded" and now_order.get("adjustments"):
            # Fully refunded: a coupon use (any reservation) comes back; a partial
            # refund keeps it.
            await self.app.money.adjustments.release(f"order:{order['_id']}",
                                                     now_order["adjustments"])
        metrics.ORDERS.labels(order["kind"], "refunded").inc()
        await self.app.notify("on_order_refunded", order=now_order,
                              refund=public_refund(done))
        await self.app.money.announce_earnings(account for account, _ in order["credits"])
        return await self.collection.find_one_and_update(
            {"_id": refund["_id"]}, {"$set": {"finished": True}, "$unset": {"finish_lease": ""}},
            return_document=ReturnDocument.AFTER) or done


def public_refund(refund: dict[str, Any]) -> dict[str, Any]:
    """A refund as kinds, hooks and the API see it. ``purpose`` is ``revoke`` (take back
    what was bought) or ``adjust`` (a price adjustment: the buyer keeps it); refunds
    booked before purposes existed were all treated as revoking."""
    return {"id": refund["_id"], "order_id": refund["order_id"], "amount": refund["amount"],
            "reason": refund["reason"], "purpose": refund.get("purpose", REVOKE),
            "to": refund["to"], "status": refund["status"]}
