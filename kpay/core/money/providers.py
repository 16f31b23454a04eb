"""Payment providers: the small interface between the core's orders and an outside
payment system (WeChat Pay, ...). The order state machine lives in the core; a
provider only talks to the outside system and reports what it found.

The core owns the notify routes ``/api/v1/pay/<url_name>/notify`` and
``/api/v1/pay/<url_name>/refund-notify`` (:mod:`kpay.core.money.notify`): the provider
verifies the raw request and shapes the answer, the core books. See docs/money.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from kpay.core.errors import Conflict, PaymentProviderError


@dataclass(frozen=True)
class RequestInfo:
    """What a provider may need about the payer's request."""

    client_ip: str
    openid: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class PaymentState:
    """What the provider says of an order's payment (from ``query`` or
    ``handle_notify``). ``amount`` is what was paid, in fen; ``out_trade_no`` names
    the order (needed from ``handle_notify``, optional from ``query``)."""

    status: Literal["paid", "pending", "closed", "unknown"]
    amount: int = 0
    transaction_id: str = ""
    raw: dict[str, Any] | None = None
    out_trade_no: str = ""


@dataclass(frozen=True)
class RefundState:
    """What a refund notify reports (from ``handle_refund_notify``). ``status`` is the
    core's word, ``provider_status`` the provider's own (WeChat's ``SUCCESS``,
    ``CHANGE``, ``REFUNDCLOSE``); ``amount`` is the refunded fen."""

    status: Literal["succeeded", "failed", "pending"]
    out_refund_no: str
    amount: int
    provider_status: str = ""
    refund_id: str = ""
    out_trade_no: str = ""
    raw: dict[str, Any] | None = None


@dataclass(frozen=True)
class TransferState:
    """What the provider says of a payout's transfer (from ``transfer``,
    ``query_transfer`` or ``handle_transfer_notify``). ``status`` is the core's word:

    - ``waiting_confirmation``: sent; the receiver must confirm it (``package_info``
      is what their page hands ``wx.requestMerchantTransfer``);
    - ``succeeded``: the money reached the receiver;
    - ``failed``, ``cancelled``, ``expired``: it did not and will not (the money is
      back with the merchant);
    - ``pending``: still on its way; ``not_found``: the provider never received it
      (only from ``query_transfer``: the core may send it again).

    ``provider_status`` is the provider's own word (WeChat's ``WAIT_USER_CONFIRM``)."""

    status: Literal["waiting_confirmation", "succeeded", "failed", "cancelled", "expired",
                    "pending", "not_found"]
    out_bill_no: str
    amount: int = 0
    package_info: str = ""
    transfer_bill_no: str = ""
    provider_status: str = ""
    reason: str = ""
    raw: dict[str, Any] | None = None
    #: With ``waiting_confirmation``: what else the receiver's page passes
    #: ``wx.requestMerchantTransfer`` besides ``package`` (WeChat: ``mchId``, ``appId``).
    confirm_params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderCapabilities:
    """What a provider can do, declared on the class (as pretix's providers do). The core
    refuses, with a 409 before anything is reserved, a refund to the original channel
    that the provider cannot make."""

    refunds: bool = True
    partial_refunds: bool = True
    #: Paying money out to earners (withdrawals: ``transfer``, ``query_transfer``,
    #: ``cancel_transfer``, ``handle_transfer_notify``; docs/money.md, "Payouts").
    payouts: bool = False

    def describe(self, channels: tuple[str, ...]) -> dict[str, Any]:
        return {"refunds": self.refunds, "partial_refunds": self.partial_refunds,
                "payouts": self.payouts, "channels": list(channels)}


class NotifyRefused(PaymentProviderError):
    """A notify that is not believed (bad signature, broken body, another merchant).
    ``reason`` is a short snake_case word for the records, ``facts`` what the body said
    (``out_trade_no``, ...) as far as it could be read. Nothing is booked."""

    status, code = 400, "notify_refused"

    def __init__(self, reason: str, message: str, facts: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason
        self.facts = dict(facts or {})


@dataclass(frozen=True)
class NotifyVerdict:
    """What the core made of one notify, handed to the provider to shape its answer
    (:meth:`PaymentProvider.notify_answer`) and keep its own record
    (:meth:`PaymentProvider.record_notify`).

    ``outcome``: ``accepted`` (booked, or nothing to book: stop resending),
    ``duplicate`` (booked before), ``refused`` (not believed or not bookable; nothing
    changed) or ``error`` (our failure: the sender should resend). ``reason`` says more
    (``paid``, ``paid_after_close``, ``bad_signature``, ``unknown_order``, ...).
    """

    kind: Literal["payment", "refund", "transfer"]
    outcome: Literal["accepted", "duplicate", "refused", "error"]
    reason: str
    received_at: datetime
    body: bytes = b""
    remote_ip: str = ""
    message: str = ""
    #: True once the provider believed the body (signature, merchant).
    verified: bool = False
    #: What the notify said and what it matched: out_trade_no, transaction_id,
    #: order_id, out_refund_no, refund_status.
    facts: dict[str, Any] = field(default_factory=dict)
    #: Money is real but could not be booked (paid after close, a failed refund).
    needs_attention: bool = False


@dataclass(frozen=True)
class NotifyAnswer:
    """The HTTP answer to a notify, in the provider's format."""

    status: int
    content_type: str
    body: bytes


SAFE_REFUND_NUMBER = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")


def refund_number(refund_id: str) -> str:
    """The default refund number: the id itself when it is 1 to 32 letters, digits,
    ``_`` or ``-`` (what most payment systems accept), else a stable hash of it."""
    if SAFE_REFUND_NUMBER.match(refund_id):
        return refund_id
    return "r" + hashlib.sha256(refund_id.encode()).hexdigest()[:31]


class PaymentProvider:
    """Subclass, set ``identifier``, ``verbose_name``, ``channels`` and ``url_name``,
    and implement the steps. Money moves only in the core (``app.money.orders``): a
    provider never writes balances, order states or the core's collections itself."""

    #: Unique name; money from this provider enters through ``external:<identifier>``.
    identifier: str = ""
    verbose_name: str = ""
    #: Order channels served, e.g. ``("jsapi", "mweb", "native")``.
    channels: tuple[str, ...] = ()
    #: The notify routes' name: ``/api/v1/pay/<url_name>/notify`` and
    #: ``.../refund-notify``, owned by the core. Empty (deprecated, for one release):
    #: the plugin serves its own notify routes.
    url_name: str = ""
    #: What the provider can do.
    capabilities: ProviderCapabilities = ProviderCapabilities()
    #: The ``money.settle_pending`` job asks about (and closes) a pending order only
    #: this long after it was created: a notify usually comes first, and some systems
    #: refuse an early close (WeChat Pay: 5 minutes).
    settle_after: timedelta = timedelta(minutes=1)
    #: For the OpenAPI document of the notify routes: the media type of the bodies in
    #: and out, and pydantic models of what the payment and refund notifies carry.
    notify_media_type: str = "application/json"
    notify_body: type[BaseModel] | None = None
    refund_notify_body: type[BaseModel] | None = None
    #: False: the provider only answers for the orders it already started (their
    #: notifies, queries, closes and refunds; ``order["provider"]`` names it) and claims
    #: no channel for new orders. A plugin switching API versions registers its old
    #: provider so (docs/money.md, "Answering-only providers"). May be set per instance.
    creates_orders: bool = True
    transfer_notify_body: type[BaseModel] | None = None

    async def create_payment(self, order: dict[str, Any], request: RequestInfo) -> dict[str, Any]:
        """Start paying ``order`` on its channel; return what the page needs (``code_url``,
        JSAPI params, ``mweb_url``). Raise ``PaymentProviderError`` on failure. You may
        NOT mark the order paid here."""
        raise NotImplementedError

    async def handle_notify(self, body: bytes, headers: Mapping[str, str]) -> PaymentState:
        """Verify a payment notify the outside system sent (signature, merchant) and say
        what it reports, with ``out_trade_no`` set. Raise :class:`NotifyRefused` for
        anything not believed. You may NOT mark the order paid here: the core's notify
        route passes the state to ``app.money.orders.apply_payment_state``, which books
        it through ``mark_paid`` exactly once."""
        raise NotifyRefused("not_supported", f"{self.identifier} takes no payment notifies")

    async def handle_refund_notify(self, body: bytes, headers: Mapping[str, str]) -> RefundState:
        """Verify a refund notify and say what it reports (:class:`RefundState`). Raise
        :class:`NotifyRefused` for anything not believed. The core records the status
        on the refund and reports a failed refund to the attention list."""
        raise NotifyRefused("not_supported", f"{self.identifier} takes no refund notifies")

    def notify_answer(self, verdict: NotifyVerdict) -> NotifyAnswer:
        """The answer the outside system expects for ``verdict`` (default: JSON
        ``{"code": "SUCCESS"}`` with 200, or ``{"code": "FAIL", "message": ...}`` with
        400 for a refusal and 500 for an error, which asks for a resend)."""
        if verdict.outcome in ("accepted", "duplicate"):
            return NotifyAnswer(200, "application/json", b'{"code": "SUCCESS"}')
        status = 500 if verdict.outcome == "error" else 400
        message = "internal error" if verdict.outcome == "error" else verdict.reason
        body = json.dumps({"code": "FAIL", "message": message})
        return NotifyAnswer(status, "application/json", body.encode())

    async def record_notify(self, verdict: NotifyVerdict) -> None:
        """Keep a record of the notify in the plugin's own collection, if it wants one
        (default: nothing). Called for every notify, believed or not, after booking;
        it must not raise (log instead) and decides nothing."""

    def refund_number(self, refund_id: str) -> str:
        """The provider's refund number for the core's refund id: stable (every retry of
        one refund sends the same number, so it is paid once) and in the format the
        outside system accepts. Default: :func:`refund_number`."""
        return refund_number(refund_id)

    async def query(self, order: dict[str, Any]) -> PaymentState:
        """Ask the outside system about ``order``. The ``money.settle_pending`` job calls
        it for pending orders older than :attr:`settle_after`: ``paid`` is booked (through
        ``mark_paid``), ``closed`` closes the order; ``pending``/``unknown`` past the
        order's expiry makes the core call :meth:`close` and then close the order."""
        return PaymentState("unknown")

    async def close(self, order: dict[str, Any]) -> None:
        """Tell the outside system the order will not be paid (expiry). Raise
        ``PaymentProviderError`` if it cannot be closed (it was paid meanwhile): the
        order then stays pending and the next query books the payment."""

    async def refund(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        """Return ``refund["amount"]`` of ``order`` to the payer, with
        ``refund["out_refund_no"]`` stable across retries so it never pays twice.

        Raise ``PaymentProviderError`` only when nothing was refunded (the refund then
        fails and its amount is refundable again). Any other exception means "outcome
        unknown": the refund stays ``pending`` and a retry with the same key calls this
        again with the same ``out_refund_no``. Return facts to keep (``refund_id``)."""
        raise NotImplementedError

    # -- payouts (``capabilities.payouts``; docs/money.md, "Payouts") -------------------

    def payout_requirements(self, amount: int) -> set[str]:
        """What the provider needs of the receiver to pay out ``amount`` fen, checked by
        the core before anything is reserved: ``"real_name"`` (the user's real name,
        ``app.users.real_name``). None by default."""
        return set()

    def transfer_number(self, payout_id: str) -> str:
        """The provider's bill number (``out_bill_no``) for the core's payout id: stable,
        so every retry names the same transfer. Default: :func:`refund_number`."""
        return refund_number(payout_id)

    async def transfer(self, payout: dict[str, Any], openid: str) -> TransferState:
        """Send ``payout["amount"]`` fen to the receiver ``openid`` under
        ``payout["out_bill_no"]`` (the same number for every retry of one payout).

        Raise ``PaymentProviderError`` only when nothing was sent (the payout fails and
        its money returns to the earnings). Any other exception means "the outcome is
        unknown": the core never sends it again blindly but asks
        :meth:`query_transfer` first. You may NOT move money in the books here."""
        raise PaymentProviderError(f"{self.identifier} cannot pay out")

    async def query_transfer(self, payout: dict[str, Any]) -> TransferState:
        """Ask the outside system about the transfer ``payout["out_bill_no"]``;
        ``not_found`` if it never arrived there."""
        raise PaymentProviderError(f"{self.identifier} cannot pay out")

    async def cancel_transfer(self, payout: dict[str, Any]) -> None:
        """Withdraw a transfer the receiver has not confirmed yet. Raise
        ``PaymentProviderError`` if it cannot be cancelled (confirmed meanwhile): the
        core then queries it again."""
        raise PaymentProviderError(f"{self.identifier} cannot pay out")

    async def handle_transfer_notify(self, body: bytes,
                                     headers: Mapping[str, str]) -> TransferState:
        """Verify a transfer notify and say what it reports (with ``out_bill_no``). Raise
        :class:`NotifyRefused` for anything not believed; the core books it."""
        raise NotifyRefused("not_supported", f"{self.identifier} takes no transfer notifies")


def check_refund_capability(provider: PaymentProvider | None, order: dict[str, Any],
                            amount: int) -> None:
    """Refuse (409 ``refund_not_supported``) a refund to the original channel that the
    order's provider cannot make: none at all, or a partial one without
    ``partial_refunds``. Called before anything is reserved."""
    if provider is None:
        return  # no provider loaded: the refund fails as before, through _send
    capable = provider.capabilities
    if not capable.refunds:
        raise Conflict(f"{provider.verbose_name or provider.identifier} cannot refund; "
                       "refund to the wallet", code="refund_not_supported",
                       provider=provider.identifier)
    if amount != order["amount"] and not capable.partial_refunds:
        raise Conflict(f"{provider.verbose_name or provider.identifier} refunds only whole "
                       "orders", code="partial_refund_not_supported",
                       provider=provider.identifier)
