"""Several worker processes on one port: ``kpay serve --workers N`` (docs/operations.md,
"Workers").

The supervisor (this process) binds the listening socket once and hands it to N worker
processes, each a whole kpay app (``python -m kpay.core.workers``) accepting from the
same socket: a pre-forked listener, as Tornado's ``fork_processes`` does, but each worker
a fresh interpreter, so nothing the supervisor imported or started (threads, the event
loop, metric values) is shared by accident. It

- starts the embedded development database once (no ``[mongodb] uri``) and gives the
  workers its URI: the database stays one process;
- gives the workers a fresh ``PROMETHEUS_MULTIPROC_DIR``, so ``/metrics`` on any of
  them sums all of them (prometheus_client's multiprocess mode); a dead worker's
  counts are folded into one file per type (``metrics.fold_exited_process``), so the
  folder does not grow with restarts;
- restarts a worker that dies, with a back-off (logged);
- on SIGTERM/SIGINT tells every worker to stop (each stops accepting, then waits up to
  ``[server] shutdown_timeout_seconds`` for the requests and jobs under way) and exits;
- on SIGHUP replaces the workers one at a time: the new one has said it is ready
  (a byte on a pipe, written once it listens) before the old one is told to stop.

Workers live in *slots*; the worker in slot i is node ``<node_id>/w<i>``. A slot holds
at most one live process, so presence and restart recovery (consult_billing's
"earlier selves") never mistake a running sibling for a dead predecessor. A restart
after a crash reuses the dead worker's slot (and so recovers what it left behind); a
graceful replacement starts the new worker in a free slot (there are N + 1) and frees
the old one's when it has exited.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kpay.core.digits import parse_digits
from kpay.core.errors import ConfigError

if TYPE_CHECKING:
    from kpay.core.config import Settings

log = logging.getLogger("kpay.workers")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
READY_TIMEOUT_SECONDS = 120.0
# A worker that lived this long before dying is restarted at once; quicker deaths in a
# row wait 1, 2, 4 ... seconds, at most MAX_BACKOFF_SECONDS.
STEADY_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 60.0


def worker_count(settings: Settings, requested: int | str | None = None) -> int:
    """How many workers to run: ``--workers`` if given, else ``[server] workers``;
    ``auto`` is one per core this process may use. More than one needs the Redis broker
    (an event published in one worker must reach sockets in the others): ConfigError."""
    wanted = settings.server.workers if requested is None else requested
    count = len(os.sched_getaffinity(0)) if wanted == "auto" else int(wanted)
    if count > 1 and settings.realtime.broker != "redis":
        raise ConfigError(
            f"[server] workers = {count} needs [realtime] broker = \"redis\" (each worker "
            "is a node; the memory broker reaches only its own sockets)")
    return count


def parse_workers(value: str) -> int | str:
    """``--workers``: a number from 1 to 256, or ``auto``."""
    if value == "auto":
        return value
    count = parse_digits(value)
    if count is None or not 1 <= count <= 256:
        raise argparse.ArgumentTypeError("a number from 1 to 256, or auto")
    return count


@dataclass
class Worker:
    slot: int
    process: subprocess.Popen
    started_at: float
    ready_fd: int  # the pipe's read end: b"1" once the worker listens


class Supervisor:
    """Runs ``count`` workers on one listening socket until SIGTERM or SIGINT."""

    def __init__(self, settings: Settings, config_path: str | None, count: int,
                 port: int | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.count = count
        self.port = settings.server.port if port is None else port
        self.workers: dict[int, Worker] = {}
        # slot -> when to start it again (time.monotonic()), after its worker died
        self.restarts: dict[int, float] = {}
        # slot -> its workers' quick deaths in a row (the back-off)
        self.failures: dict[int, int] = {}
        self.stopping = False
        self.replacing = False
        self.embedded_uri = ""
        self.sockets: list[socket.socket] = []
        self.metrics_dir = ""

    # -- the run -----------------------------------------------------------------------

    def run(self) -> int:
        import tornado.netutil

        from kpay.core.store import EmbeddedMongo

        # Bound once, here: every worker accepts from this socket (and a port in use
        # fails the start before anything else happens).
        self.sockets = tornado.netutil.bind_sockets(self.port, self.settings.server.host)
        port = self.sockets[0].getsockname()[1]
        embedded = None
        self.metrics_dir = tempfile.mkdtemp(prefix="kpay-metrics-")
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_replace)
        try:
            if not self.settings.mongodb.uri:
                mongo = self.settings.mongodb
                embedded = EmbeddedMongo(mongo.embedded_path, mongo.embedded_command)
                self.embedded_uri = embedded.start()
            for slot in range(self.count):
                self.workers[slot] = self._spawn(slot)
            for worker in list(self.workers.values()):
                if not self._wait_ready(worker):
                    if self.stopping:
                        return 0  # told to stop while it started
                    log.error("worker w%d did not start; stopping", worker.slot)
                    return 1
            log.info("kpay supervisor %d: %d workers on port %d", os.getpid(), self.count, port)
            while not self.stopping:
                self._reap()
                self._restart_due()
                if self.replacing:
                    self.replacing = False
                    self._replace_all()
                time.sleep(0.1)
            return 0
        finally:
            self._stop_all()
            for bound in self.sockets:
                bound.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            if embedded is not None:
                embedded.stop()

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_replace(self, signum: int, frame: object) -> None:
        self.replacing = True

    # -- workers -----------------------------------------------------------------------

    def _spawn(self, slot: int) -> Worker:
        from kpay.core.store import die_with_parent

        ready_read, ready_write = os.pipe()
        fds = [bound.fileno() for bound in self.sockets]
        command = [sys.executable, "-m", "kpay.core.workers", "--slot", str(slot),
                   "--fds", ",".join(map(str, fds)), "--ready", str(ready_write)]
        if self.embedded_uri:
            # Only the embedded database's URI (no password) goes on the command line,
            # where ps shows it; a configured one is read from the config by the worker.
            command += ["--embedded-uri", self.embedded_uri]
        if self.config_path:
            command += ["--config", self.config_path]
        env = {**os.environ, MULTIPROC_ENV: self.metrics_dir}
        try:
            process = subprocess.Popen(command, pass_fds=(*fds, ready_write), env=env,
                                       preexec_fn=die_with_parent)
        finally:
            os.close(ready_write)
        worker = Worker(slot, process, time.monotonic(), ready_read)
        log.info("worker w%d started (pid %d)", slot, process.pid)
        return worker

    def _wait_ready(self, worker: Worker, timeout: float = READY_TIMEOUT_SECONDS) -> bool:
        """True once the worker listens; False if it exits, stays silent too long, or
        the supervisor is told to stop meanwhile. Waited in short slices: select()
        resumes after a signal (PEP 475), and a SIGTERM must not wait for a worker
        stuck starting (a database that does not answer) until a service manager's
        stop timeout kills everything, requests under way included."""
        fd = worker.ready_fd
        deadline = time.monotonic() + timeout
        try:
            while not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([fd], [], [], min(left, 0.2))
                if readable:
                    return os.read(fd, 1) == b"1"
            return False
        finally:
            os.close(fd)

    def _reap(self) -> None:
        """Mark dead workers and plan their restart, with a back-off for quick deaths."""
        from kpay.core.metrics import fold_exited_process

        for slot, worker in list(self.workers.items()):
            status = worker.process.poll()
            if status is None:
                continue
            del self.workers[slot]
            fold_exited_process(worker.process.pid, self.metrics_dir)
            lived = time.monotonic() - worker.started_at
            quick = 0 if lived >= STEADY_SECONDS else self.failures.get(slot, 0) + 1
            self.failures[slot] = quick
            delay = 0.0 if quick == 0 else min(MAX_BACKOFF_SECONDS, 2.0 ** (quick - 1))
            log.warning("worker w%d (pid %d) exited with status %s after %.0fs; "
                        "restarting in %.0fs", slot, worker.process.pid, status, lived, delay)
            self.restarts[slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, due in list(self.restarts.items()):
            if due <= now and slot not in self.workers:
                del self.restarts[slot]
                worker = self._spawn(slot)
                self.workers[slot] = worker
                if not self._wait_ready(worker):
                    log.error("restarted worker w%d did not become ready", slot)

    def _replace_all(self) -> None:
        """SIGHUP: each worker in turn is replaced by a new one in a free slot, which
        must be ready before the old one is told to stop. A new worker that fails to
        start stops the replacement: the old ones go on serving."""
        log.info("replacing %d workers one at a time", len(self.workers))
        for old in sorted(self.workers.values(), key=lambda w: w.slot):
            if self.stopping:
                return
            # N + 1 slots: one is always free (a slot waiting for a restart is taken).
            taken = set(self.workers) | set(self.restarts)
            slot = min(s for s in range(self.count + 1) if s not in taken)
            new = self._spawn(slot)
            self.workers[slot] = new
            if not self._wait_ready(new):
                log.error("new worker w%d did not become ready: replacement stopped, the "
                          "old workers go on", slot)
                self._stop(new)
                del self.workers[slot]
                return
            self._stop(old)
            del self.workers[old.slot]
        log.info("workers replaced")

    def _stop(self, worker: Worker) -> None:
        """SIGTERM, then SIGKILL if it outlives its shutdown timeout (plus margin)."""
        from kpay.core.metrics import fold_exited_process

        worker.process.terminate()
        grace = self.settings.server.shutdown_timeout_seconds + 10.0
        try:
            worker.process.wait(grace)
        except subprocess.TimeoutExpired:
            log.error("worker w%d (pid %d) still running %.0fs after SIGTERM: killed",
                      worker.slot, worker.process.pid, grace)
            worker.process.kill()
            worker.process.wait()
        fold_exited_process(worker.process.pid, self.metrics_dir)
        log.info("worker w%d (pid %d) stopped", worker.slot, worker.process.pid)

    def _stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in list(self.workers.values()):
            self._stop(worker)
        self.workers.clear()


def run_worker(argv: list[str] | None = None) -> None:
    """One worker: a kpay app serving on the supervisor's listening sockets."""
    parser = argparse.ArgumentParser(prog="kpay worker")
    parser.add_argument("--config", default=None)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--fds", required=True, help="listening sockets, comma-separated")
    parser.add_argument("--ready", type=int, required=True, help="pipe to write b'1' to")
    parser.add_argument("--embedded-uri", default="")
    args = parser.parse_args(argv)

    from kpay.core.app import load_settings
    from kpay.core.logs import configure_logging
    from kpay.core.serving import serve

    overrides = {"mongodb": {"uri": args.embedded_uri}} if args.embedded_uri else None
    settings, pm = load_settings(args.config, overrides=overrides)
    configure_logging(settings.logging.level)
    sockets = [socket.socket(fileno=int(fd)) for fd in args.fds.split(",")]

    def started() -> None:
        os.write(args.ready, b"1")
        os.close(args.ready)

    asyncio.run(serve(settings, pm, settings.mongodb.uri, None, sockets, args.slot, started))


if __name__ == "__main__":
    run_worker()
