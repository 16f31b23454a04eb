"""What consult_billing's routes answer (docs/api.md, "Consultations"): response models
for the OpenAPI document. Money is integer fen; times ISO 8601 with an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from kpay.core.money.responses import PriceAdjustment

Status = Literal["requested", "active", "paused", "ended"]


class ConsultantProfile(BaseModel):
    consultant_id: str
    name: str
    #: The consultant's avatar (public image URL), or null.
    avatar_url: str | None = None
    title: str
    bio: str = ""
    rate_per_minute: int
    min_minutes: int
    max_minutes: int
    available: bool
    #: In a running consultation now.
    busy: bool
    updated_at: datetime | None
    #: One of ``[storefront] categories``, None when not chosen.
    category: str | None = None


class ConsultantProfileResult(BaseModel):
    profile: ConsultantProfile


class ConsultantList(BaseModel):
    consultants: list[ConsultantProfile]


class Presence(BaseModel):
    """Which parties have a socket on ``consult:<id>``."""

    student: bool
    consultant: bool


class Consultation(BaseModel):
    id: str
    status: Status
    student_id: str
    consultant_id: str
    rate_per_minute: int
    min_minutes: int
    max_minutes: int
    billed_minutes: int
    charged: int
    consultant_earned: int
    platform_fee: int
    #: What price adjustments took off the billed minutes (``charged`` is after it).
    discount: int
    #: The coupons and discounts fixed at accept (per minute, or free minutes).
    adjustments: list[PriceAdjustment]
    requested_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    paid_until: datetime | None
    present: Presence
    absent_since: datetime | None
    paused_at: datetime | None
    remaining_seconds: float | None
    ended_at: datetime | None
    end_reason: str | None


class ConsultationResult(BaseModel):
    consultation: Consultation


class ConsultationList(BaseModel):
    consultations: list[Consultation]


class BilledMinute(BaseModel):
    minute: int
    #: The ledger idempotency key of the minute (None for a minute free to everyone,
    #: which moved no money).
    key: str | None
    amount: int
    charged_at: datetime | None


class Receipt(BaseModel):
    consultation_id: str
    student_id: str
    consultant_id: str
    status: Status
    rate_per_minute: int
    billed_minutes: int
    charged: int
    consultant_earned: int
    platform_fee: int
    discount: int
    adjustments: list[PriceAdjustment]
    #: The sum of the minutes as booked in the ledger: equals ``charged``.
    booked: int
    accepted_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    minutes: list[BilledMinute]


class ReceiptResult(BaseModel):
    receipt: Receipt
