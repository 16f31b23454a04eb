"""The plugin platform end to end: registration failures name the plugin, the plugin
listing (CLI and API) shows what each plugin added, plugin settings, money hooks fail
closed, tracing of start-up hooks, and the author conveniences of kpay.testing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from kpay import hookimpl
from kpay.core.app import KPay, load_settings
from kpay.core.config import Section
from kpay.core.errors import ConfigError, PluginError
from kpay.core.money.kinds import OrderKind, Priced
from kpay.core.plugins import PluginManager
from kpay.core.realtime.channels import ChannelRule
from kpay.core.scheduler import PeriodicJob
from kpay.core.web import BaseHandler, Route, api

ROOT = Path(__file__).resolve().parents[2]
KPAY = Path(sys.executable).parent / "kpay"


class KudosSettings(Section):
    per_day: int = Field(3, gt=0)


class KudosHandler(BaseHandler):
    @api("Test plugin: the kudos settings")
    def get(self) -> None:
        self.require_user()
        self.write_json({"per_day": self.kpay.settings.kudos.per_day})


class Kudos(OrderKind):
    name = "kudos"
    channels = ("wallet",)

    async def price(self, app, user, item):
        if item.get("explode"):
            raise RuntimeError("kudos pricing bug")
        return Priced(100, "Kudos", app.money.earnings_credits(100, "carol"), {"kind": "kudos"})


class KudosPlugin:
    """A throwaway plugin with a route, a channel, an order kind, a job and settings."""

    def __init__(self) -> None:
        self.swept = 0

    @hookimpl
    def register_settings(self):
        return [("kudos", KudosSettings)]

    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/kudos", KudosHandler, tags=("kudos",))]

    @hookimpl
    def register_channels(self, app):
        return [ChannelRule("kudos", lambda app, user, ident: True)]

    @hookimpl
    def register_order_kinds(self, app):
        return [Kudos()]

    @hookimpl
    def register_jobs(self, app):
        async def sweep() -> None:
            self.swept += 1

        return [PeriodicJob("kudos.sweep", sweep, 60)]


@pytest.fixture
def kudos() -> KudosPlugin:
    return KudosPlugin()


@pytest.fixture
def kpay_extra_plugins(kudos):
    return [("kudos", kudos)]


@pytest.fixture
def kpay_overrides():
    return {"plugins": {"enabled": ["live_qa"]}, "kudos": {"per_day": 5}}


# -- what a plugin added is listed --------------------------------------------------


@pytest.mark.gen_test
async def test_api_lists_routes_channels_and_kinds_per_plugin(admin):
    status, body = await admin.get("/api/v1/plugins")
    assert status == 200
    by_name = {p["name"]: p for p in body["plugins"]}
    assert by_name["kudos"]["routes"] == ["/api/v1/kudos"]
    assert by_name["kudos"]["channels"] == ["kudos"]
    assert by_name["kudos"]["order_kinds"] == ["kudos"]
    assert by_name["live_qa"]["channels"] == ["room"]
    assert by_name["live_qa"]["order_kinds"] == ["live_question", "live_ticket"]
    assert "/api/v1/rooms/{room_id}" in by_name["live_qa"]["routes"]


def test_cli_lists_routes_channels_kinds_and_providers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPAY_")}
    env["KPAY_VAR_DIR"] = str(tmp_path)
    result = subprocess.run([str(KPAY), "--config", "config/default.toml", "plugins", "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    by_name = {p["name"]: p for p in json.loads(result.stdout)}
    assert by_name["live_qa"]["order_kinds"] == ["live_question", "live_ticket"]
    assert by_name["course_drip"]["order_kinds"] == ["course"]
    assert by_name["consult_billing"]["channels"] == ["consult"]
    assert by_name["wechat_pay"]["payment_providers"] == ["wechat_pay"]
    # The notify routes are the core's now (kpay/core/money/notify.py), not the plugin's.
    assert "/api/v1/pay/wechat/notify" not in by_name["wechat_pay"]["routes"]
    assert by_name["wechat_pay"]["payment_capabilities"] == {"wechat_pay": {
        "refunds": True, "partial_refunds": True, "payouts": False,
        "channels": ["native", "mweb", "jsapi"], "url_name": "wechat"}}
    text = subprocess.run([str(KPAY), "--config", "config/default.toml", "plugins"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60).stdout
    assert "  channels: room\n" in text and "  order kinds: live_question, live_ticket\n" in text
    assert ("  payment provider wechat_pay: channels native, mweb, jsapi; can: refunds, "
            "partial refunds; notify name: wechat\n") in text


# -- plugin settings ------------------------------------------------------------------


@pytest.mark.gen_test
async def test_plugin_settings_reach_the_plugin(student):
    assert await student.get("/api/v1/kudos") == (200, {"per_day": 5})


@pytest.mark.parametrize(("values", "named"), [
    ({"per_day": 0}, "[kudos] per_day"),
    ({"per_day": "many"}, "[kudos] per_day"),
    ({"per_dya": 1}, "[kudos] per_dya"),
])
def test_bad_plugin_settings_stop_start_up_naming_section_and_key(values, named):
    pm = PluginManager()
    pm.add(KudosPlugin(), "kudos")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides={"dev": {"enabled": True}, "plugins": {"enabled": []},
                                       "kudos": values}, pm=pm)
    assert named in str(caught.value)


# -- failure policy -------------------------------------------------------------------


class BrokenRegistration:
    @hookimpl
    def register_channels(self, app):
        raise RuntimeError("no channels today")


@pytest.mark.gen_test
async def test_a_failing_registration_stops_start_up_naming_the_plugin(kpay_settings):
    settings, pm, var_dir = kpay_settings
    pm.register(BrokenRegistration(), name="broken_reg")
    app = KPay(settings, pm, settings.mongodb.uri, var_dir=var_dir)
    try:
        with pytest.raises(PluginError) as caught:
            await app.start()
    finally:
        pm.unregister(name="broken_reg")
        await app.store.close()
    assert str(caught.value) == ("plugin 'broken_reg' failed in register_channels: "
                                 "RuntimeError: no channels today")


@pytest.mark.gen_test
async def test_a_failing_order_kind_fails_closed(kpay_app, student):
    await student.topup(500)
    status, body = await student.post("/api/v1/orders", {
        "item": {"kind": "kudos", "explode": True}, "channel": "wallet"})
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert (await student.wallet())["balance"] == 500
    assert await kpay_app.money.ledger.balance("earnings:carol") == 0
    status, body = await student.post("/api/v1/orders", {"item": {"kind": "kudos"},
                                                         "channel": "wallet"})
    assert status == 201 and (await student.wallet())["balance"] == 400


@pytest.mark.gen_test
async def test_start_up_hooks_are_traced(monkeypatch, caplog, kpay_settings):
    monkeypatch.setenv("KPAY_TRACE_PLUGINS", "1")
    settings, _, var_dir = kpay_settings
    pm = PluginManager()  # reads the variable when created
    pm.add(KudosPlugin(), "kudos")
    app = KPay(settings, pm, settings.mongodb.uri, var_dir=var_dir)
    with caplog.at_level(logging.INFO, logger="kpay.plugins"):
        await app.register_plugins()
    await app.store.close()
    for hook in ("register_routes", "register_channels", "register_order_kinds"):
        assert f"hook {hook} [kudos]" in caplog.text


# -- kpay.testing conveniences --------------------------------------------------------


@pytest.mark.gen_test
async def test_clock_advances_and_runs_jobs(clock, kudos):
    before = clock.now()
    await clock.advance(120)
    assert (clock.now() - before).total_seconds() >= 120
    assert kudos.swept == 1


@pytest.mark.gen_test
async def test_logged_in_clients(student, consultant, admin, api):
    assert (student.id, consultant.id, admin.id) == ("alice", "carol", "root")
    for client in (student, consultant, admin):
        status, me = await client.get("/api/v1/me")
        assert status == 200 and (me["id"], me["role"]) == (client.id, client.role)
    dave = await api.as_user("dave", "consultant", name="Dave")
    assert (await dave.get("/api/v1/me"))[1]["name"] == "Dave"
    ws = await student.socket()
    assert (await ws.request("sub", ch="user:alice"))["ok"] is True




def test_a_failing_settings_declaration_stops_start_up_naming_the_plugin():
    class BrokenSettings:
        @hookimpl
        def register_settings(self):
            raise KeyError("greeting")

    pm = PluginManager()
    pm.add(BrokenSettings(), "broken_settings")
    with pytest.raises(PluginError, match="plugin 'broken_settings' failed in register_settings"):
        load_settings(None, overrides={"dev": {"enabled": True}, "plugins": {"enabled": []}},
                      pm=pm)


class MissingSetting:
    @hookimpl
    def register_routes(self, app):
        raise ConfigError("[flowers] price: required outside dev mode")


@pytest.mark.gen_test
async def test_a_config_error_in_a_registration_keeps_its_type_and_names_the_plugin(
        kpay_settings):
    settings, pm, var_dir = kpay_settings
    pm.register(MissingSetting(), name="missing_setting")
    app = KPay(settings, pm, settings.mongodb.uri, var_dir=var_dir)
    try:
        with pytest.raises(ConfigError) as caught:
            await app.start()
    finally:
        pm.unregister(name="missing_setting")
        await app.store.close()
    assert str(caught.value) == ("plugin 'missing_setting' failed in register_routes: "
                                 "[flowers] price: required outside dev mode")
