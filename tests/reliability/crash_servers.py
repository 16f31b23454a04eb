"""Real kpay server processes for the crash tests: started on the session's database
server with a config of their own, killed (at a failpoint, or with SIGKILL), started
again; the fake WeChat Pay that outlives them; and the invariants checked after."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import types
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

from kpay.core.clock import Clock
from kpay.core.failpoints import EXIT_STATUS
from kpay.core.money.accounts import account_of
from kpay.core.money.ledger import Ledger
from kpay.core.money.reconcile import reconcile
from kpay.core.store import Store, free_port
from kpay.testing import TEST_SECRET, ApiClient, drop_database_after_kill
from plugins.wechat_pay.fake import FakeWeChat

ROOT = Path(__file__).resolve().parents[2]


def load_wechat_certs() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        "wechat_certs_for_crash", ROOT / "tests" / "wechat_pay" / "wechat_certs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wechat_certs = load_wechat_certs()

# The server with a refund it performs when the test writes the request file: the same
# start and stop as ``python server.py`` (kpay/core/serving.py).
DRIVER = r"""
import asyncio, json, os, signal, sys
from kpay.core import config as config_module
from kpay.core.app import KPay, load_settings
from kpay.core.logs import configure_logging

config_path, request_path, answer_path = sys.argv[1:4]

async def refund_when_asked(app):
    while not os.path.exists(request_path):
        await asyncio.sleep(0.02)
    with open(request_path) as f:
        asked = json.load(f)
    os.remove(request_path)
    try:
        refund = await app.money.orders.refund(asked["order_id"], asked["amount"],
                                               asked["reason"], to="original", key=asked["key"])
        answer = {"status": refund["status"], "id": refund["_id"]}
    except Exception as e:
        answer = {"error": f"{type(e).__name__}: {e}"}
    with open(answer_path + ".tmp", "w") as f:
        json.dump(answer, f)
    os.replace(answer_path + ".tmp", answer_path)

async def main():
    settings, pm = load_settings(config_path)
    configure_logging(settings.logging.level)
    app = KPay(settings, pm, settings.mongodb.uri, var_dir=config_module.var_dir())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await app.start()
    task = asyncio.ensure_future(refund_when_asked(app))
    await stopping.wait()
    task.cancel()
    await app.stop()

asyncio.run(main())
"""


class Server:
    """One kpay deployment: a config, a database, and the process of the moment."""

    def __init__(self, mongo_uri: str, tmp_path: Path, plugins: list[str],
                 wechat: dict[str, Any] | None = None, driver: bool = False,
                 command: list[str] | None = None, extra_config: str = "") -> None:
        self.mongo_uri = mongo_uri
        self.tmp_path = tmp_path
        self.database = "t_crash_" + uuid.uuid4().hex[:12]
        self.port = free_port()
        self.driver = driver
        # Another program to run instead of server.py (a driver of the test's own).
        self.command = command
        self.log_path = tmp_path / "server.log"
        self.config = tmp_path / "kpay.toml"
        consult_section = ("[consult_billing]\nengine_interval_seconds = 0.5\n"
                           if "consult_billing" in plugins else "")
        wechat_section = ""
        if wechat:
            wechat_section = "[wechat_pay]\n" + "".join(
                f"{key} = {json.dumps(value)}\n" for key, value in wechat.items())
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
[limits]
# These tests are about crashes: the rate limits have tests of their own.
enabled = false
[plugins]
enabled = {json.dumps(plugins)}
{consult_section}{wechat_section}{extra_config}""")
        self.process: subprocess.Popen | None = None
        self.failpoint: str | None = None
        self._store: Store | None = None

    def launch(self, failpoint: str | None = None) -> None:
        self.failpoint = failpoint
        env = {**os.environ, "KPAY_VAR_DIR": str(self.tmp_path / "var")}
        env.pop("KPAY_FAILPOINT", None)
        if failpoint:
            env["KPAY_FAILPOINT"] = failpoint
        if self.command:
            command = self.command
        elif self.driver:
            command = [sys.executable, "-c", DRIVER, str(self.config),
                       str(self.tmp_path / "refund.json"), str(self.tmp_path / "refunded.json")]
        else:
            command = [sys.executable, "server.py", "--config", str(self.config)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start, KPAY_FAILPOINT={failpoint or ''}\n".encode())
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def start(self, failpoint: str | None = None) -> None:
        self.launch(failpoint)
        assert self.process is not None
        client = tornado.httpclient.AsyncHTTPClient()
        # A kill inside a transaction leaves it open on the database until the database
        # drops it (60 s): a restart that needs those documents waits that long.
        deadline = asyncio.get_running_loop().time() + 120
        while asyncio.get_running_loop().time() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                response = await client.fetch(f"http://127.0.0.1:{self.port}/healthz",
                                              raise_error=False, request_timeout=5)
                if response.code == 200:
                    return
            except (OSError, tornado.httpclient.HTTPClientError):
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("server did not come up: " + self.log())

    async def died(self, timeout: float = 15.0) -> int:
        """Wait for the process to end by itself; its exit status."""
        assert self.process is not None
        for _ in range(int(timeout / 0.02)):
            if self.process.poll() is not None:
                return self.process.returncode
            await asyncio.sleep(0.02)
        raise AssertionError(f"the server is still running, {self.failpoint} never hit: "
                             + self.log()[-3000:])

    async def killed_at(self, failpoint: str) -> int:
        """The process died at ``failpoint``: exit 137, and the failpoint's own line is
        the last thing it wrote."""
        status = await self.died()
        name = failpoint.split(":")[0]
        assert status == EXIT_STATUS, (status, self.log()[-3000:])
        assert re.search(rf"kpay failpoint {re.escape(name)} hit", self.log()), self.log()
        return status

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
        """The deployment's database, as the test reads it (closed by the fixture)."""
        if self._store is None:
            self._store = Store(self.mongo_uri, self.database)
        return self._store

    async def close_store(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def refund(self, request: dict[str, Any]) -> None:
        """Ask the driver for a refund (written whole at once: it polls for the file)."""
        partial = self.tmp_path / "refund.json.tmp"
        partial.write_text(json.dumps(request))
        partial.replace(self.tmp_path / "refund.json")

    async def refunded(self, timeout: float = 15.0) -> dict[str, Any]:
        answer = self.tmp_path / "refunded.json"
        for _ in range(int(timeout / 0.02)):
            if answer.exists():
                found = json.loads(answer.read_text())
                answer.unlink()
                return found
            assert self.process is not None and self.process.poll() is None, self.log()
            await asyncio.sleep(0.02)
        raise AssertionError("the refund did not finish: " + self.log()[-3000:])


@pytest.fixture
def deployments(mongo_uri, tmp_path, io_loop):
    """``make(plugins, wechat=, driver=)`` -> a Server; all stopped and dropped after."""
    made: list[Server] = []

    def make(plugins: list[str], **options: Any) -> Server:
        server = Server(mongo_uri, tmp_path, plugins, **options)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()
        io_loop.run_sync(server.close_store)
    for server in made:
        drop_database_after_kill(mongo_uri, server.database)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return wechat_certs.make_certificates(tmp_path_factory.mktemp("crash-certs"))


@pytest.fixture
def wechat(io_loop, certificates):
    """The fake WeChat Pay, in this process: it keeps its orders and refunds while the
    server dies and comes back, and retries its notifies as WeChat does (faster)."""
    fake = FakeWeChat(retry_scale=0.001, ssl_context=wechat_certs.server_context(certificates))
    spawn = fake._spawn

    def spawn_quietly(coroutine: Any) -> asyncio.Task:
        # A notify under way when the server dies ends with the broken connection (the
        # fake does not retry those, as WeChat would; the jobs ask WeChat instead):
        # expected here, not an error to log.
        task = spawn(coroutine)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    fake._spawn = spawn_quietly
    io_loop.run_sync(fake.start)
    settings = {**fake.settings(), "ca_bundle": certificates["ca"],
                "mch_cert": certificates["merchant_cert"],
                "mch_key": certificates["merchant_key"]}
    yield types.SimpleNamespace(fake=fake, settings=settings)
    io_loop.run_sync(fake.stop)


# -- the invariants --------------------------------------------------------------------


async def server_now(api: ApiClient) -> datetime:
    status, body = await api.get("/api/v1/dev/clock")
    assert status == 200, body
    return datetime.fromisoformat(body["now"])


async def balances(store: Store) -> dict[str, int]:
    """Each account's balance: the sum of its documents (docs/money.md "Hot accounts")."""
    found: Counter[str] = Counter()
    async for doc in store["accounts"].find({}):
        found[account_of(doc)] += doc.get("balance", 0)
    return dict(found)


async def check_books(store: Store, now: datetime) -> dict[str, int]:
    """Reconcile clean, no order left paid, no fen lost; the balances by account."""
    report = await reconcile(store.db, now)
    assert report.clean, report.text()
    left_paid = [o["_id"] async for o in store["orders"].find({"status": "paid"})]
    assert left_paid == [], "orders paid but neither fulfilled nor refunded"
    found = await balances(store)
    assert sum(found.values()) == 0, f"fen lost: the accounts sum to {sum(found.values())}"
    return found


async def advance(api: ApiClient, token: str, seconds: int) -> None:
    status, body = await api.post("/api/v1/dev/clock", {"advance": seconds}, token)
    assert status == 200, body


async def in_flight(call: Any) -> None:
    """A request the server dies in the middle of: it gets no answer."""
    try:
        status, body = await call
    except (OSError, tornado.httpclient.HTTPClientError):
        return
    assert status == 599, (status, body)



RATE = 100
FUNDS = 100_000


async def fund(store: Store, user_id: str, amount: int) -> None:
    """Money in through the real ledger code, as a provider payment would book it."""
    ledger = Ledger(types.SimpleNamespace(store=store, clock=Clock()))
    await ledger.post(f"test-topup:{uuid.uuid4().hex}",
                      [("external:test", -amount), (f"wallet:{user_id}", amount)], "top-up")


async def join_both(api: ApiClient, path: str, consultation_id: str,
                    tokens: list[str]) -> list[Any]:
    sockets = []
    for token in tokens:
        ws = await api.socket(token)
        reply = await ws.request("sub", ch=f"consult:{consultation_id}")
        assert reply["ok"] is True, reply
        sockets.append(ws)
    for _ in range(200):
        _, body = await api.get(path, tokens[0])
        if (all(body["present"].values()) and body["absent_since"] is None
                and body["status"] != "paused"):
            return sockets
        await asyncio.sleep(0.05)
    raise AssertionError(f"parties never both present: {body}")


async def minute_entries(store: Store, consultation_id: str) -> Counter:
    """How many ledger entries bill each minute of the consultation (by their meta)."""
    counted: Counter = Counter()
    async for entry in store["ledger"].find({"meta.consultation_id": consultation_id},
                                            {"_id": 1, "meta": 1}):
        minute = entry["meta"]["minute"]
        assert entry["_id"] == f"consult:{consultation_id}:{minute}", entry["_id"]
        counted[minute] += 1
    return counted


