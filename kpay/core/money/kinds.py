"""Order kinds: what can be bought. Plugins add kinds through ``register_order_kinds``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field

from kpay.core.auth import User
from kpay.core.errors import BadRequest
from kpay.core.money import accounts
from kpay.core.web import validate

if TYPE_CHECKING:
    from kpay.core.app import KPay

M = TypeVar("M", bound=BaseModel)


def parse_item(model: type[M], item: dict[str, Any]) -> M:
    """Validate an order item with a pydantic model; 400 ``invalid_field`` naming the
    field as ``item.<name>``. Fields the model does not declare (a client-sent
    ``price``, say) are ignored: prices come from the server."""
    return validate(model, item, within="item")


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
    #: Whether price adjusters (coupons, discounts) may change its price. Off by
    #: default: a kind whose credits are paid out later at full value (an escrowed
    #: bounty, say) must not be sold for less.
    adjustable: bool = False

    async def price(self, app: KPay, user: User, item: dict[str, Any]) -> Priced:
        """Validate ``item`` for ``user`` and resolve its price from the server's own
        data (never from the client: ignore any ``amount``/``price`` it sends; parse
        with :func:`parse_item`). Raise ``BadRequest`` (400, bad item),
        ``NotFound`` (404, no such room/course) or ``Conflict`` (409, ended, sold out)
        to refuse; nothing has been written yet. Return ``Priced`` with integer fen
        and ``credits`` summing to ``amount`` (``app.money.earnings_credits`` splits
        the platform fee); a kind that breaks this fails the request with a 500."""
        raise NotImplementedError

    async def reserve(self, app: KPay, order: dict[str, Any], session: Any) -> None:
        """Claim what the order needs (a seat, one-per-user) inside the transaction that
        creates the order: pass ``session=session`` to every write (and read). Raise
        ``Conflict`` to refuse; the order is then not created and nothing is charged.
        The transaction may be retried after a write conflict, so this may run more
        than once for one order; only its last, committed run counts."""

    async def release(self, app: KPay, order: dict[str, Any]) -> None:
        """Give back what :meth:`reserve` claimed, when a pending order is closed."""

    async def fulfil(self, app: KPay, order: dict[str, Any]) -> None:
        """Deliver a paid order (grant the ticket, enroll, ...).

        Called once the payment is booked, under a one-minute lease, so never twice at
        the same time. If it raises, the order stays ``paid`` and the
        ``money.fulfil_paid`` job calls it again a minute later; after a crash it may
        also run again, so write with keys derived from ``order["_id"]``. It must not
        move money: the payment postings were written with the order's state change.
        """

    async def on_refund(self, app: KPay, order: dict[str, Any], refund: dict[str, Any]) -> None:
        """Undo what fulfilment granted, if the kind wants to (default: nothing).

        ``refund["purpose"]`` says what the refund means: ``"revoke"`` takes back what
        was bought (revoke the ticket, the enrollment); ``"adjust"`` only lowered the
        price, and the buyer keeps what they bought."""


class WalletTopupItem(BaseModel):
    kind: str
    amount: int = Field(strict=True)


class WalletTopup(OrderKind):
    """Core kind ``wallet_topup``: money from a payment provider into the wallet.

    Payable on every channel of every loaded provider (the money service passes them
    in), never from the wallet it fills."""

    name = "wallet_topup"

    def __init__(self, channels: tuple[str, ...] = ()) -> None:
        self.channels = channels

    async def price(self, app: KPay, user: User, item: dict[str, Any]) -> Priced:
        topup = parse_item(WalletTopupItem, item)
        money = app.settings.money
        if not money.topup_min <= topup.amount <= money.topup_max:
            raise BadRequest(
                f"top-up must be between {money.topup_min} and {money.topup_max} fen",
                code="invalid_amount", field="item.amount", min=money.topup_min,
                max=money.topup_max)
        return Priced(topup.amount, f"钱包充值 {topup.amount / 100:.2f} 元",
                      [(accounts.wallet(user.id), topup.amount)],
                      {"kind": self.name, "amount": topup.amount})
