"""Routes of the coupons plugin, under ``/api/v1/coupons``: thin, parse, check, call,
answer. Sellers (consultants) make coupons for what they sell; admins for anything."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from kpay.core.web import BaseHandler, Route, api
from kpay_coupons import store

TAGS = ("coupons",)
SELLER = "consultant"  # an admin passes every role check too


class Coupon(BaseModel):
    code: str
    created_by: str
    seller: str | None
    funded_by: str
    off_fen: int | None
    off_percent: int | None
    free_minutes: int | None
    label: str
    min_amount: int
    expires_at: datetime
    max_uses: int
    used: int
    per_user: int
    kinds: list[str]
    disabled: bool
    created_at: datetime


class CouponResult(BaseModel):
    coupon: Coupon


class CouponList(BaseModel):
    coupons: list[Coupon]


class CouponsHandler(BaseHandler):
    @api("Create a coupon (consultant: for what you sell; admin: platform-funded too)",
         body=store.CouponCreate, roles=(SELLER,), status=201, response=CouponResult)
    async def post(self) -> None:
        user = self.require_user(SELLER)
        coupon = await store.create(self.kpay, user, self.body(store.CouponCreate))
        self.write_json({"coupon": store.public(coupon)}, 201)

    @api("The caller's coupons, newest first", roles=(SELLER,), query=("limit",),
         response=CouponList)
    async def get(self) -> None:
        user = self.require_user(SELLER)
        limit = self.query_int("limit", 50, 1, 200)
        self.write_json({"coupons": await store.listing(self.kpay, user, limit)})


class CouponDisableHandler(BaseHandler):
    @api("Disable a coupon (its creator or an admin); uses already taken stay",
         roles=(SELLER,), response=CouponResult)
    async def post(self, code: str) -> None:
        user = self.require_user(SELLER)
        coupon = await store.disable(self.kpay, user, code)
        self.write_json({"coupon": store.public(coupon)})


def routes() -> list[Route]:
    return [Route("/api/v1/coupons", CouponsHandler, tags=TAGS),
            Route("/api/v1/coupons/{code}/disable", CouponDisableHandler, tags=TAGS)]
