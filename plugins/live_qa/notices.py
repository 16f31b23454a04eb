"""The notifications live_qa sends, worded in Chinese (hook ``describe_notification``;
docs/live_qa.md "Notifications")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kpay.core.notifications import money_text
from plugins.live_qa import reminders
from plugins.live_qa.store import ROOMS

if TYPE_CHECKING:
    from kpay.core.app import KPay


def room_link(room_id: str) -> str:
    return f"/static/room.html?id={room_id}"


async def describe(app: KPay, kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "room_starting":
        return reminders.describe(app, data)
    if kind not in ("question_refunded", "question_answered"):
        return None
    room = await app.store[ROOMS].find_one({"_id": data["room_id"]}, {"title": 1}) or {}
    where = f"「{room['title']}」中" if room.get("title") else ""
    if kind == "question_refunded":
        return {"title": f"提问已退款 {money_text(data['amount'])}",
                "body": f"你在直播间{where}的提问「{data['text']}」未获回答，悬赏已退回钱包。",
                "link": room_link(data["room_id"])}
    answer = "语音回答" if data.get("voice") else "回答"
    return {"title": f"你的提问收到了{answer}",
            "body": f"直播间{where}的主持人回答了你的提问「{data['text']}」。",
            "link": room_link(data["room_id"])}
