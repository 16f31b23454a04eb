"""pytest fixtures for kpay and its plugins (a pytest plugin, loaded through ``pytest11``).

Everything is real: a SecantusDB wire server process for the whole session (each test
gets its own database), the kpay app on a free port, HTTP and WebSocket clients.

    @pytest.mark.gen_test
    async def test_wallet(api):
        token = await api.login("alice", "student")
        status, body = await api.get("/api/v1/wallet", token=token)
        assert body["balance"] == 0

Override ``kpay_overrides`` (settings per section) or ``kpay_extra_plugins`` (plugin
objects to register besides the configured ones) in a test module to change the app.
Conveniences: ``student``, ``consultant`` and ``admin`` are logged-in clients
(``await student.post(path, body)``, ``await student.topup(5000)``, ``await
student.socket()``), ``clock`` moves the dev clock and runs due jobs
(``await clock.advance(60)``), ``assert_books_balanced(app)`` checks the ledger,
``FakeProvider`` (registered with ``FakeProviderPlugin``) stands in for a payment
system, and
``kpay.core.metrics.commands_since(db_commands())`` counts the database round trips of
a piece of code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kpay.core.app import KPay, load_settings
from kpay.core.clock import Clock, offset_to
from kpay.core.config import Settings
from kpay.core.plugins import PluginManager, available_plugins, select
from kpay.core.store import EmbeddedMongo, free_port
from kpay.testclients import ApiClient, DevClock, SocketClient, UserClient, wait_until
from kpay.testproviders import FakePayoutProvider, FakeProvider, FakeProviderPlugin

__all__ = ["ApiClient", "DevClock", "FakePayoutProvider", "FakeProvider", "FakeProviderPlugin",
           "SocketClient", "TestDeployment", "UserClient", "assert_books_balanced", "run_kpay",
           "wait_until"]

# Random-looking: with dev mode off, a padded secret ("...-" + "x" * 32) is refused.
TEST_SECRET = "kpay-test-secret-Qm7vT2xR9cLp4WzN8aHs3KdJ6fYb1UeG"


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """A SecantusDB server for the whole test session (or KPAY_TEST_MONGODB_URI)."""
    given = os.environ.get("KPAY_TEST_MONGODB_URI")
    if given:
        yield given
        return
    path = tempfile.mkdtemp(prefix="kpay-test-db-")
    server = EmbeddedMongo(path)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    """Settings to change for the app under test, by section. Override in a module."""
    return {}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    """``(name, plugin)`` pairs registered besides the configured plugins."""
    return []


#: The instant the app's clock reads when a test starts, unless the test or
#: ``KPAY_TEST_NOW`` says otherwise: a Monday morning in Beijing, mid-month.
DEFAULT_TEST_NOW = "2026-03-02T10:00:00+08:00"


def parse_instant(value: str, source: str = "KPAY_TEST_NOW") -> datetime:
    """An ISO 8601 date-time with an offset (``Z`` for UTC), as an aware datetime."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise pytest.UsageError(f"{source}={value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise pytest.UsageError(f"{source}={value!r} needs an offset, e.g. +08:00 or Z")
    return moment


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kpay_now(instant): start the app's clock at this ISO 8601 instant "
        "instead of KPAY_TEST_NOW (default " + DEFAULT_TEST_NOW + ")")
    config.pluginmanager.register(SkipLedger(), "kpay-skip-ledger")


def strict_skips() -> bool:
    """On CI (``CI=true``) a skipped test fails the run: a skip there hides a missing
    package, not a choice. ``KPAY_ALLOW_SKIPS=1`` lets a plugin's own CI opt out."""
    return (os.environ.get("CI", "").lower() in ("true", "1")
            and os.environ.get("KPAY_ALLOW_SKIPS", "") != "1")


class SkipLedger:
    """Counts skipped tests and their reasons for the end-of-run summary."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()

    def add(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        self.reasons[reason.removeprefix("Skipped: ")] += 1

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.add(report)

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.add(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.reasons and strict_skips() and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        total = sum(self.reasons.values())
        if not total:
            return
        verdict = (" (CI=true: a skipped test fails the run)" if strict_skips() else "")
        terminalreporter.write_sep("-", f"{total} tests skipped{verdict}")
        for reason, count in self.reasons.most_common():
            terminalreporter.write_line(f"{count:5d}  {reason}")


@pytest.fixture
def kpay_now(request: pytest.FixtureRequest) -> datetime:
    """The instant the app's clock reads when the test starts.

    ``@pytest.mark.kpay_now("2026-03-01T18:50:00Z")`` on a test, else the
    ``KPAY_TEST_NOW`` environment variable, else ``DEFAULT_TEST_NOW``. The clock then
    runs on from there (and ``clock.advance`` moves it); nothing in a test should read
    the wall clock to decide what to assert.
    """
    marker = request.node.get_closest_marker("kpay_now")
    if marker is not None:
        return parse_instant(marker.args[0], "kpay_now")
    return parse_instant(os.environ.get("KPAY_TEST_NOW") or DEFAULT_TEST_NOW)


class TestDeployment:
    """What every app of the test's deployment gets: ``settings``, the plugin manager
    ``pm``, ``var_dir`` and the pinned ``clock_offset``. Unpacks as
    ``settings, pm, var_dir``; ``new_app()`` builds another app (a restart, a second
    node) on the same database and pinned clock."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, settings: Settings, pm: PluginManager, var_dir: str,
                 clock_offset: float) -> None:
        self.settings, self.pm, self.var_dir = settings, pm, var_dir
        self.clock_offset = clock_offset

    def __iter__(self) -> Iterator[Any]:
        return iter((self.settings, self.pm, self.var_dir))

    def new_app(self, settings: Settings | None = None) -> KPay:
        """An app of this deployment, not started (``settings``: changed ones)."""
        settings = settings or self.settings
        app = KPay(settings, self.pm, settings.mongodb.uri, var_dir=self.var_dir,
                   clock=Clock(self.clock_offset))
        # Tests check what production only promises: a plugin uses only the
        # collections it declared (register_collections; docs/plugins.md).
        app.check_collections = True
        return app


@pytest.fixture
def kpay_settings(mongo_uri: str, kpay_overrides: dict, kpay_extra_plugins: list,
                  kpay_now: datetime, tmp_path: Any) -> TestDeployment:
    database = "t_" + uuid.uuid4().hex[:16]
    base: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "mongodb": {"uri": mongo_uri, "database": database},
        "auth": {"secret": TEST_SECRET},
        "dev": {"enabled": True},
        "scheduler": {"enabled": False},
        "plugins": {"enabled": ["*"]},
        # Request limits are off unless a test turns them on:
        # kpay_overrides {"limits": {"enabled": True, "write_burst": 2, ...}}.
        "limits": {"enabled": False},
    }
    for section, values in kpay_overrides.items():
        base.setdefault(section, {}).update(values)
    pm = PluginManager()
    pm.load(select(base["plugins"]["enabled"], available_plugins()))
    for name, plugin in kpay_extra_plugins:
        pm.add(plugin, name)
    pm.check()
    settings, pm = load_settings(None, overrides=base, pm=pm)
    return TestDeployment(settings, pm, str(tmp_path), offset_to(kpay_now))


@contextlib.contextmanager
def running_app(io_loop: Any, kpay_settings: TestDeployment) -> Iterator[KPay]:
    app = kpay_settings.new_app()
    io_loop.run_sync(app.start)
    try:
        yield app
    finally:
        io_loop.run_sync(app.stop)


@pytest.fixture
def kpay_app(io_loop: Any, kpay_settings: TestDeployment) -> Iterator[KPay]:
    """The running app (``app.port``), stopped and its database dropped after the test."""
    settings = kpay_settings.settings
    try:
        with running_app(io_loop, kpay_settings) as app:
            yield app
    finally:
        io_loop.run_sync(lambda: drop_database(settings.mongodb.uri, settings.mongodb.database))


@pytest.fixture
def second_node(io_loop: Any, kpay_settings: Any, kpay_app: KPay) -> Iterator[KPay]:
    """Another node of the same deployment: an app on the same database and broker
    (set ``[realtime] broker = "redis"`` for events to cross) under its own node id."""
    with running_app(io_loop, kpay_settings) as app:
        yield app


def drop_database_after_kill(uri: str, name: str) -> None:
    """Drop a database a SIGKILLed server used, from a test's teardown.

    The killed process may have left a transaction open. The database drops it only
    after its lifetime (60 s), and SecantusDB only while other transactions run;
    meanwhile a drop waits on the documents it holds, and holds up every other client
    of the session's database server. So every open transaction is aborted first:
    the killed server's, and nothing else runs at teardown."""
    import pymongo

    with pymongo.MongoClient(uri, socketTimeoutMS=30_000) as client:
        client.admin.command("killAllSessions", [])
        client.drop_database(name)


async def drop_database(uri: str, name: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(uri)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


async def run_kpay(app: KPay, directory: Any, *args: str,
                   timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the ``kpay`` command line (``kpay attention``, ``kpay user``, ...) against the
    test app's database and secret, as an operator would beside a running server;
    returns the finished process (``returncode``, ``stdout``, ``stderr``)."""
    settings = app.settings
    realtime = settings.realtime
    config = Path(directory) / "kpay-cli.toml"
    config.write_text(f'[mongodb]\nuri = "{settings.mongodb.uri}"\n'
                      f'database = "{settings.mongodb.database}"\n'
                      f'[auth]\nsecret = "{app.tokens.secret}"\n'
                      f'[realtime]\nbroker = "{realtime.broker}"\n'
                      f'redis_url = "{realtime.redis_url}"\n'
                      f'redis_prefix = "{realtime.redis_prefix}"\n'
                      '[dev]\nenabled = true\n[plugins]\nenabled = []\n')
    command = [sys.executable, "-m", "kpay.cli", "--config", str(config), *args]
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                   timeout=timeout)


async def assert_books_balanced(app: KPay) -> None:
    """Fail the test unless the books reconcile (``kpay reconcile`` on the test database)."""
    from kpay.core.money.reconcile import reconcile

    report = await reconcile(app.store.db, app.clock.now())
    assert report.clean, "the books do not reconcile:\n" + report.text()


@pytest.fixture
def api(kpay_app: KPay) -> ApiClient:
    """A JSON client for the running app: ``get``, ``post``, ``login``, ``socket``."""
    return ApiClient(kpay_app)


@pytest.fixture
def student(io_loop: Any, api: ApiClient) -> UserClient:
    """``alice``, logged in as a student."""
    return io_loop.run_sync(lambda: api.as_user("alice", "student"))


@pytest.fixture
def consultant(io_loop: Any, api: ApiClient) -> UserClient:
    """``carol``, logged in as a consultant."""
    return io_loop.run_sync(lambda: api.as_user("carol", "consultant"))


@pytest.fixture
def admin(io_loop: Any, api: ApiClient) -> UserClient:
    """``root``, logged in as an admin."""
    return io_loop.run_sync(lambda: api.as_user("root", "admin"))


@pytest.fixture
def clock(kpay_app: KPay) -> DevClock:
    """The dev clock of the running app: ``await clock.advance(seconds)`` runs due jobs."""
    return DevClock(kpay_app)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server process of the session's own, on a free port, without persistence.

    Skips the test when the ``redis-server`` binary is missing (``apt-get install
    redis-server``; CI installs it). Tests share it: give each its own key prefix.
    """
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with running_redis_server() as url:
        yield url


@contextlib.contextmanager
def running_redis_server() -> Iterator[str]:
    """Start redis-server on a free port without persistence; yields its URL (tests'
    ``redis_url`` and bench/cluster_routing.py)."""
    import socket
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    # redis-server does not start under libfaketime (CI runs some tests under a faked
    # wall clock): give it the real one.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "FAKETIME")}
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3 emulator (moto's server mode) for the whole session, on a free port:
    its URL, for ``[media] s3_endpoint_url``. Give each test its own bucket
    (:func:`make_bucket`). Needs the test extra's ``moto[server]``."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str, name: str, region: str = "us-east-1") -> None:
    """Create an S3 bucket on the emulator (boto3 comes with aioboto3 and moto)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=name)
