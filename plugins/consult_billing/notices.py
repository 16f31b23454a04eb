"""The notifications consult_billing sends, worded in Chinese (hook
``describe_notification``; docs/consult_billing.md "Notifications")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kpay.core.notifications import money_text
from plugins.consult_billing.sessions import load, party_of, totals

if TYPE_CHECKING:
    from kpay.core.app import KPay

# Where each party follows a consultation.
LINKS = {"student": "/static/consult.html", "consultant": "/static/console.html#consult"}
# Why a consultation ended, as consult-call.js says it (END_REASON_TEXT).
END_REASONS = {
    "funds_exhausted": "余额已用完", "max_minutes": "已达到本次咨询的最长时长",
    "ended_by_student": "学生结束了咨询", "ended_by_consultant": "咨询师结束了咨询",
    "absent": "一方离开太久", "declined": "咨询师婉拒了请求", "cancelled": "请求已取消",
    "expired": "请求超时未被接受", "adjustment_refused": "优惠已失效",
}
KINDS = ("consult_request", "consult_accepted", "consult_ended")


async def name_of(app: KPay, user_id: str) -> str:
    profile = await app.users.profile(user_id)
    return profile["name"] if profile else "对方"


async def describe(app: KPay, user_id: str, kind: str, data: dict[str, Any]
                   ) -> dict[str, Any] | None:
    if kind not in KINDS:
        return None
    doc = await load(app, data["consultation_id"])
    party = party_of(doc, user_id) if doc else None
    if doc is None or party is None:
        return {"title": "咨询有新动态", "body": "", "link": LINKS["student"]}
    link = LINKS[party]
    rate = f"{money_text(doc['rate_per_minute'])}/分钟"
    if kind == "consult_request":
        student = await name_of(app, doc["student_id"])
        return {"title": "新的咨询请求",
                "body": f"{student} 请求咨询（{rate}），请尽快接受或婉拒。", "link": link}
    if kind == "consult_accepted":
        consultant = await name_of(app, doc["consultant_id"])
        return {"title": "咨询师已接受你的请求",
                "body": f"{consultant} 已接受咨询（{rate}），计费已开始。", "link": link}
    money = totals(doc)
    reason = END_REASONS.get(data.get("reason", ""), "")
    if not money["billed_minutes"]:
        return {"title": "咨询未开始", "body": reason, "link": link}
    paid = (f"收入 {money_text(money['consultant_earned'])}" if party == "consultant"
            else f"合计 {money_text(money['charged'])}")
    return {"title": "咨询已结束",
            "body": "，".join(filter(None, [reason, f"共 {money['billed_minutes']} 分钟",
                                           paid])) + "。",
            "link": link}
