"""consult_billing's part of the audience (docs/audience.md): the rule 咨询过 and the
students its consultations name (minutes are paid from the wallet, not by orders)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from kpay.core.audience import PLATFORM
from kpay.core.audience.rules import AudienceRule
from kpay.core.audience.students import MAX_MEMBERS
from plugins.consult_billing.sessions import CONSULTATIONS

if TYPE_CHECKING:
    from kpay.core.app import KPay


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def consulted(app: KPay, owner: str) -> set[str]:
    """Students whose consultation with ``owner`` was accepted (it took place)."""
    query: dict[str, Any] = {"accepted_at": {"$ne": None}}
    if owner != PLATFORM:
        query["consultant_id"] = owner
    cursor = app.store[CONSULTATIONS].find(query, {"student_id": 1}).sort(
        "requested_at", -1).limit(MAX_MEMBERS)
    return {doc["student_id"] async for doc in cursor}


async def had_consultation(app: KPay, owner: str, params: NoParams) -> set[str]:
    return await consulted(app, owner)


RULES = [AudienceRule("had_consultation", "咨询过", NoParams, had_consultation)]
