"""What operators see and may remove of a user's consultations (hooks
``admin_user_sections``, ``export_user_data``, ``anonymise_user``; docs/plugins.md,
docs/operations.md "Personal data")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument

from plugins.consult_billing.profiles import PROFILES
from plugins.consult_billing.sessions import CONSULTATIONS, public
from plugins.consult_billing.storefront import indexed

if TYPE_CHECKING:
    from kpay.core.app import KPay

#: Consultations the admin section lists (newest first) and an export holds at most.
SECTION_SIZE = 20
MAX_EXPORT = 5000
STATUS_NAMES = {"requested": "待接受", "active": "进行中", "paused": "已暂停",
                "ended": "已结束"}


def of_user(user_id: str) -> dict[str, Any]:
    return {"$or": [{"student_id": user_id}, {"consultant_id": user_id}]}


async def admin_section(app: KPay, user_id: str) -> dict[str, Any] | None:
    """The user's recent consultations, as either party, worded in Chinese."""
    docs = await app.store[CONSULTATIONS].find(of_user(user_id)).sort(
        "requested_at", -1).limit(SECTION_SIZE).to_list()
    if not docs:
        return None
    others = [d["consultant_id"] if d["student_id"] == user_id else d["student_id"]
              for d in docs]
    people = await app.users.profiles(others)
    items = []
    for doc, other in zip(docs, others, strict=True):
        shown = public(doc)
        name = people.get(other, {}).get("name", "已注销用户")
        asked = "向" if doc["student_id"] == user_id else "接待"
        items.append({
            "title": f"{asked} {name} 咨询 · {shown['billed_minutes']} 分钟",
            "subtitle": STATUS_NAMES.get(doc["status"], doc["status"]),
            "amount": shown["charged"], "at": doc["requested_at"]})
    return {"title": "咨询", "items": items}


async def export_data(app: KPay, user_id: str) -> dict[str, Any] | None:
    """Every consultation of the user and their consultant profile."""
    docs = await app.store[CONSULTATIONS].find(of_user(user_id)).sort(
        "requested_at", -1).limit(MAX_EXPORT).to_list()
    profile = await app.store[PROFILES].find_one({"_id": user_id})
    if not docs and profile is None:
        return None
    if profile is not None:
        profile = {("id" if key == "_id" else key): value for key, value in profile.items()}
    return {"consultations": [public(doc) for doc in docs], "consultant_profile": profile}


async def anonymise(app: KPay, user_id: str) -> dict[str, Any] | None:
    """The consultant profile's own words go (title, bio, the name kept with it) and it
    is taken off the list; consultations hold no free text and keep their money."""
    doc = await app.store[PROFILES].find_one_and_update(
        {"_id": user_id}, {"$set": {"title": "", "bio": "", "name": "已注销用户",
                                    "available": False}}, return_document=ReturnDocument.AFTER)
    if doc is not None:
        await indexed(app, doc)  # off the storefront, under the new name
    return {"consultant_profile": int(doc is not None)}
