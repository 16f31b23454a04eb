"""The ``[coupons]`` section."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from kpay.core.config import Section

if TYPE_CHECKING:
    from kpay.core.app import KPay

class CouponsSettings(Section):
    """[coupons]: bounds on what sellers and admins may create."""

    # Coupons one user may have active at once (neither disabled nor expired); creating
    # one more is 409 too_many_open.
    max_active_per_seller: int = Field(50, gt=0, le=10_000)
    # The largest max_uses of one coupon: its claims are kept on its document.
    max_uses: int = Field(10_000, gt=0, le=20_000)
    # How far ahead of now a coupon may expire, in days.
    max_valid_days: int = Field(366, gt=0, le=3660)
    # The largest max_off_fen of a platform-funded coupon (what one use may cost the
    # platform, in fen).
    max_platform_off_fen: int = Field(5_000, gt=0, le=10_000_000)


def settings_of(app: KPay) -> CouponsSettings:
    return app.settings.coupons
