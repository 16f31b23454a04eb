"""The tips plugin against a real kpay server and database (fixtures from kpay.testing).

The plugin is loaded through its ``kpay.plugins`` entry point, so these tests need it
installed (``pip install -e examples/kpay-tips``; ``make test`` installs it beside the
venv). ``live_qa`` is enabled too, for rooms, and ``wechat_pay`` for top-ups.
"""

from __future__ import annotations

import asyncio

import pytest

from kpay import hookimpl
from kpay.core.app import load_settings
from kpay.core.errors import ConfigError
from kpay.core.plugins import available_plugins
from kpay.testing import assert_books_balanced

PLUGINS = {"plugins": {"enabled": ["tips", "live_qa", "wechat_pay"]}}


@pytest.fixture
def kpay_overrides():
    return {**PLUGINS, "tips": {"min_amount": 100, "max_amount": 10_000}}


def tip(to_user: str, amount: int, **extra) -> dict:
    return {"item": {"kind": "tip", "to_user": to_user, "amount": amount, **extra},
            "channel": "wallet"}


async def balances(app, *accounts: str) -> list[int]:
    return [await app.money.ledger.balance(a) for a in accounts]


async def open_room(host) -> str:
    status, body = await host.post("/api/v1/rooms", {"title": "Ask me", "ticket_price": 0,
                                                     "question_min_price": 0})
    assert status == 201, body
    return body["room"]["id"]


def test_installed_through_the_entry_point():
    assert available_plugins()["tips"].module == "kpay_tips"


@pytest.mark.gen_test
async def test_a_tip_pays_the_consultant_less_the_platform_fee(kpay_app, student, consultant):
    await student.topup(5000)
    status, body = await student.post("/api/v1/orders", tip(consultant.id, 1000))
    assert status == 201, body
    assert body["order"]["status"] in ("paid", "fulfilled") and body["order"]["amount"] == 1000
    assert (await student.wallet())["balance"] == 4000
    # [money] platform_fee_bps defaults to 2000: 20% to the platform.
    assert await balances(kpay_app, "earnings:carol", "platform:revenue") == [800, 200]
    status, earnings = await consultant.get("/api/v1/earnings")
    assert status == 200 and earnings["balance"] == 800
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_tip_in_a_room_is_shown_there(api, student, consultant):
    room_id = await open_room(consultant)
    host_socket = await consultant.socket()
    assert (await host_socket.request("sub", ch=f"room:{room_id}"))["ok"] is True
    assert (await host_socket.request("sub", ch="user:carol"))["ok"] is True
    await student.topup(2000)
    status, body = await student.post(
        "/api/v1/orders", tip(consultant.id, 888, room_id=room_id, message="谢谢老师"))
    assert status == 201, body
    expected = {"order_id": body["order"]["id"], "from": "alice", "to": "carol",
                "amount": 888, "message": "谢谢老师"}
    shown = await host_socket.event("tip")
    assert shown["ch"] == f"room:{room_id}" and shown["data"] == expected
    assert (await host_socket.event("tip_received"))["data"] == expected


class NotificationRecorder:
    """A throwaway plugin standing in for a forwarder (WeChat template messages)."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str, dict]] = []

    @hookimpl
    def on_user_notification(self, user_id, kind, data):
        self.told.append((user_id, kind, data))


@pytest.mark.gen_test
async def test_the_consultant_is_told_once_on_the_socket_and_through_the_hook(
        kpay_app, student, consultant):
    recorder = NotificationRecorder()
    kpay_app.pm.register(recorder, name="recorder")
    watcher = await consultant.socket()
    assert (await watcher.request("sub", ch="user:carol"))["ok"] is True
    await student.topup(1000)
    status, body = await student.post("/api/v1/orders", tip("carol", 500))
    assert status == 201, body
    expected = {"order_id": body["order"]["id"], "from": "alice", "to": "carol",
                "amount": 500, "message": ""}
    assert (await watcher.event("tip_received"))["data"] == expected
    assert recorder.told == [("carol", "tip_received", expected)]


class TestWithoutLiveQA:
    """Rooms come from live_qa through app.access; without it no room has an owner."""

    @pytest.fixture
    def kpay_overrides(self):
        return {"plugins": {"enabled": ["tips", "wechat_pay"]}}

    @pytest.mark.gen_test
    async def test_a_room_tip_is_refused_and_a_plain_tip_is_paid(self, student, consultant):
        await student.topup(1000)
        status, body = await student.post("/api/v1/orders",
                                          tip("carol", 100, room_id="r1"))
        assert (status, body["error"]["code"]) == (404, "room_not_found")
        status, body = await student.post("/api/v1/orders", tip("carol", 100))
        assert status == 201, body


@pytest.mark.gen_test
async def test_refusals_change_nothing(kpay_app, api, student, consultant):
    other_host = await api.as_user("dave", "consultant")
    await api.as_user("bob", "student")
    room_id = await open_room(other_host)
    await student.topup(3000)
    refused = [
        (tip("carol", 99), 400, "invalid_amount"),
        (tip("carol", 10_001), 400, "invalid_amount"),
        (tip("carol", "100"), 400, "invalid_field"),
        (tip("carol", 10.5), 400, "invalid_field"),
        (tip("alice", 100), 400, "tip_to_self"),
        (tip("bob", 100), 404, "consultant_not_found"),
        (tip("nobody", 100), 404, "consultant_not_found"),
        (tip("carol", 100, room_id="r-missing"), 404, "room_not_found"),
        (tip("carol", 100, room_id=room_id), 400, "not_room_host"),
        (tip("carol", 100, message="x" * 101), 400, "invalid_field"),
        ({**tip("carol", 100), "channel": "jsapi"}, 400, "channel_not_allowed"),
        (tip("carol", 5000), 402, "insufficient_balance"),
    ]
    for body, status, code in refused:
        got, reply = await student.post("/api/v1/orders", body)
        assert (got, reply["error"]["code"]) == (status, code), (body, reply)
    got, reply = await student.post("/api/v1/orders", tip("carol", 1))
    assert reply["error"]["min"] == 100 and reply["error"]["max"] == 10_000
    assert (await student.wallet())["balance"] == 3000
    assert await balances(kpay_app, "earnings:carol", "platform:revenue") == [0, 0]
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test
async def test_a_retried_tip_is_paid_once(kpay_app, api, student, consultant):
    await student.topup(1000)
    replies = []
    for _ in range(3):
        replies.append(await api.request("POST", "/api/v1/orders", tip("carol", 300),
                                         token=student.token,
                                         headers={"Idempotency-Key": "tip-1"}))
    assert [status for status, _ in replies] == [201, 201, 201]
    assert len({body["order"]["id"] for _, body in replies}) == 1
    assert (await student.wallet())["balance"] == 700
    assert await balances(kpay_app, "earnings:carol") == [240]


@pytest.mark.gen_test
async def test_concurrent_tips_never_overdraw(kpay_app, student, consultant):
    await student.topup(1000)
    results = await asyncio.gather(*[student.post("/api/v1/orders", tip("carol", 300))
                                     for _ in range(6)])
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 201, 201, 402, 402, 402], results
    assert (await student.wallet())["balance"] == 100
    assert await balances(kpay_app, "earnings:carol", "platform:revenue") == [720, 180]
    await assert_books_balanced(kpay_app)


@pytest.mark.parametrize(("section", "named"), [
    ({"min_amount": 0}, "[tips] min_amount"),
    ({"min_amount": 500, "max_amount": 100}, "max_amount must not be below min_amount"),
    ({"maximum": 5}, "[tips] maximum"),
])
def test_bad_settings_stop_start_up_naming_the_key(section, named):
    overrides = {**PLUGINS, "dev": {"enabled": True}, "tips": section}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides=overrides)
    assert named in str(caught.value)
