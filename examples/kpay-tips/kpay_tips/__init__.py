"""kpay plugin ``tips`` (打赏): a student tips a consultant from their wallet.

A tip is an order of kind ``tip`` paid by the ``wallet`` channel, so the core does the
money: the wallet is charged and the consultant's earnings and the platform fee are
credited in one ledger transaction, exactly once. This plugin only validates the
item, prices it and announces the paid tip.

Contract of the item (``POST /api/v1/orders``, ``channel: "wallet"``)::

    {"kind": "tip", "to_user": "<consultant id>", "amount": <fen>,
     "room_id": "<live room id>"?, "message": "<= 100 chars"?}

- ``to_user`` is explicit and must be a consultant: a user the core knows
  (``app.users.profile``) with the role ``consultant``.
- ``room_id`` is optional: the tip is then also shown in that room (an event ``tip``
  on ``room:<id>``). The room must exist and be hosted by ``to_user``: its owner as
  ``app.access.owner("room:<id>")`` answers (the ``live_qa`` plugin owns the prefix
  ``room``). This plugin reads no collection at all. Without ``live_qa`` no room has
  an owner: tip without a room.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from kpay import hookimpl
from kpay.core.config import Section
from kpay.core.errors import BadRequest, NotFound
from kpay.core.money.kinds import OrderKind, Priced, parse_item


class TipsSettings(Section):
    """[tips]: the smallest and largest tip, in fen."""

    min_amount: int = Field(100, gt=0)
    max_amount: int = Field(50_000, gt=0)

    @model_validator(mode="after")
    def max_not_below_min(self) -> TipsSettings:
        if self.max_amount < self.min_amount:
            raise ValueError("max_amount must not be below min_amount")
        return self


class TipItem(BaseModel):
    kind: str
    to_user: str = Field(min_length=1, max_length=64)
    amount: int = Field(strict=True)
    room_id: str | None = Field(None, min_length=1, max_length=64)
    message: str = Field("", max_length=100)


class Tip(OrderKind):
    name = "tip"
    channels = ("wallet",)

    async def price(self, app: Any, user: Any, item: dict[str, Any]) -> Priced:
        tip = parse_item(TipItem, item)
        limits = app.settings.tips
        if not limits.min_amount <= tip.amount <= limits.max_amount:
            raise BadRequest(f"a tip is between {limits.min_amount} and {limits.max_amount} fen",
                             code="invalid_amount", field="item.amount",
                             min=limits.min_amount, max=limits.max_amount)
        if tip.to_user == user.id:
            raise BadRequest("you cannot tip yourself", code="tip_to_self", field="item.to_user")
        consultant = await app.users.profile(tip.to_user)
        if not consultant or consultant.get("role") != "consultant":
            raise NotFound(f"no consultant {tip.to_user!r}", code="consultant_not_found")
        if tip.room_id is not None:
            host = await app.access.owner(f"room:{tip.room_id}")
            if host is None:
                raise NotFound(f"no room {tip.room_id!r}", code="room_not_found")
            if host != tip.to_user:
                raise BadRequest(f"room {tip.room_id!r} is not hosted by {tip.to_user!r}",
                                 code="not_room_host", field="item.room_id")
        return Priced(tip.amount, f"打赏 {tip.to_user} {tip.amount / 100:.2f} 元",
                      app.money.earnings_credits(tip.amount, tip.to_user),
                      tip.model_dump(exclude_none=True))

    async def fulfil(self, app: Any, order: dict[str, Any]) -> None:
        # Moves no money: the core booked it with the order. The order itself is the
        # record of the tip; this only announces it. A fulfilment retried after a crash
        # may announce twice: the events carry order_id so clients can drop repeats.
        item = order["item"]
        shown = {"order_id": order["_id"], "from": order["user_id"], "to": item["to_user"],
                 "amount": order["amount"], "message": item.get("message", "")}
        if item.get("room_id"):
            await app.publish(f"room:{item['room_id']}", "tip", shown)
        await app.tell_user(item["to_user"], "tip_received", shown)


@hookimpl
def register_settings():
    return [("tips", TipsSettings)]


@hookimpl
def register_collections(app):
    # The order is the record of a tip: the plugin keeps no collection of its own.
    return []


@hookimpl
def register_order_kinds(app):
    return [Tip()]
