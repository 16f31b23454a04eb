"""Consultant profiles: rate per minute, minimum and maximum minutes, availability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kpay.core.errors import BadRequest, NotFound
from kpay.core.store import IndexSpec
from plugins.consult_billing.settings import settings_of
from plugins.consult_billing.storefront import indexed

if TYPE_CHECKING:
    from kpay.core.app import KPay

PROFILES = "consultant_profiles"

INDEXES = [IndexSpec.of(PROFILES, "available", "rate_per_minute")]


class ProfileUpdate(BaseModel):
    """Body of ``PUT /api/v1/consultants/me``. Money is integer fen: strict ints, so
    ``1.5`` or ``"100"`` is refused rather than rounded."""

    model_config = ConfigDict(extra="forbid")

    rate_per_minute: int = Field(strict=True, gt=0)
    #: One of ``[storefront] categories``, optional (checked by ``app.search``).
    category: str | None = Field(None, max_length=16)
    min_minutes: int = Field(1, strict=True, ge=1)
    max_minutes: int = Field(60, strict=True, ge=1)
    available: bool = Field(True, strict=True)
    title: str = Field("", max_length=120)
    #: A few lines about the consultant for their profile page (plain text); kept by
    #: profile_section.save_bio, so left out (null) the saved one stays.
    bio: str | None = Field(None, max_length=1000, exclude=True)

    @model_validator(mode="after")
    def minimum_within_maximum(self) -> ProfileUpdate:
        if self.min_minutes > self.max_minutes:
            raise ValueError("min_minutes must not exceed max_minutes")
        return self


def public_profile(doc: dict[str, Any], busy: bool = False) -> dict[str, Any]:
    return {
        "consultant_id": doc["_id"], "name": doc.get("name", doc["_id"]),
        "title": doc.get("title", ""), "rate_per_minute": doc["rate_per_minute"],
        "min_minutes": doc["min_minutes"], "max_minutes": doc["max_minutes"],
        "available": doc["available"], "busy": busy, "updated_at": doc.get("updated_at"),
        "category": doc.get("category"),
    }


def check_bounds(app: KPay, update: ProfileUpdate) -> None:
    """The configured caps (a huge rate is a typo, not a price)."""
    settings = settings_of(app)
    if update.rate_per_minute > settings.max_rate_per_minute:
        raise BadRequest(f"rate_per_minute must be at most {settings.max_rate_per_minute} fen",
                         code="invalid_field", field="rate_per_minute",
                         max=settings.max_rate_per_minute)
    if update.max_minutes > settings.max_minutes_per_session:
        raise BadRequest(
            f"max_minutes must be at most {settings.max_minutes_per_session}",
            code="invalid_field", field="max_minutes", max=settings.max_minutes_per_session)


async def save_profile(app: KPay, consultant_id: str, update: ProfileUpdate) -> dict[str, Any]:
    """Create or replace the profile. Running sessions keep the rate they started with."""
    check_bounds(app, update)
    update.category = app.search.check_category(update.category)
    user = await app.users.profile(consultant_id) or {}
    now = app.clock.now()
    doc = {**update.model_dump(), "name": user.get("name", consultant_id), "updated_at": now}
    await app.store[PROFILES].update_one(
        {"_id": consultant_id}, {"$set": doc, "$setOnInsert": {"created_at": now}},
        upsert=True)
    return await indexed(app, {"_id": consultant_id, **doc})


async def get_profile(app: KPay, consultant_id: str) -> dict[str, Any]:
    doc = await app.store[PROFILES].find_one({"_id": consultant_id})
    if doc is None:
        raise NotFound(f"no consultant {consultant_id}", code="consultant_not_found")
    return doc


async def available_profiles(app: KPay, limit: int,
                             category: str | None = None) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"available": True}
    if category:
        query["category"] = category
    cursor = app.store[PROFILES].find(query).sort("rate_per_minute", 1).limit(limit)
    return [doc async for doc in cursor]
