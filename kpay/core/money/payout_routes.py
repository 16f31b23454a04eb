"""Payout routes (docs/api.md, "Payouts"): a consultant withdraws earnings, sees the
history and what is withdrawable; admins approve or reject large payouts; dev mode
confirms a transfer as the receiver would in WeChat."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from kpay.core.errors import BadRequest
from kpay.core.money.payouts import public
from kpay.core.money.providers import TransferState
from kpay.core.money.routes import IDEMPOTENCY_KEY
from kpay.core.users import mask_name
from kpay.core.web import BaseHandler, Route, api

if TYPE_CHECKING:
    from kpay.core.app import KPay


class PayoutRequest(BaseModel):
    # Strict: "100" or 10.0 is not integer fen.
    model_config = ConfigDict(extra="forbid", strict=True)

    amount: int = Field(description="fen to withdraw from the caller's earnings")


class RealNameBody(BaseModel):
    # The example is also what the API fuzzer tries first (tests/reliability).
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"real_name": "张三"}]})

    real_name: str = Field(description="2 to 30 Chinese or Latin letters or the middle dot",
                           examples=["张三"], max_length=64)


class RealName(BaseModel):
    #: The name masked ("张*三"), or null when none is set.
    real_name: str | None


class Reason(BaseModel):
    reason: str = Field("", max_length=500)


class Payout(BaseModel):
    id: str
    amount: int
    status: str
    created_at: datetime
    updated_at: datetime
    #: For ``waiting_confirmation``: what the page hands ``wx.requestMerchantTransfer``.
    package_info: str | None
    #: The rest of ``wx.requestMerchantTransfer``'s arguments (``mchId``, ``appId``).
    confirm_params: dict[str, str]
    expires_at: datetime | None
    reason: str
    needs_approval: bool


class PayoutResult(BaseModel):
    payout: Payout


class PayoutList(BaseModel):
    payouts: list[Payout]


class FreeUp(BaseModel):
    date: str
    amount: int


class EarningsSummary(BaseModel):
    balance: int
    pending: int
    withdrawable: int
    frees: list[FreeUp]
    min_amount: int
    max_per_day: int
    withdrawn_today: int
    hold_days: int


class PayoutsHandler(BaseHandler):
    @api("Consultants: withdraw ``amount`` fen of earnings. An optional Idempotency-Key "
         "header makes a retry return the first payout", roles=("consultant",),
         body=PayoutRequest, status=201, response=PayoutResult)
    async def post(self) -> None:
        user = self.require_user("consultant")
        request = self.body(PayoutRequest)
        key = self.request.headers.get("Idempotency-Key") or None
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            raise BadRequest("Idempotency-Key must be 1 to 64 printable ASCII characters",
                             code="invalid_field", field="Idempotency-Key")
        payout = await self.kpay.money.payouts.request(user, request.amount, key)
        if payout.get("replayed"):
            self.set_header("Idempotent-Replayed", "true")
        self.write_json({"payout": public(payout)}, 201)

    @api("Consultants: their payouts with their states, newest first", roles=("consultant",),
         query=("limit",), response=PayoutList)
    async def get(self) -> None:
        user = self.require_user("consultant")
        limit = self.query_int("limit", 50, 1, 200)
        cursor = self.kpay.money.payouts.collection.find({"user_id": user.id}).sort(
            "created_at", -1).limit(limit)
        self.write_json({"payouts": [public(p) async for p in cursor]})


class RealNameHandler(BaseHandler):
    @api("Consultants: set their own real name for payouts that need it (2,000 yuan and "
         "more through WeChat Pay); answered masked, audited without the name",
         roles=("consultant",), body=RealNameBody, response=RealName)
    async def put(self) -> None:
        user = self.require_user("consultant")
        masked = await self.kpay.users.set_real_name(user.id, self.body(RealNameBody).real_name)
        await self.kpay.audit.record(user.id, "payout.real_name", f"user:{user.id}",
                                     source=self.request.remote_ip or "")
        self.write_json({"real_name": masked})

    @api("Consultants: their own real name for payouts, masked (null if none)",
         roles=("consultant",), response=RealName)
    async def get(self) -> None:
        user = self.require_user("consultant")
        name = await self.kpay.users.real_name(user.id)
        self.write_json({"real_name": mask_name(name) if name else None})


class PayoutCancelHandler(BaseHandler):
    @api("Consultants: cancel a payout not yet received (its money returns)",
         roles=("consultant",), response=PayoutResult)
    async def post(self, payout_id: str) -> None:
        user = self.require_user("consultant")
        payouts = self.kpay.money.payouts
        payout = await payouts.get_for(user.id, payout_id)
        self.write_json({"payout": public(await payouts.cancel(payout, "cancelled by user"))})


class EarningsSummaryHandler(BaseHandler):
    @api("The caller's earnings: balance, pending (with the dates it frees up) and "
         "withdrawable, in fen", response=EarningsSummary)
    async def get(self) -> None:
        user = self.require_user()
        self.write_json(await self.kpay.money.payouts.summary(user.id))


class PayoutDecisionHandler(BaseHandler):
    decision: str = "approve"

    @api("Admins: approve or reject a payout awaiting approval (audited)", roles=("admin",),
         body=Reason, response=PayoutResult)
    async def post(self, payout_id: str) -> None:
        admin = self.require_user("admin")
        reason = self.body(Reason).reason
        payouts = self.kpay.money.payouts
        act = payouts.approve if self.decision == "approve" else payouts.reject
        done = await act(payout_id, admin.id, reason, self.request.remote_ip or "")
        self.write_json({"payout": public(done)})


class PayoutApproveHandler(PayoutDecisionHandler):
    decision = "approve"


class PayoutRejectHandler(PayoutDecisionHandler):
    decision = "reject"


class DevConfirmPayoutHandler(BaseHandler):
    @api("Dev mode: the receiver confirms a waiting transfer (as wx.requestMerchantTransfer "
         "would); booked through the same path as a transfer notify", response=PayoutResult)
    async def post(self, payout_id: str) -> None:
        user = self.require_user()
        payouts = self.kpay.money.payouts
        payout = await payouts.get_for(user.id, payout_id)
        provider = payouts.provider_of(payout)
        confirm = getattr(provider, "confirm_transfer", None)
        if confirm is not None:  # a fake that keeps its own transfers learns of it too
            confirm(payout["out_bill_no"])
        state = TransferState("succeeded", payout["out_bill_no"], payout["amount"],
                              provider_status="DEV_CONFIRMED")
        done: dict[str, Any] = payout
        if payout["status"] == "waiting_confirmation":
            done = await payouts.apply(payout_id, state)
        self.write_json({"payout": public(done)})


def payout_routes(app: KPay) -> list[Route]:
    routes = [
        Route("/api/v1/payouts", PayoutsHandler, tags=("money",)),
        Route("/api/v1/payouts/real-name", RealNameHandler, tags=("money",)),
        Route("/api/v1/payouts/{payout_id}/cancel", PayoutCancelHandler, tags=("money",)),
        Route("/api/v1/earnings/summary", EarningsSummaryHandler, tags=("money",)),
        Route("/api/v1/admin/payouts/{payout_id}/approve", PayoutApproveHandler,
              tags=("admin",)),
        Route("/api/v1/admin/payouts/{payout_id}/reject", PayoutRejectHandler,
              tags=("admin",)),
    ]
    if app.dev:
        routes.append(Route("/api/v1/dev/payouts/{payout_id}/confirm", DevConfirmPayoutHandler,
                            tags=("dev",)))
    return routes
