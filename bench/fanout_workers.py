"""``workers:<n>`` of bench/fanout_server.py: a real ``kpay serve --workers n``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fanout_server import Server


class WorkersServer(Server):
    """A real ``kpay serve --workers n`` (docs/operations.md, "Workers") with the Redis
    broker, a redis-server of its own and the embedded database. Clients subscribe to
    ``user:bench``; events are published into Redis from this process (as another node
    would), so the CPU reported is the kpay processes' only: the supervisor and every
    worker, read from /proc."""

    channel = "user:bench"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    async def start(self) -> None:
        from kpay.core.realtime.redis_broker import RedisBroker

        redis_url = await asyncio.to_thread(self.launch)
        self.broker = RedisBroker(redis_url, 1000, 3600)
        await self.broker.start()

    def launch(self) -> str:
        """Start redis-server and kpay, wait until every worker answers, log in; the
        Redis URL. Blocking: run in a thread."""
        import subprocess

        from kpay.core.store import free_port

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("--workers needs redis-server (apt-get install redis-server)")
        self.folder = tempfile.mkdtemp(prefix="kpay-bench-workers-")
        redis_port, self.port = free_port(), free_port()
        self.redis = subprocess.Popen(
            [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        config = Path(self.folder) / "bench.toml"
        config.write_text(f"""
[server]
max_connections = 100000
[mongodb]
embedded_path = "{self.folder}/db"
[dev]
enabled = true
[plugins]
enabled = []
[scheduler]
enabled = false
[logging]
level = "WARNING"
[realtime]
broker = "redis"
redis_url = "{redis_url}"
max_sockets_per_user = 0
""")
        self.kpay = subprocess.Popen(
            [sys.executable, "-m", "kpay.cli", "--config", str(config), "serve",
             "--workers", str(self.workers), "--port", str(self.port)],
            env={**os.environ, "KPAY_VAR_DIR": self.folder}, stdout=subprocess.DEVNULL)
        nodes: set[str] = set()
        deadline = time.monotonic() + 120
        while len(nodes) < self.workers:
            if time.monotonic() > deadline or self.kpay.poll() is not None:
                raise RuntimeError(f"kpay serve --workers {self.workers} did not start")
            try:
                nodes.add(self.http("/healthz")["node"])
            except OSError:
                time.sleep(0.2)
        self.token = self.http("/api/v1/dev/login", {"user_id": "bench", "role": "student"})[
            "token"]
        return redis_url

    def http(self, path: str, body: dict | None = None) -> Any:
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            data = response.read()
        return json.loads(data) if path != "/metrics" else data.decode()

    def processes(self) -> list[int]:
        """The kpay processes: the one server, or the supervisor and its workers."""
        pids = [self.kpay.pid]
        if self.workers > 1:
            children = Path(f"/proc/{self.kpay.pid}/task/{self.kpay.pid}/children")
            for pid in children.read_text().split():
                if "kpay.core.workers" in Path(f"/proc/{pid}/cmdline").read_text():
                    pids.append(int(pid))
        return pids

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.processes():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def rss(self) -> int:
        return sum(int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                   for pid in self.processes()) * os.sysconf("SC_PAGE_SIZE")

    async def publish(self, seq: int) -> None:
        await self.broker.publish(self.channel, "tick", {"i": seq, "t": time.time()})

    def subscribers(self) -> int:
        """Sub frames received, summed over the workers by /metrics."""
        import re

        found = re.search(r'kpay_socket_frames_in_total\{op="sub"\} ([0-9.e+]+)',
                          self.http("/metrics"))
        return int(float(found.group(1))) if found else 0

    async def stop(self) -> None:
        await self.broker.stop()
        self.kpay.terminate()
        self.kpay.wait(60)
        self.redis.terminate()
        self.redis.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
