"""Payment providers: the small interface between the core's orders and an outside
payment system (WeChat Pay, ...). The order state machine lives in the core; a
provider only talks to the outside system and reports what it found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


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


class PaymentProvider:
    """Subclass, set ``identifier``, ``verbose_name`` and ``channels``, and implement
    the steps. Money moves only in the core (``app.money.orders.mark_paid``): a
    provider never writes balances or order states itself."""

    #: Unique name; money from this provider enters through ``external:<identifier>``.
    identifier: str = ""
    verbose_name: str = ""
    #: Order channels served, e.g. ``("jsapi", "mweb", "native")``.
    channels: tuple[str, ...] = ()

    async def create_payment(self, order: dict[str, Any], request: RequestInfo) -> dict[str, Any]:
        """Start paying ``order`` on its channel; return what the page needs (``code_url``,
        JSAPI params, ``mweb_url``). Raise ``PaymentProviderError`` on failure. You may
        NOT mark the order paid here."""
        raise NotImplementedError

    async def handle_notify(self, body: bytes, headers: Mapping[str, str]) -> PaymentState:
        """Verify a payment notify the outside system sent (signature, merchant) and say
        what it reports, with ``out_trade_no`` set. Raise ``PaymentProviderError`` for
        anything not believed. You may NOT mark the order paid here: the caller (the
        provider plugin's notify route) passes the state to
        ``app.money.orders.apply_payment_state(provider, state)``, which books it
        through ``mark_paid`` exactly once. Optional: a plugin may verify in its route."""
        raise NotImplementedError

    async def query(self, order: dict[str, Any]) -> PaymentState:
        """Ask the outside system about ``order``. The ``money.settle_pending`` job calls
        it for pending orders older than 5 minutes: ``paid`` is booked (through
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
