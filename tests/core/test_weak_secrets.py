"""Weak secrets stop start-up outside dev mode, and ``kpay config check`` refuses exactly
what ``kpay serve`` refuses (the same checks, without a server or a database)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

from kpay.core.auth import resolve_secret
from kpay.core.config import AuthSettings
from kpay.core.errors import ConfigError
from plugins.wechat_pay import settings as wechat_settings
from plugins.wechat_pay.settings import WeChatPaySettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "production.example.toml"
STRONG = "Xc8f2Lq0Rz7TmW4vB9nK1sYh6JdP3aGe5uQoN"
STRONG_API_KEY = "f3Kq8ZtW1mRx6VbN0cYe4HsJ9gLd2PaU"
EXAMPLE_API_KEY = tomllib.loads(EXAMPLE.read_text())["wechat_pay"]["api_key"]

WEAK = {
    "one character": "a" * 32,
    "two characters": "ab" * 20,
    "padded": "kpay-production-secret-" + "x" * 24,
    "a word repeated": "kpaysecret" * 4,
}


# -- [auth] secret ---------------------------------------------------------------------------


@pytest.mark.parametrize("secret", list(WEAK.values()), ids=list(WEAK))
def test_weak_auth_secret_is_refused_outside_dev_mode(tmp_path, secret):
    with pytest.raises(ConfigError, match=r"\[auth\] secret"):
        resolve_secret(AuthSettings(secret=secret), dev_enabled=False, var_dir=str(tmp_path))
    # Dev mode takes it: nothing is at stake there.
    assert resolve_secret(AuthSettings(secret=secret), True, str(tmp_path)) == secret


def test_random_secrets_are_accepted(tmp_path):
    for secret in (STRONG, "15c2ec4c9f58b0c9379e027dc9e2ba1e", "kpay-" + STRONG):
        assert resolve_secret(AuthSettings(secret=secret), False, str(tmp_path)) == secret


def test_the_dev_generated_secret_is_refused_outside_dev_mode(tmp_path):
    var = str(tmp_path / "var")
    generated = resolve_secret(AuthSettings(), dev_enabled=True, var_dir=var)
    with pytest.raises(ConfigError, match=r"\[auth\] secret .*development secret"):
        resolve_secret(AuthSettings(secret=generated), dev_enabled=False, var_dir=var)


def test_example_placeholders_are_refused_as_auth_secret(tmp_path):
    with pytest.raises(ConfigError, match=r"\[auth\] secret .*placeholder"):
        resolve_secret(AuthSettings(secret=EXAMPLE_API_KEY), False, str(tmp_path))


def test_every_placeholder_of_the_example_file_is_known():
    from kpay.core.auth import PLACEHOLDER_SECRETS

    raw = tomllib.loads(EXAMPLE.read_text())
    placeholders = {raw["auth"]["secret"], *(raw["wechat_pay"][k] for k in ("api_key",
                                                                           "app_secret"))}
    assert {p for p in placeholders if p} <= PLACEHOLDER_SECRETS


def test_start_up_refuses_a_weak_secret(kpay_settings):
    settings = kpay_settings.settings.replace("dev", enabled=False).replace(
        "auth", secret="a" * 32)
    with pytest.raises(ConfigError, match=r"\[auth\] secret"):
        kpay_settings.new_app(settings)


# -- [wechat_pay] keys -------------------------------------------------------------------------


def merchant(**changes: str) -> WeChatPaySettings:
    return WeChatPaySettings(**{"appid": "wx0000000000000000", "mch_id": "1000000000",
                                "api_key": STRONG_API_KEY, "mch_cert": "c.pem",
                                "mch_key": "k.pem", **changes})


@pytest.mark.parametrize("api_key", [EXAMPLE_API_KEY, "k" * 32, "0123" * 8],
                         ids=["example placeholder", "one character", "a piece repeated"])
def test_weak_wechat_api_key_is_refused_outside_dev_mode(tmp_path, api_key):
    with pytest.raises(ConfigError, match=r"\[wechat_pay\] api_key"):
        wechat_settings.check(merchant(api_key=api_key), False, str(tmp_path))
    assert wechat_settings.check(merchant(api_key=api_key), True, str(tmp_path)) is False


def test_weak_wechat_app_secret_is_refused_and_a_real_merchant_passes(tmp_path):
    with pytest.raises(ConfigError, match=r"\[wechat_pay\] app_secret"):
        wechat_settings.check(merchant(app_secret="s" * 32), False, str(tmp_path))
    assert wechat_settings.check(merchant(app_secret="9f0c2e6a1b7d43f8a5c0e2d6b1f7a3c9"),
                                 False, str(tmp_path)) is False


# -- kpay config check == kpay serve ---------------------------------------------------------


def kpay(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m kpay.cli`` in this checkout (its code is imported first); a ``serve``
    still running after 30 s was not refused."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KPAY_")}
    environ["KPAY_VAR_DIR"] = str(tmp_path / "var")
    command = [sys.executable, "-m", "kpay.cli", *args]
    try:
        return subprocess.run(command, cwd=ROOT, env={**environ, **env}, capture_output=True,
                              text=True, timeout=30 if "serve" in args else 90)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, -1, "", "still serving after 30 s")


def production_config(tmp_path: Path, mongo_uri: str, secret: str = STRONG,
                      wechat: str = "") -> Path:
    path = tmp_path / f"prod-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(f"""
[server]
host = "127.0.0.1"
port = 0
[mongodb]
uri = "{mongo_uri}"
database = "t_cli_{uuid.uuid4().hex[:12]}"
[auth]
secret = "{secret}"
[dev]
enabled = false
[scheduler]
enabled = false
[plugins]
enabled = ["wechat_pay"]
{wechat}
""")
    return path


MERCHANT = f"""
[wechat_pay]
appid = "wx0000000000000000"
mch_id = "1000000000"
api_key = "{STRONG_API_KEY}"
mch_cert = "/nonexistent/cert.pem"
mch_key = "/nonexistent/key.pem"
"""

REFUSED = {
    "no merchant": ({}, "[wechat_pay] missing appid, mch_id, api_key, mch_cert, mch_key"),
    "weak secret": ({"secret": "a" * 32, "wechat": MERCHANT}, "[auth] secret"),
    "placeholder api_key": (
        {"wechat": MERCHANT.replace(STRONG_API_KEY, EXAMPLE_API_KEY)},
        "[wechat_pay] api_key is the placeholder"),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_config_check_refuses_what_serve_refuses(tmp_path, mongo_uri, case):
    changes, named = REFUSED[case]
    config = str(production_config(tmp_path, mongo_uri, **changes))
    checked = kpay(tmp_path, "--config", config, "config", "check")
    served = kpay(tmp_path, "--config", config, "serve", "--port", "0")
    for result in (checked, served):
        assert result.returncode == 2, result.stdout + result.stderr
        assert named in result.stderr and "Traceback" not in result.stderr
    assert checked.stderr == served.stderr
    assert "ok" not in checked.stdout


def test_config_check_refuses_the_dev_generated_secret(tmp_path, mongo_uri):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "jwt_secret").write_text("dEvGeNeRaTeD-" + STRONG)
    config = str(production_config(tmp_path, mongo_uri, secret="dEvGeNeRaTeD-" + STRONG,
                                   wechat=MERCHANT))
    result = kpay(tmp_path, "--config", config, "config", "check")
    assert result.returncode == 2 and "[auth] secret is the development secret" in result.stderr


def test_config_check_accepts_a_complete_production_config(tmp_path, mongo_uri):
    config = str(production_config(tmp_path, mongo_uri, wechat=MERCHANT))
    result = kpay(tmp_path, "--config", config, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "ok; plugins: wechat_pay" in result.stdout


def test_the_example_file_is_refused_until_its_placeholders_are_replaced(tmp_path):
    example = str(EXAMPLE)
    result = kpay(tmp_path, "--config", example, "config", "check", KPAY_AUTH__SECRET=STRONG)
    assert result.returncode == 2 and "[wechat_pay] api_key is the placeholder" in result.stderr
    # The example configures API v3 (docs/wechat_pay.md): its APIv3 key is a secret too.
    result = kpay(tmp_path, "--config", example, "config", "check", KPAY_AUTH__SECRET=STRONG,
                  KPAY_WECHAT_PAY__API_KEY=STRONG_API_KEY)
    assert result.returncode == 2 and "needs api_v3_key" in result.stderr
    result = kpay(tmp_path, "--config", example, "config", "check", KPAY_AUTH__SECRET=STRONG,
                  KPAY_WECHAT_PAY__API_KEY=STRONG_API_KEY,
                  KPAY_WECHAT_PAY__API_V3_KEY="Vb7Qm2Xc9Lr4Tn8Kd1Zh5Wg3Pf6Sj0Ye")
    assert result.returncode == 0, result.stderr
