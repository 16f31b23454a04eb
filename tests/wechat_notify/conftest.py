"""Fixtures for the wechat_notify tests: the plugin (and live_qa, for the room
reminder) pointed at the local fake of WeChat's message API, every kind configured."""

from __future__ import annotations

from typing import Any

import pytest

from kpay.testing import FakeProvider, FakeProviderPlugin, wait_until

TEMPLATE = {"mode": "template"}
KINDS: dict[str, dict[str, Any]] = {
    "lesson_unlocked": {**TEMPLATE, "template_id": "TPL_LESSON",
                        "fields": {"thing1": "course_title", "thing2": "lesson_title",
                                   "time3": "time"}},
    "consult_request": {**TEMPLATE, "template_id": "TPL_CONSULT_REQ",
                        "fields": {"character_string1": "consultation_id"}},
    "consult_accepted": {**TEMPLATE, "template_id": "TPL_CONSULT_OK",
                         "fields": {"character_string1": "consultation_id"}},
    "room_starting": {"mode": "subscribe", "template_id": "SUB_ROOM",
                      "fields": {"thing1": "title", "thing2": "body"}},
    "order_refunded": {**TEMPLATE, "template_id": "TPL_REFUND",
                       "fields": {"thing1": "title", "amount2": "amount"}},
    "payout_waiting_confirmation": {**TEMPLATE, "template_id": "TPL_PAYOUT",
                                    "fields": {"thing1": "title"}},
    "audience_message": {"mode": "subscribe", "template_id": "SUB_MSG",
                "fields": {"thing1": "title", "thing2": "body"}},
}


@pytest.fixture
def kpay_overrides(fake_wechat_notify: Any) -> dict[str, Any]:
    return {"plugins": {"enabled": ["wechat_notify", "live_qa"]},
            "wechat_notify": fake_wechat_notify.settings(kinds=KINDS, retry_seconds=10)}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("localpay", FakeProviderPlugin(FakeProvider("localpay", ("native",))))]


class Notify:
    """Short ways to make WeChat users and tell them things."""

    def __init__(self, app: Any, fake: Any) -> None:
        self.app = app
        self.fake = fake

    async def wechat_user(self, openid: str) -> str:
        return (await self.app.users.sign_in_wechat(openid, "小明"))["_id"]

    async def tell(self, user_id: str, kind: str, data: dict[str, Any]) -> None:
        await self.app.notify("on_user_notification", user_id=user_id, kind=kind, data=data)

    async def records(self) -> list[dict[str, Any]]:
        return await self.app.store["wechat_notify_sends"].find({}).to_list(None)

    async def settled(self, count: int = 1) -> list[dict[str, Any]]:
        """The send records, once ``count`` of them left "sending"."""
        async def done() -> list[dict[str, Any]] | None:
            found = await self.records()
            finished = [r for r in found if r["state"] != "sending"]
            return found if len(finished) >= count else None
        return await wait_until(done, message=f"{count} sends settled")


@pytest.fixture
def notify(kpay_app: Any, fake_wechat_notify: Any) -> Notify:
    return Notify(kpay_app, fake_wechat_notify)
