"""The core's notify routes: ``POST /api/v1/pay/<url_name>/notify`` (payment results)
and ``POST /api/v1/pay/<url_name>/refund-notify`` (refund results), one pair per
payment provider that declares a ``url_name`` (docs/money.md, "Notify routes"), and
``.../transfer-notify`` (payouts' transfers, docs/money.md "Payouts") for a provider
with ``capabilities.payouts``.

The provider verifies the raw body and headers (``handle_notify``,
``handle_refund_notify``) and shapes the answer in its own format
(``notify_answer``); the core books what it reported:

- a payment through ``Orders.apply_payment_state`` (exactly once however many copies
  race: ``mark_paid`` is guarded by the order's state; the order must be one of the
  provider's channels and the amount the order's). The first copy that finds the order
  paid marks it ``notify_confirmed_at`` (a guarded update), so the records tell the
  first copy (``paid``) from the rest (``duplicate``). A payment for an order closed
  meanwhile books nothing and goes on the attention list: the money is real.
- a refund result onto the refund record (``provider_status``); a refund that failed
  outside goes on the attention list.

Anything not believed or not bookable is refused and changes nothing. The provider may
keep its own record of every notify (``record_notify``, in its own collection).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import tornado.web
from pydantic import BaseModel, ConfigDict

from kpay.core.errors import ApiError
from kpay.core.money.providers import (
    NotifyRefused,
    NotifyVerdict,
    PaymentProvider,
    PaymentState,
    RefundState,
)
from kpay.core.web import JSON_MEDIA_TYPE, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.money.notify")

#: What a notify reports: a payment, a refund or a payout's transfer.
NotifyKind = Literal["payment", "refund", "transfer"]
#: What a provider's ``url_name`` may be: it is one segment of the notify URLs.
URL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: States an order may be in once its payment is booked.
BOOKED_STATES = ("paid", "fulfilled", "refunded")
#: The attention list's source for real money a notify could not book (paid after
#: close) and refunds that failed outside.
ATTENTION_SOURCE = "money.notify"


@dataclass
class Booking:
    """What booking a believed notify came to (accepted or duplicate)."""

    outcome: Literal["accepted", "duplicate"]
    reason: str
    needs_attention: bool = False


class NotBookable(Exception):
    """A believed notify that names nothing of this provider's, or disagrees with it:
    refused, nothing changes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Received:
    """One notify on its way through :meth:`PaymentNotifies.receive`."""

    facts: dict[str, Any] = field(default_factory=dict)
    verified: bool = False


class PaymentNotifies:
    """Books what the providers' notifies report; ``app.money.notifies``."""

    def __init__(self, app: KPay) -> None:
        self.app = app

    async def receive(self, provider: PaymentProvider, kind: NotifyKind,
                      body: bytes, headers: Mapping[str, str],
                      remote_ip: str = "") -> NotifyVerdict:
        """Verify (through the provider), book, let the provider record it; return the
        verdict the provider shapes its answer from. Never raises."""
        received_at = self.app.clock.now()
        seen = Received()
        message = ""
        booking: Booking | None = None
        try:
            if kind == "payment":
                booking = await self._payment(provider, body, headers, seen)
            elif kind == "transfer":
                booking = await self._transfer(provider, body, headers, seen)
            else:
                booking = await self._refund(provider, body, headers, seen)
            outcome, reason = booking.outcome, booking.reason
        except NotifyRefused as e:
            outcome, reason, message = "refused", e.reason, e.message
            seen.facts.update(e.facts)
        except NotBookable as e:
            outcome, reason, message = "refused", e.reason, str(e)
        except Exception:
            # Our failure, not the sender's: answered as an error so it sends again.
            log.exception("%s %s notify failed", provider.identifier, kind)
            outcome, reason = "error", "error"
        if outcome == "refused":
            log.warning("%s %s notify refused (%s): %s", provider.identifier, kind, reason,
                        message)
        verdict = NotifyVerdict(
            kind=kind, outcome=outcome, reason=reason, received_at=received_at, body=body,
            remote_ip=remote_ip, message=message, verified=seen.verified, facts=seen.facts,
            needs_attention=booking.needs_attention if booking else False)
        try:
            await provider.record_notify(verdict)
        except Exception:
            log.exception("%s could not record a notify", provider.identifier)
        return verdict

    # -- payments --------------------------------------------------------------------

    async def _payment(self, provider: PaymentProvider, body: bytes,
                       headers: Mapping[str, str], seen: Received) -> Booking:
        state = await provider.handle_notify(body, headers)
        seen.verified = True
        seen.facts.update(out_trade_no=state.out_trade_no,
                          transaction_id=state.transaction_id)
        return await self.book_payment(provider, state, seen.facts)

    async def book_payment(self, provider: PaymentProvider, state: PaymentState,
                           facts: dict[str, Any] | None = None) -> Booking:
        """Book a payment state a notify reported (exactly once). Raises
        :class:`NotBookable` for an order that is not the provider's or an amount that
        is not the order's; ``facts`` gets the ``order_id``."""
        facts = facts if facts is not None else {}
        orders = self.app.money.orders
        try:
            order = await orders.apply_payment_state(provider, state, via="notify")
        except ApiError as e:
            if e.code != "order_closed":
                raise NotBookable(e.code, e.message) from None
            return await self._paid_after_close(provider, state, facts)
        if order is None:
            raise NotBookable("unknown_order",
                              f"no {provider.identifier} order {state.out_trade_no!r}")
        facts["order_id"] = order["_id"]
        if state.status != "paid":
            return Booking("accepted", f"payment_{state.status}")  # nothing to book
        if order["status"] not in BOOKED_STATES:
            raise NotBookable("not_paid", f"order is {order['status']}")
        # Which copy was first is told by a guarded update, not by reading the order.
        first = await orders.collection.update_one(
            {"_id": order["_id"], "notify_confirmed_at": None},
            {"$set": {"notify_confirmed_at": self.app.clock.now()}})
        if first.modified_count:
            return Booking("accepted", "paid")
        return Booking("duplicate", "duplicate")

    async def _paid_after_close(self, provider: PaymentProvider, state: PaymentState,
                                facts: dict[str, Any]) -> Booking:
        order = await self.app.money.orders.collection.find_one(
            {"out_trade_no": state.out_trade_no}, {"_id": 1})
        order_id = order["_id"] if order else state.out_trade_no
        facts["order_id"] = order_id
        # The money is real and needs a person (refund it outside); resending will not
        # change that, so the notify is accepted.
        log.error("order %s was paid at %s (%s) after it was closed: refund it", order_id,
                  provider.identifier, state.transaction_id)
        await self.app.attention.report(
            ATTENTION_SOURCE, f"order:{order_id}",
            f"paid at {provider.identifier} after the order was closed: refund it with "
            "POST /api/v1/admin/attention/<this id>/refund (docs/operations.md)",
            order_id=order_id, provider=provider.identifier,
            transaction_id=state.transaction_id, amount=state.amount)
        return Booking("accepted", "paid_after_close", needs_attention=True)

    # -- refunds ---------------------------------------------------------------------

    async def _refund(self, provider: PaymentProvider, body: bytes,
                      headers: Mapping[str, str], seen: Received) -> Booking:
        state = await provider.handle_refund_notify(body, headers)
        seen.verified = True
        seen.facts.update(out_trade_no=state.out_trade_no, out_refund_no=state.out_refund_no,
                          refund_status=state.provider_status or state.status)
        return await self.record_refund_result(provider, state)

    async def record_refund_result(self, provider: PaymentProvider,
                                   state: RefundState) -> Booking:
        """Record on the refund what the provider says became of it
        (``provider_status``, ``provider_refund_id``); a refund that failed outside
        (the money did not reach the payer) goes on the attention list. Raises
        :class:`NotBookable` for a refund that is not the provider's or another amount."""
        refunds = self.app.money.orders.refunds
        refund = await refunds.find_one({"out_refund_no": state.out_refund_no})
        if refund is None or refund["to"] not in provider.channels:
            raise NotBookable("unknown_refund", f"no refund {state.out_refund_no!r}")
        order = await self.app.money.orders.get(refund["order_id"])
        if self.app.money.orders.provider_of(order) is not provider:
            raise NotBookable("unknown_refund", f"no {provider.identifier} refund "
                                                f"{state.out_refund_no!r}")
        if state.out_trade_no and state.out_trade_no != order["out_trade_no"]:
            raise NotBookable("unknown_refund", "the refund is not of that order")
        if state.amount != refund["amount"]:
            raise NotBookable("amount_mismatch", "the refunded amount is not the refund's")
        said = state.provider_status or state.status
        await refunds.update_one({"_id": refund["_id"]},
                                 {"$set": {"provider_status": said,
                                           "provider_refund_id": state.refund_id}})
        problem = ""
        if state.status == "failed":
            problem = (f"the refund ended {said} at {provider.identifier}: the money did not "
                       "reach the payer")
        elif state.status == "succeeded" and refund["status"] == "failed":
            # kpay gave the amount back to the order (refundable again) when the provider
            # refused; the provider now says it paid: a second refund would pay twice.
            problem = (f"{provider.identifier} says it paid out a refund kpay recorded as "
                       "failed: the amount is refundable again in kpay; do not refund it twice")
        if problem:
            log.error("refund %s: %s", refund["_id"], problem)
            await self.app.attention.report(
                ATTENTION_SOURCE, f"refund:{refund['_id']}", problem,
                order_id=refund["order_id"], amount=refund["amount"],
                provider=provider.identifier, provider_status=said)
        return Booking("accepted", "refund_" + said.lower(), needs_attention=bool(problem))


    # -- payouts' transfers ----------------------------------------------------------

    async def _transfer(self, provider: PaymentProvider, body: bytes,
                        headers: Mapping[str, str], seen: Received) -> Booking:
        state = await provider.handle_transfer_notify(body, headers)
        seen.verified = True
        seen.facts.update(out_bill_no=state.out_bill_no,
                          transfer_status=state.provider_status or state.status)
        try:
            payout, booked = await self.app.money.payouts.apply_notify(provider, state)
        except ApiError as e:
            raise NotBookable(e.code, e.message) from None
        seen.facts["payout_id"] = payout["_id"]
        return Booking("accepted" if booked else "duplicate",
                       "transfer_" + state.status if booked else "duplicate")


class NotifyHandler(tornado.web.RequestHandler):
    """Anyone's POST: the provider decides what is believed, and answers in its format.
    Not a BaseHandler: no JSON envelope, no rate limit (the sender must get through)."""

    provider: PaymentProvider
    kind: NotifyKind = "payment"

    def initialize(self, route_path: str = "") -> None:
        self.kpay: KPay = self.application.settings["kpay"]
        self.route_path = route_path

    def check_xsrf_cookie(self) -> None:
        pass

    async def receive(self) -> None:
        verdict = await self.kpay.money.notifies.receive(
            self.provider, self.kind, self.request.body, self.request.headers,
            self.request.remote_ip or "")
        answer = self.provider.notify_answer(verdict)
        self.set_status(answer.status)
        self.set_header("Content-Type", answer.content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(answer.body)


class NotifyReply(BaseModel):
    """The default JSON answer to a notify: ``{"code": "SUCCESS"}``, or ``"FAIL"`` with a
    ``message`` (400 refused, 500 our error: send again)."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str | None = None


def notify_handler(provider: PaymentProvider,
                   kind: NotifyKind) -> type[NotifyHandler]:
    """A handler class for one provider's notify route, documented (OpenAPI) with the
    provider's media type and body model."""
    media = provider.notify_media_type
    body = {"payment": provider.notify_body, "refund": provider.refund_notify_body,
            "transfer": provider.transfer_notify_body}[kind]
    name = provider.verbose_name or provider.identifier

    async def post(self: NotifyHandler) -> None:
        await self.receive()

    # JSON providers answer with the default JSON (NotifyReply), not the error envelope.
    json_answers = {} if media != JSON_MEDIA_TYPE else {
        "response": NotifyReply, "responses": {400: NotifyReply, 500: NotifyReply}}
    post = api(f"{name}: {kind} notify ({media} in, {media} out; answered by the provider)",
               auth=False, media_type=media, error_media_type=media, body=body,
               body_media_type=media, **json_answers)(post)
    return type(f"{provider.identifier.title()}{kind.title()}NotifyHandler",
                (NotifyHandler,), {"post": post, "provider": provider, "kind": kind})


def transfer_notify_path(url_name: str) -> str:
    """The transfer (payout) notify path the core serves for a provider with payouts."""
    return f"/api/v1/pay/{url_name}/transfer-notify"


def notify_paths(url_name: str) -> tuple[str, str]:
    """The payment and refund notify paths the core serves for ``url_name``."""
    return f"/api/v1/pay/{url_name}/notify", f"/api/v1/pay/{url_name}/refund-notify"


def notify_routes(app: KPay) -> list[Route]:
    """The notify routes of every provider that declares a ``url_name``."""
    routes: list[Route] = []
    seen: dict[str, str] = {}
    for provider in app.money.notify_providers():
        name = provider.url_name
        if not URL_NAME.match(name):
            raise ValueError(f"payment provider {provider.identifier!r}: url_name {name!r} "
                             "must be 1 to 32 of a-z, 0-9, '_' and '-'")
        if name in seen:
            raise ValueError(f"payment providers {seen[name]!r} and {provider.identifier!r} "
                             f"both declare url_name {name!r}")
        seen[name] = provider.identifier
        payment, refund = notify_paths(name)
        routes += [Route(payment, notify_handler(provider, "payment"), tags=("money",)),
                   Route(refund, notify_handler(provider, "refund"), tags=("money",))]
        if provider.capabilities.payouts:
            routes.append(Route(transfer_notify_path(name), notify_handler(provider, "transfer"),
                                tags=("money",)))
    return routes
