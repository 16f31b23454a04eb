"""Payment providers: the small interface between the core's orders and an outside
payment system (WeChat Pay, ...). The order state machine lives in the core; a
provider only talks to the outside system and reports what it found.
"""

from __future__ import annotations

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
    """What the provider says of an order's payment (from ``query``)."""

    status: Literal["paid", "pending", "closed", "unknown"]
    amount: int = 0
    transaction_id: str = ""
    raw: dict[str, Any] | None = None


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

    async def query(self, order: dict[str, Any]) -> PaymentState:
        """Ask the outside system about ``order`` (used by reconciliation)."""
        return PaymentState("unknown")

    async def close(self, order: dict[str, Any]) -> None:
        """Tell the outside system the order will not be paid (expiry)."""

    async def refund(self, order: dict[str, Any], refund: dict[str, Any]) -> dict[str, Any]:
        """Return ``refund["amount"]`` of ``order`` to the payer, with
        ``refund["out_refund_no"]`` stable across retries so it never pays twice."""
        raise NotImplementedError
