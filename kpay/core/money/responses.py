"""What the wallet and order routes answer (docs/api.md, "Wallet and orders"): response
models for the OpenAPI document. Money is integer fen; times ISO 8601 with an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Wallet(BaseModel):
    balance: int
    held: int
    available: int
    currency: Literal["CNY"]


class LedgerEntry(BaseModel):
    """One ledger transaction as it touched the account: ``amount`` is this account's
    side (negative: money out)."""

    key: str
    amount: int
    memo: str
    created_at: datetime
    meta: dict[str, Any]


class LedgerPage(BaseModel):
    entries: list[LedgerEntry]
    #: The ``key`` of the last entry when the page is full: ``before`` of the next page.
    next_before: str | None


class EarningsPage(LedgerPage):
    balance: int


class PriceAdjustment(BaseModel):
    """One adjustment of an order's price (a coupon, a discount): fen off, who funds
    it (``seller``, ``platform`` or ``pro_rata``), and for consultations the free
    minutes."""

    adjuster: str
    amount: int
    label: str
    funded_by: Literal["seller", "platform", "pro_rata"]
    free_units: int = 0
    #: The most it takes off in all (the order, or the whole consultation); None: no cap.
    max_total: int | None = None


class Order(BaseModel):
    id: str
    out_trade_no: str
    kind: str
    title: str
    amount: int
    status: Literal["pending", "paid", "fulfilled", "closed", "refunded"]
    channel: str
    #: The item as priced on the server (its kind's own fields).
    item: dict[str, Any]
    refunded: int
    created_at: datetime
    paid_at: datetime | None
    expires_at: datetime | None
    #: The price before adjustments (equals ``amount`` when there are none).
    list_amount: int
    adjustments: list[PriceAdjustment]


class PayInstructions(BaseModel):
    """What the page needs to pay: ``code_url`` (native), ``mweb_url`` (mweb), the
    WeixinJSBridge parameters (jsapi), nothing for a wallet order; a plugin's provider
    may answer other fields."""

    model_config = ConfigDict(extra="allow")

    code_url: str | None = None
    mweb_url: str | None = None
    appId: str | None = None
    timeStamp: str | None = None
    nonceStr: str | None = None
    package: str | None = None
    signType: str | None = None
    paySign: str | None = None


class OrderCreated(BaseModel):
    order: Order
    pay: PayInstructions


class OrderList(BaseModel):
    orders: list[Order]


class OrderResult(BaseModel):
    order: Order
