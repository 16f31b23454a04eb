"""Hooks are called through pluggy: wrappers are refused at start-up, each plugin is
isolated in notifications, tracing logs once per hook call; per-app plugin state."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from kpay import hookimpl
from kpay.core.errors import PluginError
from kpay.core.plugins import PluginManager, notify, register_all


class Recorder:
    """Records its notifications; registered under several names."""

    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    @hookimpl
    async def on_user_notification(self, user_id, kind):
        self.calls.append(self.name)

    @hookimpl
    def register_jobs(self, app):
        return [self.name]


class FailsAtOnce:
    @hookimpl
    def on_user_notification(self, user_id):
        raise RuntimeError("sync plugin bug")


class FailsAwaited:
    @hookimpl
    async def on_user_notification(self, user_id):
        raise RuntimeError("async plugin bug")


class First:
    """``tryfirst`` is pluggy's: honoured because kpay calls hooks through pluggy."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(tryfirst=True)
    def on_user_notification(self):
        self.calls.append("first")


def manager(*plugins: tuple[str, Any]) -> PluginManager:
    pm = PluginManager()
    for name, plugin in plugins:
        pm.add(plugin, name)
    return pm


# -- wrappers -------------------------------------------------------------------------


class NotificationWrapper:
    @hookimpl(wrapper=True)
    def on_order_paid(self, order):
        result = yield
        return result


class RegistrationWrapper:
    @hookimpl(hookwrapper=True)
    def register_routes(self, app):
        yield


@pytest.mark.parametrize(("plugin", "hook"), [(NotificationWrapper(), "on_order_paid"),
                                              (RegistrationWrapper(), "register_routes")])
def test_a_hook_wrapper_is_refused_at_start_naming_plugin_and_hook(plugin, hook):
    pm = PluginManager()
    with pytest.raises(PluginError) as caught:
        pm.add(plugin, "timing")
    message = str(caught.value)
    assert "plugin 'timing'" in message and hook in message and "wrapper" in message
    # Refused whole: nothing of it stays registered.
    assert pm.get_plugin("timing") is None
    assert not getattr(pm.hook, hook).get_hookimpls()


@dataclass
class ComparedByValue:
    """A dataclass plugin: eq=True, so it cannot be hashed."""

    calls: list[str]

    @hookimpl
    def on_user_notification(self, app, user_id, kind, data):
        self.calls.append(kind)


class BatchTaker:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl
    def on_user_notification(self, app, user_id, kind, data):
        self.calls.append(f"one by one: {kind}")

    @hookimpl
    def on_user_notifications(self, app, batch):
        pass


@pytest.mark.gen_test
async def test_leaving_the_batch_takers_out_spares_an_unhashable_plugin():
    # Leaving plugins out by object (pluggy's subset_hook_caller) puts them in a set:
    # one dataclass plugin raised TypeError and no plugin got the hook at all.
    by_value, taker = [], []
    pm = manager(("by_value", ComparedByValue(by_value)), ("taker", BatchTaker(taker)))
    await notify(pm, "on_user_notification", reraise=True, without=["taker"], app=None,
                 user_id="u", kind="k", data={})
    assert (by_value, taker) == (["k"], [])


# -- calls through pluggy -------------------------------------------------------------


@pytest.mark.gen_test
async def test_notifications_follow_pluggys_order_and_isolate_each_plugin(caplog):
    calls: list[str] = []
    pm = manager(("a", Recorder(calls, "a")), ("first", First(calls)),
                 ("sync_bug", FailsAtOnce()), ("async_bug", FailsAwaited()),
                 ("b", Recorder(calls, "b")))
    with caplog.at_level(logging.ERROR, logger="kpay.plugins"):
        await notify(pm, "on_user_notification", app=None, user_id="u", kind="k", data={})
    # tryfirst first, then last registered first; the failing plugins stop no one.
    assert calls == ["first", "b", "a"]
    assert "plugin 'sync_bug' failed in on_user_notification" in caplog.text
    assert "plugin 'async_bug' failed in on_user_notification" in caplog.text


@pytest.mark.gen_test
async def test_dev_mode_reraises_once_every_plugin_ran():
    calls: list[str] = []
    pm = manager(("a", Recorder(calls, "a")), ("sync_bug", FailsAtOnce()))
    with pytest.raises(RuntimeError, match="sync plugin bug"):
        await notify(pm, "on_user_notification", reraise=True, app=None, user_id="u",
                     kind="k", data={})
    assert calls == ["a"]


@pytest.mark.gen_test
async def test_registration_failure_names_plugin_and_hook():
    class Broken:
        @hookimpl
        async def register_jobs(self, app):
            raise ValueError("no such job")

    calls: list[str] = []
    pm = manager(("a", Recorder(calls, "a")), ("broken", Broken()))
    with pytest.raises(PluginError, match="plugin 'broken' failed in register_jobs: "
                                          "ValueError: no such job"):
        await register_all(pm, "register_jobs", None)


def test_a_plain_pluggy_call_is_unchanged():
    pm = manager(("a", Recorder([], "a")), ("b", Recorder([], "b")))
    assert pm.hook.register_jobs(app=None) == [["b"], ["a"]]
    with pytest.raises(RuntimeError, match="sync plugin bug"):
        manager(("bug", FailsAtOnce())).hook.on_user_notification(
            app=None, user_id="u", kind="k", data={})


@pytest.mark.gen_test
async def test_tracing_logs_once_per_hook_call(monkeypatch, caplog):
    monkeypatch.setenv("KPAY_TRACE_PLUGINS", "1")
    calls: list[str] = []
    pm = manager(("a", Recorder(calls, "a")), ("b", Recorder(calls, "b")))
    with caplog.at_level(logging.INFO, logger="kpay.plugins"):
        await notify(pm, "on_user_notification", app=None, user_id="u", kind="k", data={})
        assert await register_all(pm, "register_jobs", None) == ["b", "a"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hook ")]
    assert len(lines) == 2, lines
    assert lines[0].startswith("hook on_user_notification [b,a] ") and lines[0].endswith(" ms")
    assert lines[1].startswith("hook register_jobs [b,a] ")


# -- per-app plugin state --------------------------------------------------------------


@pytest.mark.gen_test
async def test_plugin_state_is_per_app_made_once_and_dropped_at_stop(kpay_app, kpay_settings):
    made: list[int] = []

    def factory() -> dict:
        made.append(1)
        return {"n": len(made)}

    state = kpay_app.plugin_state("test.state", factory)
    assert kpay_app.plugin_state("test.state", factory) is state
    # The built-ins keep theirs there too: one billing engine per app.
    from plugins.consult_billing import engine_for

    other = kpay_settings.new_app()
    try:
        assert other.plugin_state("test.state", factory) is not state
        assert engine_for(kpay_app) is engine_for(kpay_app)
        assert engine_for(kpay_app) is not engine_for(other)
    finally:
        await other.store.close()
    assert len(made) == 2
    await kpay_app.stop()
    assert kpay_app.plugin_state("test.state", factory) is not state
