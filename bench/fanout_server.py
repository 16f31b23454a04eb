"""One fan-out server of bench/fanout.py, run in its own process.

    python bench/fanout_server.py hub|hub-nagle|tornado|websockets|workers:<n> [ping s]

It prints ``ready <port> <token>`` and then obeys lines on stdin:
``stats`` -> ``stats <subscribers> <cpu seconds> <rss bytes>`` (this process's own CPU
time and resident memory); ``publish <k> <ms>`` -> publishes k events to every
subscriber, one after another (one every ms milliseconds if not 0), and prints
``published <json>`` (the seconds it took, each pass's duration, the gaps between passes
and the garbage collector's pauses); ``quit``.

Every event is ``{"op":"event","ch":"bench:all","seq":n,"type":"tick","data":{"i","t"}}``
with ``t`` the wall-clock time of the publish, so clients can measure latency.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import shutil
import statistics
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
    #: Seconds between keep-alive pings of every socket, 0 for none (``workers:<n>``
    #: keeps its configuration's).
    ping = 0.0

    async def start(self) -> None: ...

    def before_publishing(self) -> None:
        """Called once every socket has subscribed, just before the events go out."""

    async def publish(self, seq: int) -> None: ...

    def subscribers(self) -> int: ...

    def cpu_seconds(self) -> float:
        """The server's CPU time so far (user + system): this process's."""
        return time.process_time()

    def rss(self) -> int:
        """The server's resident memory in bytes: this process's."""
        return rss_bytes()

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
            # Every client socket is the one user "bench". Keep-alive pings only with
            # --ping: the bench measures fan-out.
            "realtime": {"max_sockets_per_user": 0, "ping_interval_seconds": self.ping},
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


class HubNagleServer(HubServer):
    """The hub with Nagle's algorithm on, as every hub socket had it before TCP_NODELAY
    was set in ``SocketHandler.open`` (docs/performance.md, "What makes p99"): for a
    before/after in one run."""

    def before_publishing(self) -> None:
        import socket

        for handler in self.app.sockets:
            handler.stream.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)


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
        self.server = tornado.httpserver.HTTPServer(tornado.web.Application(
            [(r"/ws", Handler)], websocket_ping_interval=self.ping or None))
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

        # Keep-alive pings only with --ping, as in the hub (websockets pings every 20 s
        # by default): the bench measures fan-out.
        self.server = await serve(handler, "127.0.0.1", 0, compression=None,
                                  max_queue=None, ping_interval=self.ping or None)
        self.port = next(iter(self.server.sockets)).getsockname()[1]

    async def publish(self, seq: int) -> None:
        from websockets.asyncio.server import broadcast

        broadcast(self.connections, event_text(seq))

    def subscribers(self) -> int:
        return len(self.connections)

    async def stop(self) -> None:
        self.server.close()


SERVERS = {"hub": HubServer, "hub-nagle": HubNagleServer, "tornado": TornadoServer,
           "websockets": WebsocketsServer}


def make_server(kind: str, ping: float) -> Server:
    if kind.startswith("workers:"):
        from fanout_workers import WorkersServer

        return WorkersServer(int(kind.split(":", 1)[1]))
    server = SERVERS[kind]()
    server.ping = ping
    return server


class GcPauses:
    """Every collection of the garbage collector while installed: (generation, s)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self.started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self.observe)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self.observe)

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self.started))


async def publish(server: Server, seq: int, events: int, interval: float) -> int:
    """Publish ``events`` events one after another (one every ``interval`` seconds on a
    fixed schedule when it is not 0; an event late for its slot goes at once); print
    ``published <json>``: how long it took to hand them all to the kernel, and where
    that time went in this process.

    Delivery is synchronous in the in-process servers (hub, tornado, websockets): one
    ``server.publish`` is one pass over every socket, so its duration is the pass's.
    The gaps between passes are the loop's other work (the ``sleep(0)``); the garbage
    collector's pauses are timed through ``gc.callbacks``. (For ``workers:<n>`` a
    publish only hands the event to Redis: the passes happen in the workers.)
    """
    server.before_publishing()
    passes, gaps = [], []
    started = last = time.perf_counter()
    with GcPauses() as collections:
        for _ in range(events):
            seq += 1
            before = time.perf_counter()
            gaps.append(before - last)
            await server.publish(seq)
            last = time.perf_counter()
            passes.append(last - before)
            # Let the loop breathe between events, as a real server between requests.
            await asyncio.sleep(max(started + len(passes) * interval - last, 0))
    seconds = time.perf_counter() - started
    pauses = [pause for _, pause in collections.pauses]
    print("published", json.dumps({
        "seconds": seconds, "first_event": seq - events + 1,
        "passes_ms": [duration * 1000 for duration in passes],
        "pass_ms_p50": statistics.median(passes) * 1000, "pass_ms_max": max(passes) * 1000,
        "gap_ms_max": max(gaps[1:], default=0) * 1000,
        "gc_count": len(pauses), "gc_ms": sum(pauses) * 1000,
        "gc_ms_max": max(pauses, default=0) * 1000,
        "gc_full": sum(1 for generation, _ in collections.pauses if generation == 2),
    }), flush=True)
    return seq


async def serve(kind: str, ping: float) -> None:
    server = make_server(kind, ping)
    await server.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", server.port, server.token, getattr(server, "channel", CHANNEL), flush=True)
    seq = 0
    while line := (await reader.readline()).decode().split():
        if line[0] == "stats":
            print("stats", server.subscribers(), server.cpu_seconds(), server.rss(), flush=True)
        elif line[0] == "publish":
            seq = await publish(server, seq, int(line[1]), float(line[2]) / 1000)
        elif line[0] == "quit":
            break
    await server.stop()


if __name__ == "__main__":
    raise_fd_limit()
    asyncio.run(serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
