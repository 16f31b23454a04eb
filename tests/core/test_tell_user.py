"""app.tell_user: the event on ``user:<id>``, the saved notification and the
``on_user_notification`` hook, once each, and none stopped by another's failure; a
plugin with ``on_user_notifications`` gets each batch once there instead."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kpay import hookimpl
from kpay.core.telling import Told
from kpay.core.users import issue_token


class Forwarder:
    """A throwaway plugin standing in for a WeChat template-message forwarder."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str, dict]] = []
        self.fail = False

    @hookimpl
    def on_user_notification(self, user_id, kind, data):
        self.told.append((user_id, kind, data))
        if self.fail:
            raise RuntimeError("forwarder bug")


@pytest.fixture
def forwarder() -> Forwarder:
    return Forwarder()


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": []}}


@pytest.fixture
def kpay_extra_plugins(forwarder: Forwarder) -> list[tuple[str, Any]]:
    return [("forwarder", forwarder)]


async def watch(api: Any, user: str) -> Any:
    # A token issued directly: outside dev mode there is no dev login.
    stored = await api.app.users.ensure(user, "student")
    ws = await api.socket(issue_token(api.app.tokens, stored))
    assert (await ws.request("sub", ch=f"user:{user}"))["ok"] is True
    return ws


async def publish_fails(*args: Any) -> None:
    raise ConnectionError("broker down")


@pytest.mark.gen_test
async def test_publishes_and_calls_the_hook_once(api, kpay_app, forwarder):
    ws = await watch(api, "alice")
    await kpay_app.tell_user("alice", "lesson_unlocked", {"course_id": "c1"})
    event = await ws.event("lesson_unlocked")
    assert (event["ch"], event["data"]) == ("user:alice", {"course_id": "c1"})
    assert forwarder.told == [("alice", "lesson_unlocked", {"course_id": "c1"})]
    # Then the saved notification (kind "notification"), and nothing else.
    saved = await ws.event()
    assert (saved["type"], saved["data"]["kind"]) == ("notification", "lesson_unlocked")
    await kpay_app.publish("user:alice", "sentinel", {})
    assert (await ws.event())["type"] == "sentinel"


@pytest.mark.gen_test
async def test_a_failing_hook_does_not_stop_the_event(api, kpay_app, forwarder):
    # Dev mode (the fixtures' default) raises the hook's error after the event went out.
    ws = await watch(api, "alice")
    forwarder.fail = True
    with pytest.raises(RuntimeError, match="forwarder bug"):
        await kpay_app.tell_user("alice", "k", {"n": 1})
    assert (await ws.event("k"))["data"] == {"n": 1}


@pytest.mark.gen_test
async def test_a_failing_publish_does_not_stop_the_hook(kpay_app, forwarder, monkeypatch):
    monkeypatch.setattr(kpay_app, "publish", publish_fails)
    with pytest.raises(ConnectionError):
        await kpay_app.tell_user("alice", "k", {"n": 2})
    assert forwarder.told == [("alice", "k", {"n": 2})]


class TestOutsideDevMode:
    @pytest.fixture
    def kpay_overrides(self):
        return {"plugins": {"enabled": []}, "dev": {"enabled": False}}

    @pytest.mark.gen_test
    async def test_failures_are_logged_not_raised(self, api, kpay_app, forwarder,
                                                  monkeypatch, caplog):
        ws = await watch(api, "alice")
        forwarder.fail = True
        with caplog.at_level(logging.ERROR):
            await kpay_app.tell_user("alice", "k", {"n": 3})
            assert (await ws.event("k"))["data"] == {"n": 3}
            monkeypatch.setattr(kpay_app, "publish", publish_fails)
            await kpay_app.tell_user("alice", "k", {"n": 4})
        assert [told[2] for told in forwarder.told] == [{"n": 3}, {"n": 4}]
        assert "plugin 'forwarder' failed in on_user_notification" in caplog.text
        assert "the publish failed" in caplog.text


class BatchForwarder:
    """A forwarder that takes batches (``on_user_notifications``) and, as the hook's
    docstring asks, what is notified one by one (``on_user_notification``)."""

    def __init__(self) -> None:
        self.batches: list[list[Told]] = []
        self.one_by_one: list[tuple[str, str, dict]] = []

    @hookimpl
    def on_user_notifications(self, batch):
        self.batches.append(batch)

    @hookimpl
    def on_user_notification(self, user_id, kind, data):
        self.one_by_one.append((user_id, kind, data))


class TestBatchHook:
    @pytest.fixture
    def batch_forwarder(self) -> BatchForwarder:
        return BatchForwarder()

    @pytest.fixture
    def kpay_extra_plugins(self, forwarder, batch_forwarder):
        return [("forwarder", forwarder), ("batch_forwarder", batch_forwarder)]

    @pytest.mark.gen_test
    async def test_a_batch_reaches_each_plugin_once_by_one_hook(self, kpay_app, forwarder,
                                                               batch_forwarder):
        wave = [Told(f"u{i}", "lesson_unlocked", {"lesson": i}) for i in range(3)]
        await kpay_app.tell_users(wave)
        await kpay_app.tell_user("u9", "k", {"n": 9})
        # The per-item plugin, as before: once per item.
        assert forwarder.told == [(*told,) for told in wave] + [("u9", "k", {"n": 9})]
        # The batch plugin: each call's items at once, never one by one as well.
        assert batch_forwarder.batches == [wave, [Told("u9", "k", {"n": 9})]]
        assert batch_forwarder.one_by_one == []
        # What is notified one by one reaches both through on_user_notification.
        await kpay_app.notify("on_user_notification", user_id="u8", kind="k", data={})
        assert batch_forwarder.one_by_one == [("u8", "k", {})]
        assert forwarder.told[-1] == ("u8", "k", {})
