"""kpay plugin ``coupons`` (优惠券): codes that take money off live tickets, courses
and consultation minutes.

Built only on kpay's seams (docs/plugins.md): the price adjuster ``coupon``
(``register_price_adjusters``; a buyer sends ``"adjust": {"coupon": "CODE"}``), its
own routes under ``/api/v1/coupons``, its ``[coupons]`` settings and its one collection
``coupons``. It reads no other collection: the seller comes from the order's
``PriceTarget.seller``, roles from the caller's ``User``. The core books the money:
a seller-funded coupon shrinks the seller's earnings, a platform-funded one is paid by
``platform:promotions``.
"""

from __future__ import annotations

from typing import Any

from kpay import hookimpl
from kpay_coupons import store
from kpay_coupons.adjuster import CouponAdjuster
from kpay_coupons.handlers import routes
from kpay_coupons.settings import CouponsSettings


@hookimpl
def register_settings() -> list[tuple[str, Any]]:
    return [("coupons", CouponsSettings)]


@hookimpl
def register_routes(app: Any) -> list[Any]:
    return routes()


@hookimpl
def register_price_adjusters(app: Any) -> list[Any]:
    return [CouponAdjuster()]


@hookimpl
def register_collections(app: Any) -> list[str]:
    return [store.COUPONS]


@hookimpl
def register_indexes(app: Any) -> list[Any]:
    return store.indexes()
