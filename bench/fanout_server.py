"""One fan-out server of bench/fanout.py, run in its own process.

    python bench/fanout_server.py hub|tornado|websockets|workers:<n>

It prints ``ready <port> <token>`` and then obeys lines on stdin:
``stats`` -> ``stats <subscribers> <cpu seconds> <rss bytes>`` (this process's own CPU
time and resident memory); ``publish <k>`` -> publishes k events to every subscriber,
one after another, and prints ``published <seconds it took>``; ``quit``.

Every event is ``{"op":"event","ch":"bench:all","seq":n,"type":"tick","data":{"i","t"}}``
with ``t`` the wall-clock time of the publish, so clients can measure latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHANNEL = "bench:all"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def event_text(seq: int) -> str:
    return json.dumps({"op": "event", "ch": CHANNEL, "seq": seq, "type": "tick",
                       "data": {"i": seq, "t": time.time()}}, separators=(",", ":"))


class Server:
    """What each kind of server provides to the command loop."""

    port = 0
    token = "-"

    async def start(self) -> None: ...

    async def publish(self, seq: int) -> None: ...

    def subscribers(self) -> int: ...

    async def stop(self) -> None: ...


class HubServer(Server):
    """The real kpay app (embedded dev database, no feature plugins) and its hub."""

    async def start(self) -> None:
        import types

        from kpay import hookimpl
        from kpay.core.app import KPay, load_settings
        from kpay.core.plugins import PluginManager
        from kpay.core.realtime.channels import ChannelRule
        from kpay.core.store import EmbeddedMongo

        @hookimpl
        def register_channels(app: Any) -> list[ChannelRule]:
            return [ChannelRule("bench", lambda app, user, ident: True)]

        self.db_dir = tempfile.mkdtemp(prefix="kpay-bench-db-")
        self.mongo = EmbeddedMongo(self.db_dir)
        uri = await asyncio.to_thread(self.mongo.start)
        pm = PluginManager()
        pm.add(types.SimpleNamespace(register_channels=register_channels), "bench")
        settings, pm = load_settings(None, pm=pm, overrides={
            "mongodb": {"uri": uri, "database": "bench"},
            "auth": {"secret": "bench-secret-R5mW9qZ2tK7xC4vN8bL1hJ6pF3dG0s"},
            "dev": {"enabled": False}, "scheduler": {"enabled": False},
            "plugins": {"enabled": []}, "logging": {"level": "WARNING"},
            # Every client socket is the one user "bench". No keep-alive pings: while
            # 10,000 sockets authenticate on a busy machine, a socket's pong is not read
            # until its open() is done, and the bench measures fan-out, not pings.
            "realtime": {"max_sockets_per_user": 0, "ping_interval_seconds": 0},
        })
        self.app = KPay(settings, pm, uri, var_dir=self.db_dir)
        self.port = await self.app.start(port=0, host="127.0.0.1")
        await self.app.users.ensure("bench", "student")
        self.token = self.app.tokens.issue("bench", "student")

    async def publish(self, seq: int) -> None:
        await self.app.publish(CHANNEL, "tick", {"i": seq, "t": time.time()})

    def subscribers(self) -> int:
        return len(self.app.hub.subscribers.get(CHANNEL, ()))

    async def stop(self) -> None:
        await self.app.stop()
        self.mongo.stop()
        shutil.rmtree(self.db_dir, ignore_errors=True)


class TornadoServer(Server):
    """Plain Tornado: a set of handlers and a write_message loop."""

    async def start(self) -> None:
        import tornado.httpserver
        import tornado.netutil
        import tornado.web
        import tornado.websocket

        self.handlers: set[Any] = set()
        handlers = self.handlers

        class Handler(tornado.websocket.WebSocketHandler):
            def open(self) -> None:
                handlers.add(self)

            def on_message(self, message: Any) -> None:
                pass

            def on_close(self) -> None:
                handlers.discard(self)

        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.server = tornado.httpserver.HTTPServer(
            tornado.web.Application([(r"/ws", Handler)]))
        self.server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    async def publish(self, seq: int) -> None:
        import tornado.websocket

        text = event_text(seq)
        for handler in tuple(self.handlers):
            try:
                handler.write_message(text)
            except tornado.websocket.WebSocketClosedError:
                pass

    def subscribers(self) -> int:
        return len(self.handlers)

    async def stop(self) -> None:
        self.server.stop()


class WebsocketsServer(Server):
    """The ``websockets`` library (asyncio implementation) and its broadcast()."""

    async def start(self) -> None:
        from websockets.asyncio.server import serve
        from websockets.exceptions import ConnectionClosed

        self.connections: set[Any] = set()

        async def handler(connection: Any) -> None:
            self.connections.add(connection)
            try:
                async for _ in connection:
                    pass
            except ConnectionClosed:
                pass  # the bench clients just drop their sockets at the end
            finally:
                self.connections.discard(connection)

        self.server = await serve(handler, "127.0.0.1", 0, compression=None,
                                  max_queue=None)
        self.port = next(iter(self.server.sockets)).getsockname()[1]

    async def publish(self, seq: int) -> None:
        from websockets.asyncio.server import broadcast

        broadcast(self.connections, event_text(seq))

    def subscribers(self) -> int:
        return len(self.connections)

    async def stop(self) -> None:
        self.server.close()


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


SERVERS = {"hub": HubServer, "tornado": TornadoServer, "websockets": WebsocketsServer}


def make_server(kind: str) -> Server:
    if kind.startswith("workers:"):
        return WorkersServer(int(kind.split(":", 1)[1]))
    return SERVERS[kind]()


async def serve(kind: str) -> None:
    server = make_server(kind)
    await server.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", server.port, server.token, getattr(server, "channel", CHANNEL), flush=True)
    seq = 0
    while line := (await reader.readline()).decode().split():
        if line[0] == "stats" and isinstance(server, WorkersServer):
            print("stats", server.subscribers(), server.cpu_seconds(), server.rss(), flush=True)
        elif line[0] == "stats":
            print("stats", server.subscribers(), time.process_time(), rss_bytes(), flush=True)
        elif line[0] == "publish":
            started = time.perf_counter()
            for _ in range(int(line[1])):
                seq += 1
                await server.publish(seq)
                # Let the loop breathe between events, as a real server between requests.
                await asyncio.sleep(0)
            # How long the server took to hand every event to the kernel.
            print("published", time.perf_counter() - started, flush=True)
        elif line[0] == "quit":
            break
    await server.stop()


if __name__ == "__main__":
    raise_fd_limit()
    asyncio.run(serve(sys.argv[1]))
