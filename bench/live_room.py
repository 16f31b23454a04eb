"""Benchmark: one live room with many ticket holders on sockets; the host sends messages.

    .venv/bin/python bench/live_room.py [--students 2000] [--messages 100] [--timeout 300]

Two servers, each in its own process on 127.0.0.1, measured by the same clients in
this process, one after the other:

- ``live``: the real kpay app with the live_qa plugin (embedded SecantusDB). A room is
  set up through the real code paths (rooms.create/start, free ``live_ticket`` orders
  for the first 20 students, the rest written in bulk as those orders leave them);
  every student subscribes to ``room:<id>`` with its own token; the host publishes
  ``{"op":"pub","type":"message"}`` frames, each checked by the channel rule, kept in
  the replay collection and fanned out by the hub.
- ``baseline``: a bare Tornado server with a ``write_message`` loop over the same
  number of sockets (no auth, no checks, no storage): the core fan-out floor.

The host sends its messages one after another, each after the previous reply. Each
message carries its send time; every 10th student decodes its events to measure the
latency (receive time minus send time, one clock: same process). Reported:
deliveries per second (students x messages / (last receive - first send)), the
server process's own CPU time per delivery over the send phase (less sensitive to a
busy machine; the live server's database runs in a third process, not counted) and
latency percentiles. The socket rate limit is raised for the run (the default 20
frames/s per socket would pace the host, which is not what is measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout_client import (  # noqa: E402 (bench/ is on the path now)
    Tally,
    masked_frame,
    upgrade_request,
    whole_frames,
)

SECRET = "bench-live-room-secret-N4vR8kT2qW6zL0pX5cJ9hF3m"  # random-looking: dev is off
SAMPLE_EVERY = 10
MESSAGE_MARK = b'"type":"message"'


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------
# Servers (run as child processes: `live_room.py --serve live|baseline`)
# ---------------------------------------------------------------------------


async def serve_live() -> None:
    """The kpay app with live_qa; stdin commands: ``setup <n>``, ``quit``."""
    from kpay.core.app import KPay, load_settings
    from kpay.core.auth import User
    from kpay.core.store import EmbeddedMongo
    from plugins.live_qa import rooms

    db_dir = tempfile.mkdtemp(prefix="kpay-bench-live-")
    mongo = EmbeddedMongo(db_dir)
    uri = await asyncio.to_thread(mongo.start)
    settings, pm = load_settings(None, overrides={
        "server": {"host": "127.0.0.1"},
        "mongodb": {"uri": uri, "database": "bench"},
        "auth": {"secret": SECRET}, "dev": {"enabled": False},
        "scheduler": {"enabled": False}, "plugins": {"enabled": ["live_qa"]},
        "logging": {"level": "WARNING"},
        "realtime": {"rate_per_second": 10_000.0, "rate_burst": 10_000},
        "live_qa": {"max_capacity": 1_000_000},
    })
    app = KPay(settings, pm, uri, var_dir=db_dir)
    port = await app.start(port=0, host="127.0.0.1")
    print("ready", port, flush=True)
    try:
        async for command in stdin_lines():
            if command[0] == "setup":
                students = int(command[1])
                host = User("host", "consultant")
                room = await rooms.create(app, host, rooms.RoomCreate(
                    title="bench", ticket_price=0, capacity=students))
                room = await rooms.start(app, room, host)
                started = time.perf_counter()
                await add_ticket_holders(app, room["_id"], students)
                print("room", room["_id"], f"{time.perf_counter() - started:.1f}", flush=True)
            elif command[0] == "stats":
                kept = await app.store["live_messages"].count_documents({"type": "message"})
                print("stats", kept, time.process_time(), flush=True)
            elif command[0] == "quit":
                break
    finally:
        await app.stop()
        mongo.stop()


async def add_ticket_holders(app: Any, room_id: str, students: int) -> None:
    """Ticket holders s0..s<n-1>. The first few buy through the real order path; the
    rest are written in bulk, as that path would leave them (it takes ~60 ms an order
    on the embedded development database, minutes for thousands, and is not what
    this benchmark measures: the tests cover it)."""
    from pymongo import UpdateOne

    from kpay.core.auth import User
    from kpay.core.money.providers import RequestInfo
    from plugins.live_qa import rooms
    from plugins.live_qa.store import TICKETS

    through_orders = min(students, 20)
    for n in range(through_orders):
        await app.money.orders.create(User(f"s{n}", "student"),
                                      {"kind": "live_ticket", "room_id": room_id}, "wallet",
                                      RequestInfo(client_ip="127.0.0.1"))
    now = app.clock.now()
    bulk = [{"_id": rooms.ticket_id(room_id, f"s{n}"), "room_id": room_id, "user_id": f"s{n}",
             "order_id": f"bench{n}", "status": "active", "muted": False, "created_at": now}
            for n in range(through_orders, students)]
    # Every socket authenticates as a stored user (kpay/core/users.py).
    await app.store["users"].bulk_write(
        [UpdateOne({"_id": user_id}, {"$setOnInsert": {"role": role, "name": user_id}},
                   upsert=True)
         for user_id, role in [*((f"s{n}", "student") for n in range(students)),
                               ("host", "consultant")]])
    if bulk:
        # They take no seat (the room's count is not what this benchmark reads).
        await app.store[TICKETS].insert_many(bulk)


async def serve_baseline() -> None:
    """Bare Tornado: students are kept in a set; each host frame is written to all of
    them with write_message, then answered."""
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    import tornado.websocket

    students: set[Any] = set()
    seq = 0

    class Handler(tornado.websocket.WebSocketHandler):
        def open(self) -> None:
            self.is_host = self.get_query_argument("role", "") == "host"

        def on_message(self, message: Any) -> None:
            nonlocal seq
            frame = json.loads(message)
            if frame.get("op") == "sub":
                students.add(self)
            elif frame.get("op") == "pub" and self.is_host:
                seq += 1
                text = json.dumps({"op": "event", "ch": frame["ch"], "seq": seq,
                                   "type": "message", "data": frame["data"]},
                                  ensure_ascii=False, separators=(",", ":"))
                for student in tuple(students):
                    try:
                        student.write_message(text)
                    except tornado.websocket.WebSocketClosedError:
                        students.discard(student)
            self.write_message(json.dumps({"op": "reply", "ref": frame.get("ref"), "ok": True},
                                          separators=(",", ":")))

        def on_close(self) -> None:
            students.discard(self)

    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/ws", Handler)]))
    server.add_sockets(sockets)
    print("ready", sockets[0].getsockname()[1], flush=True)
    async for command in stdin_lines():
        if command[0] == "setup":
            print("room baseline 0", flush=True)
        elif command[0] == "stats":
            print("stats", seq, time.process_time(), flush=True)
        elif command[0] == "quit":
            break
    server.stop()


async def stdin_lines() -> Any:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        yield line


# ---------------------------------------------------------------------------
# Clients (this process): raw sockets keep the client side cheap on 2 cores
# ---------------------------------------------------------------------------


class Student(asyncio.Protocol):
    """One ticket holder: upgrade, subscribe, then count message events."""

    def __init__(self, request: bytes, sub: bytes, sample: bool, tally: Tally) -> None:
        self.request, self.sub, self.sample, self.tally = request, sub, sample, tally
        self.buffer = b""
        self.upgraded = False
        self.subscribed = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.subscribed.set_exception(ConnectionError(buffer[:200].decode("latin-1")))
                return
            self.upgraded = True
            buffer = buffer[end + 4:]
            self.transport.write(masked_frame(0x1, self.sub))
        messages = offset = 0
        for opcode, start, end in whole_frames(buffer):
            payload = buffer[start:end]
            if opcode == 0x1 and MESSAGE_MARK in payload:
                messages += 1
                if self.sample:
                    sent = float(json.loads(payload)["data"]["text"].split(":", 1)[1])
                    self.tally.latencies.append(time.time() - sent)
            elif opcode == 0x1 and b'"op":"reply"' in payload and not self.subscribed.done():
                ok = b'"ok":true' in payload
                self.subscribed.set_result(ok) if ok else self.subscribed.set_exception(
                    ConnectionError(payload.decode()))
            elif opcode == 0x9:
                self.transport.write(masked_frame(0xA, payload))
            offset = end
        self.buffer = buffer[offset:]
        if messages:
            self.tally.count(messages)


def token_for(user_id: str, role: str) -> str:
    from kpay.core.auth import TokenService
    from kpay.core.clock import Clock
    from kpay.core.config import AuthSettings

    return TokenService(AuthSettings(secret=SECRET), SECRET, Clock()).issue(user_id, role)


async def measure(kind: str, students: int, messages: int) -> dict[str, Any]:
    import tornado.websocket

    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", kind, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, cwd=str(ROOT))
    clients: list[Student] = []
    try:
        port = int((await read_reply(server, "ready"))[1])
        server.stdin.write(f"setup {students}\n".encode())
        room_line = await read_reply(server, "room")
        room_id, setup_seconds = room_line[1], float(room_line[2])
        channel = f"room:{room_id}"
        sub = json.dumps({"op": "sub", "ref": 1, "ch": channel}).encode()
        tally = Tally(students, messages)
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(50)  # the listen backlog is 128

        async def join(n: int) -> None:
            query = f"token={token_for(f's{n}', 'student')}" if kind == "live" else "role=s"
            async with gate:
                _, client = await loop.create_connection(
                    lambda: Student(upgrade_request(port, query), sub, n % SAMPLE_EVERY == 0,
                                    tally), "127.0.0.1", port)
                await client.subscribed
            clients.append(client)

        started = time.perf_counter()
        await asyncio.gather(*(join(n) for n in range(students)))
        join_seconds = time.perf_counter() - started
        await asyncio.sleep(1.5)  # let the last presence count go out before measuring

        query = f"token={token_for('host', 'consultant')}" if kind == "live" else "role=host"
        host = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/ws?{query}")
        server.stdin.write(b"stats\n")
        cpu_before = float((await read_reply(server, "stats"))[2])
        first_send = time.time()
        for ref in range(1, messages + 1):
            await host.write_message(json.dumps({
                "op": "pub", "ref": ref, "ch": channel, "type": "message",
                "data": {"text": f"t:{time.time():.6f}"}}))
            while True:
                reply = json.loads(await host.read_message())
                if reply.get("op") == "reply" and reply.get("ref") == ref:
                    assert reply["ok"], reply
                    break
        await tally.finished
        host.close()
        server.stdin.write(b"stats\n")
        stats = await read_reply(server, "stats")
        kept, cpu = int(stats[1]), float(stats[2]) - cpu_before
        elapsed = tally.last_receive - first_send
        latencies = sorted(tally.latencies)
        return {
            "server": kind, "students": students, "messages": messages,
            "deliveries": tally.received, "kept_messages": kept if kind == "live" else None,
            "setup_seconds": setup_seconds, "join_seconds": round(join_seconds, 2),
            "seconds": round(elapsed, 3),
            "deliveries_per_second": round(tally.received / elapsed),
            "server_cpu_us_per_delivery": round(cpu / tally.received * 1e6, 2),
            "latency_ms": {name: round(value * 1000, 1) for name, value in (
                ("p50", statistics.median(latencies)),
                ("p99", latencies[int(len(latencies) * 0.99) - 1]),
                ("max", latencies[-1]))},
            "latency_samples": len(latencies),
        }
    finally:
        for client in clients:
            client.transport.close()
        if server.returncode is None:
            server.stdin.write(b"quit\n")
            try:
                await asyncio.wait_for(server.wait(), 30)
            except TimeoutError:
                server.kill()
                await server.wait()


async def read_reply(process: Any, word: str) -> list[str]:
    while True:
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited before saying {word!r}")
        parts = line.decode().split()
        if parts and parts[0] == word:
            return parts


async def main(students: int, messages: int, timeout: float) -> None:
    results = []
    for kind in ("live", "baseline"):
        result = await asyncio.wait_for(measure(kind, students, messages), timeout)
        results.append(result)
        print(json.dumps(result), flush=True)
    print()
    print("| server | sockets | messages | deliveries/s | server CPU µs/delivery "
          "| p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        lat = r["latency_ms"]
        print(f"| {r['server']} | {r['students']} | {r['messages']} | "
              f"{r['deliveries_per_second']:,} | {r['server_cpu_us_per_delivery']} | "
              f"{lat['p50']} | {lat['p99']} | {lat['max']} |")


if __name__ == "__main__":
    raise_fd_limit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=("live", "baseline"))
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds allowed per server run")
    args = parser.parse_args()
    if args.serve == "live":
        asyncio.run(serve_live())
    elif args.serve == "baseline":
        asyncio.run(serve_baseline())
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        asyncio.run(main(args.students, args.messages, args.timeout))
