"""``bench/loadtest.py --start-server``: a dev server (as ``make run`` starts it) on a
scratch folder, for the run only, and the CPU time it and its database used.

The server is ``server.py --config config/default.toml`` with ``KPAY_VAR_DIR`` and the
embedded database in a temporary folder, removed afterwards, so the run leaves nothing
in ``var/``; the server's log is kept (its path is printed). One change to the config:
``[limits] login_burst`` is raised, because the load test's users all log in from this
one address and the login limit is per client IP (docs/configuration.md, "Limits");
every per-user limit stays as configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from tornado.httpclient import AsyncHTTPClient

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0  # seconds: the embedded database starts first


class DevServer:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.url = process, f"http://127.0.0.1:{port}"

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) of the kpay process and of its children (the
        embedded database), read from /proc."""
        kpay = process_cpu(self.process.pid)
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        return {"kpay": kpay, "database": sum(process_cpu(int(pid)) for pid in pids)}


def process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of proc(5), utime and stime, in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_log() -> BinaryIO:
    """A new file in the temporary directory; closed when the server has stopped."""
    handle, path = tempfile.mkstemp(prefix="kpay-loadtest-", suffix=".log")
    os.close(handle)
    return Path(path).open("wb")


def log_tail(path: Path) -> str:
    return path.read_bytes()[-3000:].decode(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.asynccontextmanager
async def dev_server(login_burst: int) -> AsyncIterator[DevServer]:
    folder = tempfile.mkdtemp(prefix="kpay-loadtest-")
    port = free_port()
    env = {**os.environ, "KPAY_VAR_DIR": folder,
           "KPAY_MONGODB__EMBEDDED_PATH": str(Path(folder, "db")),
           "KPAY_LIMITS__LOGIN_BURST": str(login_burst), "KPAY_LOGGING__LEVEL": "WARNING"}
    log = open_log()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "server.py"), "--config", str(ROOT / "config/default.toml"),
        "--port", str(port), cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)  # Ctrl-C stops the load test, which then stops the server
    server = DevServer(process, port)
    print(f"started a dev server at {server.url} (its log, kept: {log.name})",
          file=sys.stderr, flush=True)
    try:
        try:
            await wait_healthy(server)
        except SystemExit:
            log.flush()
            print(log_tail(Path(log.name)), file=sys.stderr)
            raise
        yield server
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


async def wait_healthy(server: DevServer) -> None:
    http = AsyncHTTPClient(force_instance=True)
    try:
        for _ in range(int(START_TIMEOUT * 4)):
            if server.process.returncode is not None:
                raise SystemExit(f"the dev server exited with {server.process.returncode}")
            try:
                response = await http.fetch(f"{server.url}/healthz", raise_error=False)
                if response.code == 200:
                    return
            except OSError:
                pass  # not listening yet
            await asyncio.sleep(0.25)
        raise SystemExit(f"the dev server did not answer /healthz in {START_TIMEOUT:g} s")
    finally:
        http.close()
