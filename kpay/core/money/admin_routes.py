"""Admins' money routes (docs/api.md, "Operators"): an order with its refunds, refunding
it, and refunding a payment that arrived after its order was closed. The work and the
audit records are in kpay/core/money/operator.py, shared with ``kpay refund``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from kpay.core.money import operator
from kpay.core.money.operator import MAX_REASON
from kpay.core.money.responses import Order
from kpay.core.money.routes import idempotency_key
from kpay.core.responses import AttentionEntry
from kpay.core.web import BaseHandler, Route, api

#: The largest single refund asked for, in fen (a typo guard; the order bounds it too).
MAX_AMOUNT = 10**10


def stripped_reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("give a reason")
    return value


class OperatorRefund(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT, description="fen to refund")
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    to: Literal["original", "wallet"] = "original"
    purpose: Literal["revoke", "adjust"] | None = None

    _reason = field_validator("reason")(stripped_reason)


class LateRefund(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=MAX_REASON)


class AdminOrder(Order):
    user_id: str
    refundable: int
    paid_from: str | None
    paid_via: str | None
    transaction_id: str | None
    closed_at: datetime | None
    close_reason: str | None
    #: The refund of a payment that arrived after the order was closed, if one was made.
    late_refund_id: str | None


class AdminRefund(BaseModel):
    id: str
    order_id: str
    amount: int
    reason: str
    purpose: Literal["revoke", "adjust"]
    to: str
    status: Literal["pending", "succeeded", "failed"]
    out_refund_no: str
    created_at: datetime
    succeeded_at: datetime | None
    provider_status: str | None
    error: str | None
    #: A refund of a payment that arrived after the order was closed.
    late: bool


class AdminOrderResult(BaseModel):
    order: AdminOrder
    refunds: list[AdminRefund]


class AdminRefundResult(BaseModel):
    refund: AdminRefund


class LateRefundResult(BaseModel):
    refund: AdminRefund
    entry: AttentionEntry


class AdminOrderHandler(BaseHandler):
    @api("Admins: an order with its refunds", roles=("admin",), response=AdminOrderResult)
    async def get(self, order_id: str) -> None:
        self.require_user("admin")
        self.write_json(await operator.order_with_refunds(self.kpay, order_id))


class AdminOrderRefundHandler(BaseHandler):
    @api("Admins: refund a paid order, fully or partly, to the original channel or the "
         "wallet; Idempotency-Key is the refund's key; in the audit log",
         roles=("admin",), body=OperatorRefund, response=AdminRefundResult)
    async def post(self, order_id: str) -> None:
        admin = self.require_user("admin")
        asked = self.body(OperatorRefund)
        refund = await operator.refund_order(
            self.kpay, admin.id, self.request.remote_ip or "", order_id, asked.amount,
            asked.reason, to=asked.to, purpose=asked.purpose, key=idempotency_key(self))
        self.write_json({"refund": operator.admin_refund(refund)})


class AttentionRefundHandler(BaseHandler):
    @api("Admins: refund in full, to the original channel, an order paid after it was "
         "closed (its needs-attention entry), and resolve the entry; in the audit log",
         roles=("admin",), body=LateRefund, response=LateRefundResult)
    async def post(self, entry_id: str) -> None:
        admin = self.require_user("admin")
        asked = self.body(LateRefund)
        refund, entry = await operator.refund_paid_after_close(
            self.kpay, admin.id, self.request.remote_ip or "", entry_id, asked.reason.strip(),
            key=idempotency_key(self))
        self.write_json({"refund": operator.admin_refund(refund), "entry": entry})


def admin_money_routes() -> list[Route]:
    admin = ("admin",)
    return [
        Route("/api/v1/admin/orders/{order_id}", AdminOrderHandler, tags=admin),
        Route("/api/v1/admin/orders/{order_id}/refund", AdminOrderRefundHandler, tags=admin),
        Route("/api/v1/admin/attention/{entry_id}/refund", AttentionRefundHandler, tags=admin),
    ]
