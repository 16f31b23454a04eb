"""The ``kpay`` command, run as a real subprocess against the test database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[2]
KPAY = Path(sys.executable).parent / "kpay"
SECRET = "cli-test-secret-" + "z" * 32
BUILT_INS = ["consult_billing", "course_drip", "live_qa", "wechat_notify", "wechat_pay"]


def clean_environ(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KPAY_")}
    environ["KPAY_VAR_DIR"] = str(tmp_path / "var")
    return environ


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KPAY), *args], cwd=ROOT, env={**clean_environ(tmp_path), **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def config_file(tmp_path, mongo_uri) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(f"""
[mongodb]
uri = "{mongo_uri}"
database = "t_cli_{uuid.uuid4().hex[:12]}"

[auth]
secret = "{SECRET}"

[dev]
enabled = true

[scheduler]
enabled = false
""")
    return path


def test_plugins_lists_the_built_ins(tmp_path, config_file):
    result = run(tmp_path, "--config", str(config_file), "plugins")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()
              if line and not line.startswith(" ")]
    assert listed == BUILT_INS
    assert "hooks: " in result.stdout

    result = run(tmp_path, "--config", str(config_file), "plugins", "--json")
    described = json.loads(result.stdout)
    assert [p["name"] for p in described] == BUILT_INS
    assert all(p["version"] == "0.1.0" and isinstance(p["hooks"], list) for p in described)


def test_plugins_follows_the_selection(tmp_path, config_file):
    result = run(tmp_path, "--config", str(config_file), "plugins",
                 KPAY_PLUGINS__ENABLED='["live_qa"]')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[0] == "live_qa"
    assert "wechat_pay" not in result.stdout


def test_token_verifies_with_the_configured_secret(tmp_path, config_file):
    result = run(tmp_path, "--config", str(config_file), "token", "--user", "carol",
                 "--role", "consultant")
    assert result.returncode == 2 and "kpay user role carol consultant" in result.stderr
    made = run(tmp_path, "--config", str(config_file), "user", "role", "carol", "consultant")
    assert made.returncode == 0, made.stderr
    result = run(tmp_path, "--config", str(config_file), "token", "--user", "carol",
                 "--role", "consultant", "--ttl", "120")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="kpay")
    assert claims["sub"] == "carol" and claims["role"] == "consultant"
    assert claims["exp"] - claims["iat"] == 120


def test_token_in_dev_mode_uses_the_generated_secret(tmp_path):
    path = tmp_path / "dev.toml"
    path.write_text("[dev]\nenabled = true\n")
    assert run(tmp_path, "--config", str(path), "user", "role", "a", "admin").returncode == 0
    result = run(tmp_path, "--config", str(path), "token", "--user", "a", "--role", "admin")
    assert result.returncode == 0, result.stderr
    secret = (tmp_path / "var" / "jwt_secret").read_text()
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"], audience="kpay")
    assert claims["role"] == "admin"


def test_token_refuses_an_unknown_role(tmp_path, config_file):
    result = run(tmp_path, "--config", str(config_file), "token", "--user", "a", "--role", "root")
    assert result.returncode == 2 and "invalid choice: 'root'" in result.stderr


def test_config_check(tmp_path, config_file):
    result = run(tmp_path, "--config", str(config_file), "config", "check")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "live_qa" in result.stdout


@pytest.mark.parametrize(("text", "named"), [
    ("[server]\nprot = 1\n", "[server] prot"),
    ("[sever]\nport = 1\n", "unknown section [sever]"),
    ('[plugins]\nenabled = ["nope"]\n', "unknown plugin 'nope'"),
    ("[dev]\nenabled = false\n", "[auth] secret: required when dev mode is off"),
    ("[server\n", "not valid TOML"),
])
def test_config_check_names_the_problem(tmp_path, text, named):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run(tmp_path, "--config", str(path), "config", "check")
    assert result.returncode == 2
    assert named in result.stderr and "Traceback" not in result.stderr


def test_missing_config_file(tmp_path):
    result = run(tmp_path, "--config", str(tmp_path / "nowhere.toml"), "config", "check")
    assert result.returncode == 2 and "config file not found" in result.stderr


def test_production_example_checks_with_the_secret_from_the_environment(tmp_path):
    example = str(ROOT / "config" / "production.example.toml")
    # Real-looking secrets: the example's placeholders (and padded ones) are refused.
    result = run(tmp_path, "--config", example, "config", "check",
                 KPAY_AUTH__SECRET="Xc8f2Lq0Rz7TmW4vB9nK1sYh6JdP3aGe5uQoN",
                 KPAY_WECHAT_PAY__API_KEY="f3Kq8ZtW1mRx6VbN0cYe4HsJ9gLd2PaU",
                 KPAY_WECHAT_PAY__API_V3_KEY="Vb7Qm2Xc9Lr4Tn8Kd1Zh5Wg3Pf6Sj0Ye")
    assert result.returncode == 0, result.stderr
    result = run(tmp_path, "--config", example, "config", "check")
    assert result.returncode == 2 and "[auth] secret" in result.stderr


def test_reconcile_on_an_empty_database(tmp_path, config_file):
    result = run(tmp_path, "--config", str(config_file), "reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "clean" in result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("entry", ["kpay", "server.py"])
def test_serve_answers_and_stops_on_sigterm(tmp_path, config_file, entry):
    port = free_port()
    if entry == "kpay":
        command = [str(KPAY), "--config", str(config_file), "serve", "--port", str(port)]
    else:
        command = [sys.executable, "server.py", "--config", str(config_file), "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=clean_environ(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.2)
        assert health is not None and health["database"] == "up", process.poll()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert "kpay listening on" in output and "kpay stopping" in output


def test_serve_with_a_bad_config_exits_with_the_message(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nport = -1\n")
    result = subprocess.run([sys.executable, "server.py", "--config", str(path)], cwd=ROOT,
                            env=clean_environ(tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "[server] port" in result.stderr and "Traceback" not in result.stderr
