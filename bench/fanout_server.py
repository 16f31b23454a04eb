"""One fan-out server of bench/fanout.py, run in its own process.

    python bench/fanout_server.py hub|tornado|websockets

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


SERVERS = {"hub": HubServer, "tornado": TornadoServer, "websockets": WebsocketsServer}


async def serve(kind: str) -> None:
    server = SERVERS[kind]()
    await server.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", server.port, server.token, flush=True)
    seq = 0
    while line := (await reader.readline()).decode().split():
        if line[0] == "stats":
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
