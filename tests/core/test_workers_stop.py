"""A supervisor told to stop while a worker is still starting (a database that does not
answer keeps a worker from ever listening): it stops at once rather than after the
worker's start times out, so a service manager's stop timeout never has to kill it
(docs/operations.md "Workers")."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

from tests.core.test_cli import KPAY, ROOT, clean_environ, free_port
from tests.core.test_workers import wait_for


def test_sigterm_while_a_worker_is_starting_stops_at_once(tmp_path, redis_url):
    config = tmp_path / "workers.toml"
    # Nothing listens on this port: each worker waits for the database (20 s here).
    config.write_text(f"""
[server]
workers = 2
shutdown_timeout_seconds = 2

[mongodb]
uri = "mongodb://127.0.0.1:{free_port()}/kpay?serverSelectionTimeoutMS=20000"

[dev]
enabled = true

[realtime]
broker = "redis"
redis_url = "{redis_url}"
redis_prefix = "tw{uuid.uuid4().hex[:8]}:"
""")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(KPAY), "--config", str(config), "serve", "--port",
                                    str(free_port())], cwd=ROOT, env=clean_environ(tmp_path),
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: log.read_text().count("started (pid") == 2, 60, "two workers")
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        told = time.monotonic()
        process.wait(30)
        # Without the fix it waits for the workers' 20 s database timeout; the bound
        # leaves room for a loaded machine (it failed once at 8 s in a full run).
        assert time.monotonic() - told < 12, log.read_text()
        assert process.returncode == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
