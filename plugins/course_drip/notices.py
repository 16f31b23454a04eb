"""The notifications course_drip sends, worded in Chinese (hook
``describe_notification``; docs/course_drip.md "Notifications")."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from kpay.core.notifications import money_text


def lesson_link(course_id: str, lesson_id: str) -> str:
    return f"/static/course.html?id={quote(course_id)}&lesson={quote(lesson_id)}"


def course_link(course_id: str) -> str:
    return f"/static/course.html?id={quote(course_id)}"


def describe(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "course_purchased":
        return {"title": f"购买成功：《{data['course_title']}》", "body": "点击开始学习。",
                "link": course_link(data["course_id"])}
    if kind == "course_sold":
        return {"title": f"《{data['course_title']}》有新学员",
                "body": f"{data['buyer_name']} 购买了课程，实付 {money_text(data['amount'])}。",
                "link": "/static/console.html#courses"}
    if kind != "lesson_unlocked":
        return None
    number = f"第 {data['lesson_number']} 课" if data.get("lesson_number") else "新课时"
    lesson = f"《{data['lesson_title']}》" if data.get("lesson_title") else ""
    return {"title": f"《{data['course_title']}》{number}{lesson}已解锁",
            "body": "点击开始学习。", "link": lesson_link(data["course_id"], data["lesson_id"])}
