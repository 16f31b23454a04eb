"""CLI commands beside a running dev server use its embedded database and never stop it
(``kpay reconcile`` once stopped the live server's database as "left running")."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pymongo import MongoClient

from kpay.core.store import EmbeddedMongo


@pytest.fixture
def running_dev_database(tmp_path):
    """The embedded database as ``make run`` starts it, owned by this (live) process."""
    server = EmbeddedMongo(str(tmp_path / "db"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def kpay(config, *args):
    return subprocess.run([sys.executable, "-m", "kpay.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_commands_use_the_running_servers_database_and_leave_it_running(
        running_dev_database, tmp_path):
    config = tmp_path / "kpay.toml"
    config.write_text(f'[mongodb]\nembedded_path = "{running_dev_database.storage_path}"\n'
                      'database = "cli_test"\n[dev]\nenabled = true\n'
                      '[plugins]\nenabled = []\n')
    with MongoClient(running_dev_database.uri) as client:
        client["cli_test"]["marker"].insert_one({"_id": "here"})
    pid_record = running_dev_database.pid_path.read_text()
    for args in (("reconcile",), ("attention",)):
        result = kpay(config, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "left running" not in result.stderr
    # The same server, still up, with its data, and still recorded as the live one's.
    with MongoClient(running_dev_database.uri, serverSelectionTimeoutMS=3000) as client:
        assert client.admin.command("ping")["ok"] == 1
        assert client["cli_test"]["marker"].find_one({"_id": "here"})
    assert running_dev_database.process.poll() is None
    assert running_dev_database.pid_path.read_text() == pid_record


def test_a_server_whose_kpay_is_gone_is_still_stopped_as_an_orphan(tmp_path):
    first = EmbeddedMongo(str(tmp_path / "db"))
    first.start()
    try:
        # As if its kpay had been killed: the record names an owner that is gone.
        record = first.pid_path.read_text().replace(
            f'"owner": {__import__("os").getpid()}', '"owner": 999999999')
        first.pid_path.write_text(record)
        second = EmbeddedMongo(str(tmp_path / "db"))
        second.start()
        try:
            assert not second.attached and second.port != first.port
            first.process.wait(20)  # stopped: two servers on one store would corrupt it
        finally:
            second.stop()
    finally:
        first.stop()
