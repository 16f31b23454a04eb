"""Price adjustments: coupons, membership discounts, promotions (docs/money.md, "Price
adjustments").

Plugins add :class:`PriceAdjuster` objects through ``register_price_adjusters``. When an
order is priced (or a consultation accepted, for its per-minute rate), every adjuster is
asked in turn, with the value the buyer sent under its name in ``"adjust"`` (None when
it sent none: a membership discount needs no code). An adjustment says how many fen
come off and who funds them:

- ``seller``: the seller's earnings share shrinks (the platform fee stays);
- ``platform``: the ``platform:promotions`` account pays the difference, so the seller
  and the fee are paid as at full price;
- ``pro_rata``: every credit shrinks in proportion.

The adjuster's :meth:`PriceAdjuster.reserve` runs inside the transaction that creates
the order (a coupon use is taken with the order or not at all); :meth:`release` gives it
back when an unpaid order closes or a paid one is fully refunded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kpay.core.errors import BadRequest
from kpay.core.money import accounts
from kpay.core.money.refunds import refund_debits

if TYPE_CHECKING:
    from kpay.core.app import KPay

log = logging.getLogger("kpay.money.adjustments")

FUNDERS = ("seller", "platform", "pro_rata")
#: At most this many adjustments may be asked for in one request.
MAX_REQUESTED = 8
LABEL_CHARS = 60
MAX_FREE_UNITS = 10_000


@dataclass(frozen=True)
class PriceTarget:
    """What is being priced. ``amount`` is the list price in fen of the whole order, or
    of one minute when ``unit`` is ``"minute"`` (a consultation). ``seller`` is the user
    whose earnings the price credits, when one does."""

    kind: str
    item: dict[str, Any]
    amount: int
    seller: str | None = None
    unit: Literal["order", "minute"] = "order"


@dataclass(frozen=True)
class Adjustment:
    """What an adjuster takes off. ``amount`` is fen off the target (per minute for a
    consultation); ``free_units`` makes the first N minutes cost nothing (consultations
    only); ``max_total`` caps the fen it takes off in all (the whole order, or the whole
    session: the platform's exposure to one use of a coupon). ``ref`` is kept on the order
    (JSON-safe) and handed back to ``reserve`` and ``release``: a coupon keeps its code
    there."""

    amount: int
    label: str
    funded_by: Literal["seller", "platform", "pro_rata"] = "seller"
    free_units: int = 0
    ref: dict[str, Any] = field(default_factory=dict)
    max_total: int | None = None


class PriceAdjuster:
    """Subclass, set ``name`` (the key under ``"adjust"`` in a request), implement
    :meth:`adjust` and, when the adjustment is a limited thing, :meth:`reserve` and
    :meth:`release`."""

    name: str = ""

    async def adjust(self, app: KPay, user_id: str, target: PriceTarget,
                     value: Any) -> Adjustment | None:
        """The adjustment for ``target`` bought by ``user_id``, or None. ``value`` is
        what the buyer sent under ``adjust.<name>`` (None if nothing): validate it and
        raise ``BadRequest`` (bad code) or ``Conflict`` (expired, used up) to refuse
        the whole order. Nothing may be written here."""
        return None

    async def reserve(self, app: KPay, owner: str, user_id: str, adjustment: dict[str, Any],
                      session: Any) -> None:
        """Claim what the adjustment uses (a coupon use) for ``owner`` (``order:<id>``
        or ``consultation:<id>``), inside the owner's transaction: pass
        ``session=session`` to every write. Raise ``Conflict`` to refuse (used up): the
        order is then not created. May run more than once for one owner (a retried
        transaction); key the claim by ``owner``."""

    async def release(self, app: KPay, owner: str, adjustment: dict[str, Any]) -> None:
        """Give back what :meth:`reserve` claimed for ``owner``: the order closed unpaid,
        or was fully refunded. Must be idempotent (keyed by ``owner``): it may run
        again after a crash."""


class Adjustments:
    """The registered adjusters; reached as ``app.money.adjustments``."""

    def __init__(self, app: KPay) -> None:
        self.app = app
        self.adjusters: dict[str, PriceAdjuster] = {}

    def register(self, adjusters: list[PriceAdjuster]) -> None:
        for adjuster in adjusters:
            if not adjuster.name or adjuster.name in self.adjusters:
                raise ValueError(f"price adjuster {adjuster.name!r} is empty or registered "
                                 "twice")
            self.adjusters[adjuster.name] = adjuster

    def check_requested(self, requested: dict[str, Any], field_name: str = "adjust") -> None:
        """400 for an adjustment nobody provides (a typo must not silently charge the
        full price) or too many of them."""
        if len(requested) > MAX_REQUESTED:
            raise BadRequest(f"at most {MAX_REQUESTED} adjustments", code="invalid_field",
                             field=field_name)
        for name in requested:
            if name not in self.adjusters:
                raise BadRequest(f"unknown adjustment {name!r}; adjustments: "
                                 + (", ".join(sorted(self.adjusters)) or "none"),
                                 code="unknown_adjustment", field=f"{field_name}.{name}")

    async def price(self, user_id: str, target: PriceTarget,
                    requested: dict[str, Any]) -> list[dict[str, Any]]:
        """Ask every adjuster; return the adjustments as stored (``adjuster``,
        ``amount``, ``label``, ``funded_by``, ``free_units``, ``ref``). Together they
        never take off more than the target's amount."""
        self.check_requested(requested)
        left = target.amount
        found: list[dict[str, Any]] = []
        for name, adjuster in self.adjusters.items():
            adjustment = await adjuster.adjust(self.app, user_id, target, requested.get(name))
            if adjustment is None:
                continue
            check_adjustment(name, adjustment, target)
            cap = adjustment.max_total
            off = min(adjustment.amount, left, *([cap] if cap is not None else []))
            if (off == 0 and adjustment.free_units == 0) or cap == 0:
                continue
            left -= off
            found.append({"adjuster": name, "amount": off, "label": adjustment.label,
                          "funded_by": adjustment.funded_by,
                          "free_units": adjustment.free_units, "max_total": cap,
                          "ref": dict(adjustment.ref)})
        return found

    async def reserve(self, owner: str, user_id: str, adjustments: list[dict[str, Any]],
                      session: Any) -> None:
        for adjustment in adjustments:
            adjuster = self.adjusters.get(adjustment["adjuster"])
            if adjuster is None:
                raise BadRequest(f"adjustment {adjustment['adjuster']!r} is not available",
                                 code="unknown_adjustment")
            await adjuster.reserve(self.app, owner, user_id, adjustment, session)

    async def release(self, owner: str, adjustments: list[dict[str, Any]]) -> None:
        """Give every reservation back; one adjuster failing is reported on the
        attention list and does not stop the others."""
        for adjustment in adjustments:
            adjuster = self.adjusters.get(adjustment["adjuster"])
            if adjuster is None:
                log.error("%s: adjuster %s is not loaded; its reservation stays",
                          owner, adjustment["adjuster"])
                continue
            async with self.app.attention.isolate("money.adjustments", owner):
                await adjuster.release(self.app, owner, adjustment)


def check_adjustment(name: str, adjustment: Adjustment, target: PriceTarget) -> None:
    """A plugin's adjustment must be integer fen and name its funder: a bug fails the
    request (500) rather than booking wrong money."""
    def is_count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(adjustment, Adjustment) or not is_count(adjustment.amount):
        raise ValueError(f"price adjuster {name}: amount {adjustment!r} is not integer fen")
    if adjustment.funded_by not in FUNDERS:
        raise ValueError(f"price adjuster {name}: funded_by must be one of {FUNDERS}")
    if not is_count(adjustment.free_units) or adjustment.free_units > MAX_FREE_UNITS:
        raise ValueError(f"price adjuster {name}: bad free_units {adjustment.free_units!r}")
    if adjustment.max_total is not None and not is_count(adjustment.max_total):
        raise ValueError(f"price adjuster {name}: bad max_total {adjustment.max_total!r}")
    if adjustment.free_units and target.unit != "minute":
        raise ValueError(f"price adjuster {name}: free_units only apply to minutes")
    if not isinstance(adjustment.label, str) or not adjustment.label:
        raise ValueError(f"price adjuster {name}: an adjustment needs a label")
    object.__setattr__(adjustment, "label", adjustment.label[:LABEL_CHARS])


def off_for_unit(adjustment: dict[str, Any], unit_price: int, unit: int) -> int:
    """Fen one adjustment takes off unit ``unit`` (1-based; an order is unit 1): all of
    it within the free units, else its amount; never past its ``max_total`` over units
    1..``unit`` (counted at these nominal values, so the cap is never exceeded)."""
    free = adjustment.get("free_units", 0)

    def nominal_sum(units: int) -> int:
        return min(units, free) * unit_price + max(0, units - free) * adjustment["amount"]

    off = unit_price if unit <= free else adjustment["amount"]
    cap = adjustment.get("max_total")
    if cap is None:
        return off
    return max(0, min(off, cap - nominal_sum(unit - 1)))


def adjusted_credits(credits: list[tuple[str, int]], list_amount: int,
                     adjustments: list[dict[str, Any]], unit: int = 1
                     ) -> tuple[int, list[tuple[str, int]]]:
    """What the buyer pays for one unit, and the credits to post with it.

    ``credits`` sum to ``list_amount``. A seller-funded part comes out of the earnings
    credits (then, if they are too small, out of the others in proportion); a pro rata
    part out of every credit in proportion; a platform-funded part is a negative
    ``platform:promotions`` line. The returned credits always sum to the amount paid.
    """
    lines = [(account, value) for account, value in credits]
    paid = list_amount
    promotions = 0
    for adjustment in adjustments:
        off = min(off_for_unit(adjustment, list_amount, unit), paid)
        if off <= 0:
            continue
        paid -= off
        if adjustment["funded_by"] == "platform":
            promotions += off
            continue
        if adjustment["funded_by"] == "seller":
            earned = [(a, v) for a, v in lines if accounts.kind_of(a) == "earnings"]
            from_seller = min(off, sum(v for _, v in earned))
            lines = take(lines, earned, from_seller)
            off -= from_seller
        lines = take(lines, lines, off)
    if promotions:
        lines.append((accounts.PLATFORM_PROMOTIONS, -promotions))
    return paid, [(a, v) for a, v in lines if v]


def take(lines: list[tuple[str, int]], among: list[tuple[str, int]],
         amount: int) -> list[tuple[str, int]]:
    """``lines`` with ``amount`` fen taken from the accounts of ``among`` in proportion
    (the refund split, so no fen is lost to rounding)."""
    if amount <= 0:
        return lines
    debits = dict(refund_debits([list(x) for x in among if x[1] > 0], [], amount))
    return [(a, v + debits.pop(a, 0)) for a, v in lines]


def public_adjustments(adjustments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the buyer and receipts see of each adjustment."""
    return [{"adjuster": a["adjuster"], "amount": a["amount"], "label": a["label"],
             "funded_by": a["funded_by"], "free_units": a.get("free_units", 0),
             "max_total": a.get("max_total")}
            for a in adjustments]
