"""Settings: TOML file, KPAY_<SECTION>__<KEY> overrides, and start-up errors that name the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kpay import hookimpl
from kpay.core import config
from kpay.core.app import load_settings
from kpay.core.errors import ConfigError
from kpay.core.plugins import PluginManager, available_plugins, select, settings_models

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "production.example.toml"
SECRET = "s" * 40


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kpay.toml"
    path.write_text(text)
    return path


def settings_from(text: str, tmp_path: Path, environ: dict[str, str] | None = None,
                  plugin_sections: dict[str, type[BaseModel]] | None = None) -> config.Settings:
    raw = config.gather(write(tmp_path, text), environ=environ or {})
    return config.validate(raw, plugin_sections, "kpay.toml")


def test_defaults_apply_to_missing_keys(tmp_path):
    settings = settings_from("[dev]\nenabled = true\n", tmp_path)
    assert settings.server.port == 8888
    assert settings.plugins.enabled == ["*"]
    assert settings.section("money").platform_fee_bps == 2000


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[serverr\]"):
        settings_from("[dev]\nenabled = true\n[serverr]\nport = 1\n", tmp_path)


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[server\] prot: .*\(unknown key\)"):
        settings_from("[dev]\nenabled = true\n[server]\nprot = 80\n", tmp_path)


@pytest.mark.parametrize(("text", "named"), [
    ('[server]\nport = "eighty"', r"\[server\] port"),
    ("[server]\nport = 70000", r"\[server\] port"),
    ('[realtime]\nbroker = "kafka"', r"\[realtime\] broker"),
    ('[logging]\nlevel = "LOUD"', r"\[logging\] level"),
    ('[plugins]\nenabled = "live_qa"', r"\[plugins\] enabled"),
])
def test_bad_value_is_named(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named):
        settings_from("[dev]\nenabled = true\n" + text + "\n", tmp_path)


def test_top_level_key_outside_a_section(tmp_path):
    with pytest.raises(ConfigError, match="'port' must be a \\[section\\]"):
        settings_from("port = 1\n", tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nowhere\.toml"):
        config.gather(tmp_path / "nowhere.toml", environ={})


def test_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.gather(write(tmp_path, "[server\nport = 1\n"), environ={})


def test_env_overrides_string_int_bool_list(tmp_path):
    environ = {
        "KPAY_SERVER__HOST": "0.0.0.0",
        "KPAY_SERVER__PORT": "9000",
        "KPAY_DEV__ENABLED": "false",
        "KPAY_AUTH__SECRET": SECRET,
        "KPAY_PLUGINS__ENABLED": '["live_qa", "course_drip"]',
        # A string field keeps a value that looks like a number.
        "KPAY_MONGODB__DATABASE": "2024",
        "KPAY_REALTIME__RATE_PER_SECOND": "2.5",
    }
    settings = settings_from("[dev]\nenabled = true\n[server]\nport = 1\n", tmp_path, environ)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9000
    assert settings.dev.enabled is False
    assert settings.plugins.enabled == ["live_qa", "course_drip"]
    assert settings.mongodb.database == "2024"
    assert settings.realtime.rate_per_second == 2.5
    assert settings.auth.secret == SECRET


def test_env_override_errors_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[server\] port"):
        settings_from("[dev]\nenabled = true\n", tmp_path, {"KPAY_SERVER__PORT": "many"})
    with pytest.raises(ConfigError, match=r"\[server\] colour: .*unknown key"):
        settings_from("[dev]\nenabled = true\n", tmp_path, {"KPAY_SERVER__COLOUR": "red"})
    with pytest.raises(ConfigError, match="KPAY_PLUGINS__ENABLED: not valid JSON"):
        settings_from("", tmp_path, {"KPAY_PLUGINS__ENABLED": "[live_qa"})


def test_variables_without_section_and_key_are_not_settings(tmp_path):
    environ = {"KPAY_TRACE_PLUGINS": "1", "KPAY_VAR_DIR": "/tmp", "OTHER__X": "1"}
    settings = settings_from("[dev]\nenabled = true\n", tmp_path, environ)
    assert settings.dev.enabled is True


def test_secret_required_without_dev_mode(tmp_path):
    with pytest.raises(ConfigError, match=r"\[auth\] secret: required when dev mode is off"):
        settings_from("[dev]\nenabled = false\n", tmp_path)
    with pytest.raises(ConfigError, match=r"\[auth\] secret: .*at least 32"):
        settings_from('[auth]\nsecret = "short"\n', tmp_path)
    assert settings_from("", tmp_path, {"KPAY_AUTH__SECRET": SECRET}).auth.secret == SECRET


class ShopSettings(BaseModel):
    model_config = {"extra": "forbid"}
    fee: int = 5


class ShopPlugin:
    @hookimpl
    def register_settings(self):
        return [("shop", ShopSettings)]


def test_plugin_section_validated_and_reachable(tmp_path):
    pm = PluginManager()
    pm.add(ShopPlugin(), "shop")
    overrides = {"dev": {"enabled": True}, "plugins": {"enabled": []}}
    path = write(tmp_path, "[shop]\nfee = 7\n")
    settings, _ = load_settings(str(path), overrides=overrides, pm=pm)
    assert settings.shop.fee == 7
    path.write_text('[shop]\nfee = "lots"\n')
    with pytest.raises(ConfigError, match=r"\[shop\] fee"):
        load_settings(str(path), overrides=overrides, pm=pm)
    path.write_text("[shop]\nfees = 1\n")
    with pytest.raises(ConfigError, match=r"\[shop\] fees: .*unknown key"):
        load_settings(str(path), overrides=overrides, pm=pm)


def test_plugin_may_not_take_a_core_section():
    class Thief:
        @hookimpl
        def register_settings(self):
            return [("server", ShopSettings)]

    pm = PluginManager()
    pm.add(Thief(), "thief")
    with pytest.raises(ConfigError, match=r"\[server\] of plugin 'thief' is already declared"):
        settings_models(pm, reserved=config.CORE_SECTIONS)


# -- production.example.toml documents every key ------------------------------------------


def every_section_model() -> dict[str, type[BaseModel]]:
    """The core sections and the sections of every installed plugin."""
    pm = PluginManager()
    pm.load(select(["*"], available_plugins()))
    return {**config.CORE_SECTIONS, **settings_models(pm, reserved=config.CORE_SECTIONS)}


def documented_keys(text: str) -> dict[str, dict[str, bool]]:
    """{section: {key: has a comment}} where the comment is on the line or just above."""
    found: dict[str, dict[str, bool]] = {}
    section = ""
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if match := re.fullmatch(r"\[([\w.]+)\]", stripped):
            section = match.group(1)
            found.setdefault(section, {})
        elif match := re.match(r"(\w+)\s*=", stripped):
            found.setdefault(section, {})[match.group(1)] = (
                previous.startswith("#") or " #" in stripped)
        previous = stripped
    return found


def test_production_example_documents_every_key():
    documented = documented_keys(EXAMPLE.read_text())
    missing = [f"[{s}] {k}" for s, model in every_section_model().items()
               for k in model.model_fields if k not in documented.get(s, {})]
    assert not missing, f"keys missing from {EXAMPLE.name}: {', '.join(missing)}"
    uncommented = [f"[{s}] {k}" for s, keys in documented.items()
                   for k, commented in keys.items() if not commented]
    assert not uncommented, f"keys without a comment in {EXAMPLE.name}: {uncommented}"


def test_production_example_validates_with_its_placeholders():
    raw: dict[str, Any] = tomllib.loads(EXAMPLE.read_text())
    models = every_section_model()
    plugin_sections = {k: v for k, v in models.items() if k not in config.CORE_SECTIONS}
    # The secret is deliberately empty in the file (it belongs in the environment) ...
    with pytest.raises(ConfigError, match=r"\[auth\] secret"):
        config.validate(raw, plugin_sections)
    # ... and with it set as documented, the whole example is valid.
    config.apply_env(raw, {"KPAY_AUTH__SECRET": SECRET})
    settings = config.validate(raw, plugin_sections)
    assert settings.dev.enabled is False


def test_default_config_runs_in_dev_mode():
    settings, pm = load_settings(str(ROOT / "config" / "default.toml"))
    assert settings.dev.enabled is True
    assert {p["name"] for p in pm.describe()} == set(available_plugins())
