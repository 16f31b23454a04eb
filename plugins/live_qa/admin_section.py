"""What operators see and may remove of a user's live rooms (hooks
``admin_user_sections``, ``export_user_data``, ``anonymise_user``; docs/plugins.md,
docs/operations.md "Personal data").

Questions and chat messages have no index by author: the export and the
anonymisation, rare operator actions, scan them (bounded by ``MAX_EXPORT`` per kind).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.live_qa import questions, seats
from plugins.live_qa.store import MESSAGES, QUESTIONS, ROOMS, TICKETS

if TYPE_CHECKING:
    from kpay.core.app import KPay

SECTION_SIZE = 20
MAX_EXPORT = 5000
#: What a removed question or message reads.
DELETED_TEXT = "（已删除）"
TICKET_NAMES = {"active": "已入场", "pending": "待开通", "refunded": "已退款"}
ROOM_STATES = {"scheduled": "未开始", "live": "直播中", "ended": "已结束"}


def shown(doc: dict[str, Any]) -> dict[str, Any]:
    return {("id" if key == "_id" else key): value for key, value in doc.items()}


async def admin_section(app: KPay, user_id: str) -> dict[str, Any] | None:
    """The user's recent tickets and the rooms they host, in Chinese."""
    tickets = await app.store[TICKETS].find({"user_id": user_id}).sort(
        "created_at", -1).limit(SECTION_SIZE).to_list()
    hosted = await app.store[ROOMS].find(
        {"host_id": user_id}, {"title": 1, "state": 1, "created_at": 1}).sort(
        "created_at", -1).limit(SECTION_SIZE).to_list()
    if not tickets and not hosted:
        return None
    titles = {r["_id"]: r["title"] for r in await app.store[ROOMS].find(
        {"_id": {"$in": [t["room_id"] for t in tickets]}}, {"title": 1}).to_list()}
    items = [{"title": f"门票：{titles.get(t['room_id'], '已删除的直播间')}",
              "subtitle": TICKET_NAMES.get(t.get("status"), t.get("status") or ""),
              "at": t.get("created_at")} for t in tickets]
    items += [{"title": f"主持：{r['title']}",
               "subtitle": ROOM_STATES.get(r.get("state"), r.get("state") or ""),
               "at": r.get("created_at")} for r in hosted]
    return {"title": "直播间", "items": items[:SECTION_SIZE]}


async def export_data(app: KPay, user_id: str) -> dict[str, Any] | None:
    """The user's tickets, questions, chat messages and hosted rooms."""
    tickets = await app.store[TICKETS].find({"user_id": user_id}).limit(MAX_EXPORT).to_list()
    asked = await app.store[QUESTIONS].find({"asker_id": user_id}).limit(
        MAX_EXPORT).to_list()
    said = await app.store[MESSAGES].find(
        {"type": "message", "data.from": user_id}).limit(MAX_EXPORT).to_list()
    hosted = await seats.fill(
        app, await app.store[ROOMS].find({"host_id": user_id}).limit(MAX_EXPORT).to_list())
    if not (tickets or asked or said or hosted):
        return None
    return {"tickets": [shown(t) for t in tickets],
            "questions": [questions.public(q) for q in asked],
            "messages": [{"room_id": m["room_id"], "seq": m["seq"], "data": m["data"],
                          "at": m["at"], "removed": m.get("removed", False)} for m in said],
            "rooms_hosted": [shown(r) for r in hosted]}


async def anonymise(app: KPay, user_id: str) -> dict[str, Any]:
    """The user's question texts and chat messages become 「（已删除）」, in the
    collections and in the rooms' kept history; bounties and tickets keep their money."""
    asked = await app.store[QUESTIONS].update_many(
        {"asker_id": user_id, "text": {"$ne": DELETED_TEXT}},
        {"$set": {"text": DELETED_TEXT}})
    await app.store[MESSAGES].update_many(
        {"type": "question", "data.asker_id": user_id,
         "data.text": {"$ne": DELETED_TEXT}}, {"$set": {"data.text": DELETED_TEXT}})
    said = await app.store[MESSAGES].update_many(
        {"type": "message", "data.from": user_id, "data.text": {"$ne": DELETED_TEXT}},
        {"$set": {"removed": True, "data.text": DELETED_TEXT},
         "$unset": {"data.image_url": "", "data.audio_url": ""}})
    return {"questions": asked.modified_count, "messages": said.modified_count}
