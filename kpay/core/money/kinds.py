"""Order kinds: what can be bought. Plugins add kinds through ``register_order_kinds``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kpay.core.auth import User
from kpay.core.errors import BadRequest
from kpay.core.money import accounts

if TYPE_CHECKING:
    from kpay.core.app import KPay


@dataclass(frozen=True)
class Priced:
    """What an item costs, resolved on the server.

    ``credits`` say where the money goes when the order is paid (postings that sum to
    ``amount``); the payer's side (wallet or the provider's clearing account) is added
    by the core. ``item`` is the validated item as it will be stored on the order.
    """

    amount: int
    title: str
    credits: list[tuple[str, int]]
    item: dict[str, Any] = field(default_factory=dict)


class OrderKind:
    """A kind of thing that can be bought.

    Subclass it, set ``name``, and implement :meth:`price` and :meth:`fulfil`.
    """

    #: The ``item.kind`` value that selects this kind.
    name: str = ""
    #: Order channels that may pay for it; ``None`` allows every channel.
    channels: tuple[str, ...] | None = None

    async def price(self, app: KPay, user: User, item: dict[str, Any]) -> Priced:
        """Validate ``item`` for ``user`` and resolve its price from the server's own
        data (never from the client). Raise ``BadRequest``/``NotFound``/``Conflict``
        to refuse; nothing has been written yet."""
        raise NotImplementedError

    async def reserve(self, app: KPay, order: dict[str, Any], session: Any) -> None:
        """Claim what the order needs (a seat, one-per-user) inside the transaction that
        creates the order: pass ``session=session`` to every write. Raise ``Conflict``
        to refuse; the order is then not created and nothing is charged."""

    async def release(self, app: KPay, order: dict[str, Any]) -> None:
        """Give back what :meth:`reserve` claimed, when a pending order is closed."""

    async def fulfil(self, app: KPay, order: dict[str, Any]) -> None:
        """Deliver a paid order (grant the ticket, enroll, ...).

        Called once the payment is booked; after a crash it may be called again for the
        same order, so write with keys derived from ``order["_id"]``. It must not move
        money: the payment postings were written with the order's state change.
        """

    async def on_refund(self, app: KPay, order: dict[str, Any], refund: dict[str, Any]) -> None:
        """Undo what fulfilment granted, if the kind wants to (default: nothing)."""


class WalletTopupItem(BaseModel):
    kind: str
    amount: int = Field(strict=True)


class WalletTopup(OrderKind):
    """Core kind ``wallet_topup``: money from a payment provider into the wallet."""

    name = "wallet_topup"
    channels = ("jsapi", "mweb", "native")

    async def price(self, app: KPay, user: User, item: dict[str, Any]) -> Priced:
        from kpay.core.web import validate

        topup = validate(WalletTopupItem, item)
        money = app.settings.money
        if not money.topup_min <= topup.amount <= money.topup_max:
            raise BadRequest(
                f"top-up must be between {money.topup_min} and {money.topup_max} fen",
                code="invalid_amount", field="item.amount", min=money.topup_min,
                max=money.topup_max)
        return Priced(topup.amount, f"钱包充值 {topup.amount / 100:.2f} 元",
                      [(accounts.wallet(user.id), topup.amount)],
                      {"kind": self.name, "amount": topup.amount})
