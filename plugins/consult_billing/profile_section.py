"""Consultants as people see them: their nickname and avatar from the users service over
the name kept in the profile, their bio, and the ``consult`` section of their public
profile (hook ``public_profile_sections``, docs/plugins.md; the page: static/profile.html).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.consult_billing.profiles import PROFILES, public_profile
from plugins.consult_billing.sessions import CONSULTATIONS

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Fields of the ``consult`` section.
SECTION_FIELDS = ("title", "bio", "rate_per_minute", "min_minutes", "max_minutes",
                  "available", "busy")


def shown(doc: dict[str, Any], busy: bool = False,
          person: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`public_profile` with the consultant's nickname now and avatar (``person``:
    their ``app.users`` profile; the name kept at the last save is only a fallback) and
    their bio."""
    person = person or {}
    return {**public_profile(doc, busy), "name": person.get("name") or doc.get("name", doc["_id"]),
            "avatar_url": person.get("avatar_url"), "bio": doc.get("bio", "")}


async def people_of(app: KPay, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``app.users`` profiles of the consultants of ``docs`` (one query)."""
    return await app.users.profiles(doc["_id"] for doc in docs)


async def save_bio(app: KPay, consultant_id: str, bio: str) -> None:
    await app.store[PROFILES].update_one({"_id": consultant_id}, {"$set": {"bio": bio}})


async def consult_section(app: KPay, user_id: str) -> dict[str, Any] | None:
    """The ``consult`` section: title, bio, rate and availability, when the user has a
    consultant profile."""
    doc = await app.store[PROFILES].find_one({"_id": user_id})
    if doc is None:
        return None
    busy = await app.store[CONSULTATIONS].find_one({"busy_consultant": user_id}, {"_id": 1})
    section = shown(doc, busy is not None)
    return {"consult": {key: section[key] for key in SECTION_FIELDS}}
