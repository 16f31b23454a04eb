"""Helpers for the course_drip tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kpay import hookimpl
from kpay.core.app import KPay
from kpay.testing import ApiClient, SocketClient

BEIJING = ZoneInfo("Asia/Shanghai")
DAY = 24 * 3600


class NotificationRecorder:
    """A throwaway plugin recording on_user_notification calls (from every node)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    @hookimpl
    def on_user_notification(self, user_id: str, kind: str, data: dict[str, Any]) -> None:
        self.calls.append((user_id, kind, data))

    def unlocked(self, user_id: str | None = None) -> list[str]:
        return [data["lesson_id"] for uid, kind, data in self.calls
                if kind == "lesson_unlocked" and (user_id is None or uid == user_id)]


def lesson(title: str, release: dict[str, Any] | None = None, body: str = "text") -> dict:
    out: dict[str, Any] = {"title": title, "body": body}
    if release is not None:
        out["release"] = release
    return out


def daily_lessons(count: int, at: str = "08:00") -> list[dict[str, Any]]:
    """Lesson 0 at once (day 0 ignores ``at``), lesson n after n days at ``at``."""
    return [lesson(f"L{n}", {"after_days": n, "at": at}) for n in range(count)]


class Drip:
    def __init__(self, api: ApiClient, app: KPay) -> None:
        self.api = api
        self.app = app

    async def author(self, user_id: str = "teacher") -> str:
        return await self.api.login(user_id, "consultant")

    async def course(self, token: str, lessons: list[dict[str, Any]], price: int = 990,
                     publish: bool = True, title: str = "Drip course") -> dict[str, Any]:
        status, body = await self.api.post("/api/v1/courses", {
            "title": title, "price": price, "lessons": lessons}, token)
        assert status == 201, body
        course = body["course"]
        if publish:
            status, body = await self.api.post(f"/api/v1/courses/{course['id']}/publish",
                                               token=token)
            assert status == 200, body
            course = body["course"]
        return course

    async def order(self, token: str, course_id: str) -> tuple[int, Any]:
        return await self.api.post("/api/v1/orders", {
            "item": {"kind": "course", "course_id": course_id}, "channel": "wallet"}, token)

    async def student(self, user_id: str, course: dict[str, Any] | None = None,
                      money: int | None = None) -> str:
        """Log in a student, fund the wallet, and buy ``course`` if given."""
        token = await self.api.login(user_id, "student")
        amount = money if money is not None else (course["price"] if course else 0)
        if amount:
            await self.api.topup(token, amount)
        if course is not None:
            status, body = await self.order(token, course["id"])
            assert status == 201 and body["order"]["status"] == "fulfilled", body
        return token

    async def lessons(self, token: str, course_id: str) -> list[dict[str, Any]]:
        status, body = await self.api.get(f"/api/v1/courses/{course_id}/lessons", token)
        assert status == 200, body
        return body

    async def advance(self, seconds: float) -> None:
        """POST /api/v1/dev/clock (which runs every job), with a fresh token: tokens
        expire after 7 days of server time."""
        token = await self.api.login("clock-keeper", "admin")
        status, body = await self.api.post("/api/v1/dev/clock", {"advance": seconds}, token)
        assert status == 200, body

    async def advance_past(self, moment: datetime | str, seconds: float = 60) -> None:
        """Move the server clock to ``seconds`` after ``moment`` (ISO or aware)."""
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        await self.advance((moment - self.app.clock.now()).total_seconds() + seconds)

    async def advance_to_local(self, hour: int, minute: int) -> datetime:
        """Move the server clock to the next hh:mm Beijing time; returns it."""
        now = self.app.clock.now().astimezone(BEIJING)
        target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= now:
            target += timedelta(days=1)
        await self.advance((target - now).total_seconds())
        return target

    async def patch(self, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
        return await self.api.request("PATCH", path, body, token=token)


async def unlock_events(ws: SocketClient, app: KPay, user_id: str) -> list[str]:
    """The lesson ids of every lesson_unlocked event the socket got so far: a sentinel
    published last on the same channel marks the end (events keep channel order)."""
    await app.publish(f"user:{user_id}", "sentinel", {})
    seen = []
    while True:
        event = await ws.event()
        if event["type"] == "sentinel":
            return seen
        if event["type"] == "lesson_unlocked":
            seen.append(event["data"]["lesson_id"])
