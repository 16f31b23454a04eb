"""Crash safety against a real server process: SIGKILL mid-session, restart, check money.

The server runs as ``python server.py`` with a temporary TOML config on the session's
database server and a database of its own, dev mode on and the scheduler running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
import tornado.httpclient
from consult_helpers import Pair, Party

from kpay.core.clock import Clock
from kpay.core.money.ledger import Ledger
from kpay.core.money.reconcile import reconcile
from kpay.core.store import Store, free_port
from kpay.testing import TEST_SECRET, ApiClient, drop_database_after_kill

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, mongo_uri: str, tmp_path: Path) -> None:
        self.database = "t_" + uuid.uuid4().hex[:16]
        self.port = free_port()
        self.tmp_path = tmp_path
        self.config = tmp_path / "kpay.toml"
        self.config.write_text(f"""
[server]
host = "127.0.0.1"
port = {self.port}
[mongodb]
uri = "{mongo_uri}"
database = "{self.database}"
[auth]
secret = "{TEST_SECRET}"
[dev]
enabled = true
[plugins]
enabled = ["consult_billing"]
[consult_billing]
engine_interval_seconds = 0.5
""")
        self.mongo_uri = mongo_uri
        self.process: subprocess.Popen | None = None

    def launch(self) -> None:
        with open(self.tmp_path / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "server.py", "--config", str(self.config)], cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "KPAY_VAR_DIR": str(self.tmp_path / "var")})

    async def start(self) -> None:
        self.launch()
        assert self.process is not None
        client = tornado.httpclient.AsyncHTTPClient()
        for _ in range(300):
            assert self.process.poll() is None, (self.tmp_path / "server.log").read_text()
            try:
                response = await client.fetch(f"http://127.0.0.1:{self.port}/healthz",
                                              raise_error=False)
                if response.code == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("server did not come up: "
                             + (self.tmp_path / "server.log").read_text())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def api(self) -> ApiClient:
        return ApiClient.at_port(self.port)

    def store(self) -> Store:
        return Store(self.mongo_uri, self.database)


@pytest.fixture
def server(mongo_uri, tmp_path):
    process = ServerProcess(mongo_uri, tmp_path)
    yield process
    process.stop()
    drop_database_after_kill(mongo_uri, process.database)


async def outlive_dead_transaction(store: Store, consultation_id: str) -> None:
    """Wait until the database has dropped the killed process's open transaction.

    MongoDB aborts a dead client's transaction after 60 s by itself. SecantusDB does
    too, but only notices while some transaction runs: this one writes the first
    document a charge writes (the session when charged alone, the wallet in a batch),
    so it conflicts and is retried until then (at once when the kill came between
    transactions).
    """
    async def touch(session):
        await store["consultations"].update_one(
            {"_id": consultation_id}, {"$set": {"test_probe": uuid.uuid4().hex}},
            session=session)
        await store["accounts"].update_one(
            {"_id": "wallet:stu"}, {"$set": {"test_probe": uuid.uuid4().hex}},
            session=session)

    await store.transaction(touch)


async def topup(store: Store, user_id: str, amount: int) -> None:
    """Money in through the real ledger code, as a provider payment would book it."""
    ledger = Ledger(types.SimpleNamespace(store=store, clock=Clock()))
    await ledger.post(f"test-topup:{uuid.uuid4().hex}",
                      [("external:test", -amount), (f"wallet:{user_id}", amount)], "top-up")


async def start_session(server: ServerProcess, api: ApiClient, rate: int,
                        max_minutes: int = 60) -> tuple[Pair, list]:
    pair = Pair(Party("stu", await api.login("stu", "student")),
                Party("con", await api.login("con", "consultant")))
    status, body = await api.put("/api/v1/consultants/me", {
        "rate_per_minute": rate, "max_minutes": max_minutes}, pair.consultant.token)
    assert status == 200, body
    store = server.store()
    await topup(store, "stu", 100_000)
    await store.close()
    status, body = await api.post("/api/v1/consultations", {"consultant_id": "con"},
                                  pair.student.token)
    assert status == 201, body
    pair.consultation_id = body["consultation"]["id"]
    sockets = await join_both(api, pair)
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200, body
    assert body["consultation"]["absent_since"] is None
    return pair, sockets


async def join_both(api: ApiClient, pair: Pair) -> list:
    sockets = []
    for party in (pair.student, pair.consultant):
        ws = await api.socket(party.token)
        reply = await ws.request("sub", ch=f"consult:{pair.consultation_id}")
        assert reply["ok"] is True, reply
        sockets.append(ws)
    for _ in range(200):
        _, body = await api.get(pair.path, pair.student.token)
        # Both recorded present, and the resume that follows (if paused) written too.
        if (all(body["present"].values()) and body["absent_since"] is None
                and body["status"] != "paused"):
            return sockets
        await asyncio.sleep(0.05)
    raise AssertionError(f"parties never both present: {body}")


async def minute_keys(store: Store, consultation_id: str) -> list[int]:
    keys = [d["_id"] async for d in store["ledger"].find(
        {"_id": {"$regex": f"^consult:{consultation_id}:"}}, {"_id": 1})]
    return sorted(int(key.rsplit(":", 1)[1]) for key in keys)


async def check_books(store: Store, consultation_id: str) -> dict:
    doc = await store["consultations"].find_one({"_id": consultation_id})
    minutes = await minute_keys(store, consultation_id)
    # Every minute booked once, none missing, and the session agrees with the ledger.
    assert minutes == list(range(1, doc["minute"] + 1)), (minutes, doc["minute"])
    wallet = await store["accounts"].find_one({"_id": "wallet:stu"})
    assert wallet["balance"] == 100_000 - doc["minute"] * doc["rate_per_minute"]
    report = await reconcile(store.db, Clock().now())
    assert report.clean, report.text()
    return doc


@pytest.mark.gen_test(timeout=120)
async def test_sigkill_mid_session_bills_no_downtime(server):
    await server.start()
    api = server.api()
    pair, sockets = await start_session(server, api, rate=100)
    status, _ = await api.post("/api/v1/dev/clock", {"advance": 125}, pair.student.token)
    assert status == 200
    status, body = await api.get(pair.path, pair.student.token)
    assert body["billed_minutes"] == 3, body
    server.kill()
    for ws in sockets:
        ws.close()
    # The server stays down for ten minutes (its dev clock is restored from the database).
    store = server.store()
    await store["dev_state"].update_one({"name": "clock"}, {"$inc": {"offset": 600}})
    await server.start()
    status, body = await api.get(pair.path, pair.student.token)
    assert (body["status"], body["billed_minutes"]) == ("paused", 3), body
    # Minute 3 was paid up to 180 s; the server was alive until about 125 s.
    assert 30 <= body["remaining_seconds"] <= 56, body
    await join_both(api, pair)
    status, body = await api.get(pair.path, pair.student.token)
    assert (body["status"], body["billed_minutes"]) == ("active", 3), body
    await api.post("/api/v1/dev/clock", {"advance": 60}, pair.student.token)
    status, body = await api.get(pair.path, pair.student.token)
    assert body["billed_minutes"] == 4, body
    status, body = await api.post(pair.path + "/end", token=pair.student.token)
    assert status == 200, body
    doc = await check_books(store, pair.consultation_id)
    assert doc["minute"] == 4
    await store.close()


@pytest.mark.gen_test(timeout=180)
async def test_sigkill_during_catch_up_never_double_charges(server):
    await server.start()
    api = server.api()
    pair, sockets = await start_session(server, api, rate=7, max_minutes=300)
    # A jump of 200 minutes: the sweep bills them one transaction each; kill it midway.
    jump = asyncio.ensure_future(
        api.post("/api/v1/dev/clock", {"advance": 200 * 60}, pair.student.token))
    store = server.store()
    for _ in range(1000):
        if len(await minute_keys(store, pair.consultation_id)) >= 20:
            break
        await asyncio.sleep(0.01)
    server.kill()
    for ws in sockets:
        ws.close()
    try:
        await jump
    except Exception:  # the request dies with the server
        pass
    before = await minute_keys(store, pair.consultation_id)
    await outlive_dead_transaction(store, pair.consultation_id)
    await server.start()
    _, body = await api.get(pair.path, pair.student.token)
    assert body["status"] == "paused", body
    # Minutes up to the last sign of life are billed once each, in order.
    doc = await check_books(store, pair.consultation_id)
    assert doc["minute"] >= len(before)
    await api.post(pair.path + "/end", token=pair.consultant.token)
    await check_books(store, pair.consultation_id)
    await store.close()
