"""``kpay plugin new``: the generated package installs, is found through its entry point
and its own test passes against a real server.

The package is installed with ``pip install --target`` into a temporary folder put on
PYTHONPATH of the subprocesses only, so the test venv (and every other test) is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kpay.core.plugins import available_plugins

KPAY = Path(sys.executable).parent / "kpay"


def environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPAY_")}
    env["KPAY_VAR_DIR"] = str(tmp_path / "var")
    return {**env, **extra}


def kpay(tmp_path: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KPAY), *args], cwd=cwd, env=environ(tmp_path, **env),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """``kpay plugin new shout_box``, installed into ``tmp_path/site``."""
    result = kpay(tmp_path, "plugin", "new", "shout_box", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    package = tmp_path / "kpay-shout-box"
    assert "created" in result.stdout and package.is_dir()
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(tmp_path / "site"), str(package)],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return package


def test_skeleton_files(installed):
    for name in ["README.md", "pyproject.toml", "setup.cfg", "tests/test_shout_box.py",
                 *(f"kpay_shout_box/{part}" for part in (
                     "__init__.py", "settings.py", "store.py", "handlers.py", "jobs.py",
                     "static/index.html"))]:
        assert (installed / name).is_file(), name
    assert "kpay.plugins =\n    shout_box = kpay_shout_box" in (installed / "setup.cfg").read_text()


def test_generated_test_passes_against_a_real_server(installed, tmp_path, mongo_uri):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=installed,
        env=environ(tmp_path, PYTHONPATH=str(tmp_path / "site"),
                    KPAY_TEST_MONGODB_URI=mongo_uri),
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_kpay_plugins_shows_the_installed_plugin(installed, tmp_path):
    config = tmp_path / "kpay.toml"
    config.write_text('[dev]\nenabled = true\n[plugins]\nenabled = ["shout_box"]\n'
                      '[shout_box]\ngreeting = "hi"\n')
    result = kpay(tmp_path, "--config", str(config), "plugins", "--json", cwd=tmp_path,
                  PYTHONPATH=str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    [plugin] = json.loads(result.stdout)
    assert plugin["name"] == "shout_box" and plugin["version"] == "0.1.0"
    assert plugin["routes"] == ["/api/v1/shout_box/hello"]
    assert plugin["hooks"] == ["register_collections", "register_indexes", "register_jobs",
                               "register_routes", "register_settings"]


def test_the_venv_is_untouched(installed):
    assert "shout_box" not in available_plugins()


@pytest.mark.parametrize(("name", "message"), [
    ("Bad-Name", "lower-case letters"),
    ("x", "lower-case letters"),
])
def test_bad_names_are_refused(tmp_path, name, message):
    result = kpay(tmp_path, "plugin", "new", name, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert not list(tmp_path.glob("kpay-*"))


def test_an_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "kpay-taken").mkdir()
    (tmp_path / "kpay-taken" / "keep.txt").write_text("mine")
    result = kpay(tmp_path, "plugin", "new", "taken", cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (tmp_path / "kpay-taken" / "keep.txt").read_text() == "mine"
