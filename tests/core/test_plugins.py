"""Plugins: discovery, selection, registration of throwaway test plugins, hook checks,
awaitable results, notification isolation and tracing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pymongo.errors
import pytest

from kpay import hookimpl
from kpay.core import config
from kpay.core.app import load_settings
from kpay.core.errors import PluginError
from kpay.core.plugins import (
    PluginManager,
    available_plugins,
    notify,
    register_all,
    select,
    settings_models,
)
from kpay.core.realtime.channels import ChannelRule
from kpay.core.store import IndexSpec
from kpay.core.web import BaseHandler, Route, api

BUILT_INS = {"wechat_pay", "live_qa", "consult_billing", "course_drip"}


class ShoutHandler(BaseHandler):
    @api("Test plugin: publish a word on its channel", status=201)
    async def post(self, word: str) -> None:
        user = self.require_user()
        await self.kpay.publish(f"echo:{word}", "shout", {"word": word, "by": user.id})
        self.write_json({"word": word}, 201)


async def only_word_hello(app: Any, user: Any, ident: str) -> bool:
    return ident == "hello"


class EchoPlugin:
    """A throwaway plugin: one route, one channel, one index, lifecycle records.

    Its registration hooks return awaitables on purpose (coroutines), as a plugin may.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    async def register_routes(self, app):
        await asyncio.sleep(0)
        return [Route("/api/v1/echo/{word}", ShoutHandler, tags=("echo",))]

    @hookimpl
    async def register_channels(self, app):
        return [ChannelRule("echo", only_word_hello)]

    @hookimpl
    def register_indexes(self, app):
        return [IndexSpec.of("echo_words", "word", unique=True)]

    @hookimpl
    async def on_startup(self, app):
        self.calls.append(("startup", id(app)))

    @hookimpl
    def on_shutdown(self, app):
        self.calls.append(("shutdown", None))

    @hookimpl
    async def on_presence(self, app, channel, user_id, present):
        self.calls.append(("presence", (channel, user_id, present)))

    @hookimpl
    def on_user_notification(self, user_id, kind, data):
        # Takes only the arguments it needs (no app).
        self.calls.append(("notification", (user_id, kind, data)))


@pytest.fixture
def echo() -> EchoPlugin:
    return EchoPlugin()


@pytest.fixture
def kpay_extra_plugins(echo):
    return [("echo", echo)]


# -- discovery and selection ------------------------------------------------------


def test_built_ins_are_discovered_through_entry_points():
    found = available_plugins()
    assert BUILT_INS <= set(found)
    assert found["live_qa"].module == "plugins.live_qa"


def test_selection_loads_only_the_named_plugins():
    overrides = {"dev": {"enabled": True}, "plugins": {"enabled": ["live_qa", "course_drip"]}}
    _, pm = load_settings(None, overrides=overrides)
    assert [p["name"] for p in pm.describe()] == ["course_drip", "live_qa"]
    assert pm.get_plugin("wechat_pay") is None


def test_star_selects_every_installed_plugin():
    assert {p.name for p in select(["*"], available_plugins())} == set(available_plugins())


def test_unknown_plugin_stops_start_up_listing_the_available_ones():
    with pytest.raises(PluginError) as caught:
        select(["live_qa", "live_qaa"], available_plugins())
    message = str(caught.value)
    assert "'live_qaa'" in message
    for name in BUILT_INS:
        assert name in message


def test_misspelt_hook_is_an_error():
    class Misspelt:
        @hookimpl
        def register_route(self, app):  # not a hook: register_routes
            return []

    pm = PluginManager()
    pm.add(Misspelt(), "misspelt")
    with pytest.raises(PluginError, match="register_route"):
        pm.check()


def test_hook_with_an_unknown_argument_is_an_error():
    class WrongArgument:
        @hookimpl
        def on_order_paid(self, app, orders):
            pass

    pm = PluginManager()
    with pytest.raises(PluginError, match="orders"):
        pm.add(WrongArgument(), "wrong")


def test_register_settings_must_not_be_awaitable():
    class AsyncSettings:
        @hookimpl
        async def register_settings(self):
            return []

    pm = PluginManager()
    pm.add(AsyncSettings(), "async_settings")
    with pytest.raises(PluginError, match=r"'async_settings'.*not an awaitable"):
        settings_models(pm, reserved=config.CORE_SECTIONS)


# -- a registered test plugin, over HTTP and WebSocket -----------------------------


@pytest.mark.gen_test
async def test_plugin_route_and_channel_are_served(api, echo):
    token = await api.login("alice")
    ws = await api.socket(token)
    reply = await ws.request("sub", ch="echo:hello")
    assert reply["ok"] is True, reply
    denied = await ws.request("sub", ch="echo:other")
    assert denied["ok"] is False and denied["error"]["code"] == "forbidden"

    status, body = await api.post("/api/v1/echo/hello", {}, token)
    assert status == 201 and body == {"word": "hello"}
    event = await ws.event("shout")
    assert event["ch"] == "echo:hello" and event["data"] == {"word": "hello", "by": "alice"}

    status, body = await api.post("/api/v1/echo/hello", {})
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.gen_test
async def test_plugin_index_is_created(kpay_app):
    words = kpay_app.store["echo_words"]
    await words.insert_one({"word": "hello"})
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        await words.insert_one({"word": "hello"})


@pytest.mark.gen_test
async def test_lifecycle_and_presence_hooks(api, kpay_app, kpay_settings, echo):
    assert echo.calls[0] == ("startup", id(kpay_app))
    token = await api.login("bob")
    ws = await api.socket(token)
    assert (await ws.request("sub", ch="echo:hello"))["ok"] is True
    assert ("presence", ("echo:hello", "bob", True)) in echo.calls
    ws.close()
    for _ in range(200):
        if ("presence", ("echo:hello", "bob", False)) in echo.calls:
            break
        await asyncio.sleep(0.01)
    assert ("presence", ("echo:hello", "bob", False)) in echo.calls

    # A second app on the same settings: started and stopped here, so on_shutdown is seen.
    other = kpay_settings.new_app()
    await other.start()
    await other.stop()
    assert echo.calls[-1] == ("shutdown", None)


@pytest.mark.gen_test
async def test_plugin_listed_with_its_hooks(api):
    admin = await api.login("root", "admin")
    status, body = await api.get("/api/v1/plugins", admin)
    assert status == 200
    by_name = {p["name"]: p for p in body["plugins"]}
    assert BUILT_INS <= set(by_name)
    assert by_name["echo"]["hooks"] == sorted([
        "on_presence", "on_shutdown", "on_startup", "on_user_notification",
        "register_channels", "register_indexes", "register_routes"])
    student = await api.login("alice")
    status, body = await api.get("/api/v1/plugins", student)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await api.get("/api/v1/plugins")
    assert status == 401


# -- notifications: isolation outside dev mode, re-raised in dev mode --------------


class Broken:
    @hookimpl
    def on_user_notification(self, app, user_id, kind, data):
        raise RuntimeError("plugin bug")


def notified_pm(echo: EchoPlugin) -> PluginManager:
    pm = PluginManager()
    pm.add(echo, "echo")
    # Registered last, so it is called first: the others must still run after it fails.
    pm.add(Broken(), "broken")
    return pm


@pytest.mark.gen_test
async def test_failing_notification_is_isolated_outside_dev_mode(echo, caplog):
    pm = notified_pm(echo)
    with caplog.at_level(logging.ERROR, logger="kpay.plugins"):
        await notify(pm, "on_user_notification", reraise=False, app=None, user_id="u1",
                     kind="lesson_unlocked", data={"n": 1})
    assert ("notification", ("u1", "lesson_unlocked", {"n": 1})) in echo.calls
    assert "plugin 'broken' failed in on_user_notification" in caplog.text


@pytest.mark.gen_test
async def test_failing_notification_is_raised_in_dev_mode(kpay_app):
    # kpay_app runs in dev mode (the fixture default): app.notify re-raises.
    kpay_app.pm.register(Broken(), name="broken")
    try:
        with pytest.raises(RuntimeError, match="plugin bug"):
            await kpay_app.notify("on_user_notification", user_id="u1", kind="k", data={})
    finally:
        kpay_app.pm.unregister(name="broken")


class TestOutsideDevMode:
    @pytest.fixture
    def kpay_overrides(self, dev_off_overrides):
        return dev_off_overrides

    @pytest.mark.gen_test
    async def test_app_notify_isolates(self, kpay_app, echo):
        kpay_app.pm.register(Broken(), name="broken")
        try:
            await kpay_app.notify("on_user_notification", user_id="u2", kind="k", data={})
        finally:
            kpay_app.pm.unregister(name="broken")
        assert ("notification", ("u2", "k", {})) in echo.calls


# -- tracing ------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_tracing_logs_hook_calls_with_timing(monkeypatch, caplog, echo):
    monkeypatch.setenv("KPAY_TRACE_PLUGINS", "1")
    pm = PluginManager()
    pm.add(echo, "echo")
    with caplog.at_level(logging.INFO, logger="kpay.plugins"):
        await register_all(pm, "register_indexes", None)
        await notify(pm, "on_user_notification", app=None, user_id="u", kind="k", data={})
    assert "hook register_indexes [echo]" in caplog.text
    assert "hook on_user_notification [echo]" in caplog.text
    assert caplog.text.count(" ms") >= 2


@pytest.mark.gen_test
async def test_no_tracing_by_default(monkeypatch, caplog, echo):
    monkeypatch.delenv("KPAY_TRACE_PLUGINS", raising=False)
    pm = PluginManager()
    pm.add(echo, "echo")
    with caplog.at_level(logging.INFO, logger="kpay.plugins"):
        await register_all(pm, "register_indexes", None)
    assert "hook register_indexes" not in caplog.text
