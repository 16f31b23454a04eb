"""Forwarding a batch (``app.tell_users``, hook ``on_user_notifications``): one read of
the users' openids, one of their consents and one insert of the send records however
many are told, and still each notification sent at most once
(docs/wechat_notify.md "Cost per forwarded notification")."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from kpay.core.metrics import commands_since, db_commands
from kpay.core.telling import Told
from kpay.testing import wait_until
from plugins.wechat_notify import sends

WAVE = 500


@pytest.fixture
def kpay_overrides(kpay_overrides: dict[str, Any]) -> dict[str, Any]:
    # The users' standing poll (a find every 5 s) stays out of the round trips counted.
    return {**kpay_overrides, "auth": {"standing_cache_seconds": 300}}


def lesson(user_id: str, number: int) -> Told:
    return Told(user_id, "lesson_unlocked", {
        "course_id": "c1", "lesson_id": f"l{number}", "course_title": "写作课",
        "lesson_title": f"第{number}讲", "lesson_number": number})


def room(user_id: str) -> Told:
    return Told(user_id, "room_starting", {"room_id": "r1", "title": "面试直播",
                                           "body": "15 分钟后开始"})


async def all_settled_records(notify: Any, count: int) -> list[dict[str, Any]] | None:
    """The send records, once there are ``count`` and none is still "sending"."""
    found = await notify.records()
    if len(found) == count and all(r["state"] != "sending" for r in found):
        return found
    return None


async def delivered(fake: Any, count: int) -> None:
    await wait_until(lambda: fake.calls["template"] + fake.calls["subscribe"] >= count,
                     timeout=30, message=f"{count} messages reached the fake")


@pytest.mark.gen_test(timeout=120)
async def test_a_wave_of_500_costs_three_round_trips(kpay_app, notify, fake_wechat_notify):
    await kpay_app.rollups.backfill  # the start-up catch-up stays out of the count
    users = [await notify.wechat_user(f"o_{i}") for i in range(WAVE - 20)]
    strangers = [f"nobody{i}" for i in range(20)]  # no openid: recorded as skipped
    consenting, not_asked = users[:50], users[450:]
    for user in consenting:
        await sends.record_consent(kpay_app, user, "SUB_ROOM", True)
    # 400 + 20 lessons (template messages), 50 + 30 room reminders (subscription).
    wave = ([lesson(user, 1) for user in users[:400] + strangers]
            + [room(user) for user in consenting + not_asked])
    assert len(wave) == WAVE
    before = db_commands()
    await kpay_app.notify("on_user_notifications", batch=wave)
    sent = commands_since(before)
    # The users' openids, the consents of the room reminders, the records.
    assert sent == {"find": 2, "insert": 1}, sent
    records = await wait_until(lambda: all_settled_records(notify, WAVE), timeout=30,
                               message="500 records settled")
    states = Counter((record["state"], record.get("reason")) for record in records)
    assert states == {("sent", None): 400 + 50, ("skipped", "no_consent"): 30,
                      ("skipped", "no_openid"): 20}, states
    assert fake_wechat_notify.calls["template"] == 400
    assert fake_wechat_notify.calls["subscribe"] == 50


@pytest.mark.gen_test(timeout=60)
async def test_a_notification_in_two_batches_at_once_is_sent_once(kpay_app, notify,
                                                                  fake_wechat_notify):
    users = [await notify.wechat_user(f"o_{i}") for i in range(5)]
    await kpay_app.notify("on_user_notifications", batch=[lesson(users[0], 1)])
    await wait_until(lambda: all_settled_records(notify, 1), message="the first send settled")
    # Told before (users[0]), told twice in one batch (users[1]), and the same batch
    # told by two callers at once: five notifications, one send each.
    batch = [lesson(user, 1) for user in users] + [lesson(users[1], 1)]
    await asyncio.gather(*(kpay_app.tell_users(list(batch)) for _ in range(2)))
    records = await wait_until(lambda: all_settled_records(notify, 5),
                               timeout=30, message="five records settled")
    assert sorted(r["user_id"] for r in records) == sorted(users)
    await delivered(fake_wechat_notify, 5)
    assert sorted(m["touser"] for m in fake_wechat_notify.sent) == [
        f"o_{i}" for i in range(5)]
    assert fake_wechat_notify.calls["template"] == 5
