"""The clients of bench/fanout.py: many raw WebSocket connections in one process.

    python bench/fanout_client.py <port> <token> <connections> <events> <sample_every>

Each connection does the HTTP upgrade, sends one (masked) ``sub`` frame for
``bench:all`` and then counts event frames, answering pings. Every ``sample_every``-th
connection also decodes its events to measure latency (receive time minus the
publish time the event carries). Prints ``connected`` once all are up and, when every
connection has all ``events`` events, ``done <json>`` with the counts and the latencies
(with the number of the event each was measured on).
Raw sockets keep the client side cheap: the 2-core machine is shared with the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout_server import raise_fd_limit

SUB = json.dumps({"op": "sub", "ref": 1, "ch": "bench:all"}).encode()
EVENT_PREFIX = b'{"op":"event"'


def masked_frame(opcode: int, payload: bytes) -> bytes:
    # Clients must mask (RFC 6455 5.3); an all-zero mask key leaves the payload as it is.
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def whole_frames(buffer: bytes) -> Iterator[tuple[int, int, int]]:
    """(opcode, payload start, payload end) of each whole server frame (unmasked) at the
    front of ``buffer``; what follows the last end is an incomplete frame to keep."""
    offset, size = 0, len(buffer)
    while size - offset >= 2:
        length = buffer[offset + 1] & 0x7F
        start = offset + 2
        if length == 126:
            length = int.from_bytes(buffer[start:start + 2], "big")
            start += 2
        elif length == 127:
            length = int.from_bytes(buffer[start:start + 8], "big")
            start += 8
        if size < start + length:
            return
        yield buffer[offset] & 0x0F, start, start + length
        offset = start + length


def upgrade_request(port: int, query: str) -> bytes:
    """The HTTP request that opens ``/ws?<query>`` on the local server."""
    return (f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()


class Tally:
    def __init__(self, connections: int, events: int) -> None:
        self.expected = connections * events
        self.received = 0
        self.latencies: list[float] = []
        #: The event (its "i") each latency was measured on, in the same order.
        self.events: list[int] = []
        self.last_receive = 0.0
        self.finished = asyncio.get_running_loop().create_future()

    def count(self, n: int) -> None:
        self.received += n
        self.last_receive = time.time()
        if self.received >= self.expected and not self.finished.done():
            self.finished.set_result(None)


class BenchClient(asyncio.Protocol):
    def __init__(self, request: bytes, sample: bool, tally: Tally) -> None:
        self.request = request
        self.sample = sample
        self.tally = tally
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        # Closed before the upgrade (the server refused it): fail the run, do not hang.
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(buffer[:200].decode("latin-1")))
                return
            buffer = buffer[end + 4:]
            self.transport.write(masked_frame(0x1, SUB))
            self.upgraded.set_result(None)
        events = offset = 0
        for opcode, start, end in whole_frames(buffer):
            if opcode == 0x1 and buffer.startswith(EVENT_PREFIX, start):
                events += 1
                if self.sample:
                    data = json.loads(buffer[start:end])["data"]
                    self.tally.latencies.append(time.time() - data["t"])
                    self.tally.events.append(data["i"])
            elif opcode == 0x9:
                self.transport.write(masked_frame(0xA, buffer[start:end]))
            offset = end
        self.buffer = buffer[offset:]
        if events:
            self.tally.count(events)


async def run(port: int, token: str, connections: int, events: int, sample_every: int) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally(connections, events)
    request = upgrade_request(port, f"token={token}")
    # A few connects at a time: the listen backlog is 128.
    gate = asyncio.Semaphore(50)
    clients = []

    async def connect(index: int) -> None:
        async with gate:
            _, client = await loop.create_connection(
                lambda: BenchClient(request, index % sample_every == 0, tally),
                "127.0.0.1", port)
            await client.upgraded
            clients.append(client)

    await asyncio.gather(*(connect(i) for i in range(connections)))
    print("connected", flush=True)
    cpu = time.process_time()
    await tally.finished
    # This process's CPU from connected to the last event: what reading cost the
    # clients, which share the machine's cores with the server.
    print("done", json.dumps({"received": tally.received, "last": tally.last_receive,
                              "latencies": tally.latencies, "events": tally.events,
                              "cpu": time.process_time() - cpu}), flush=True)
    for client in clients:
        client.transport.close()


if __name__ == "__main__":
    raise_fd_limit()
    port, token, connections, events, sample = sys.argv[1:6]
    if len(sys.argv) > 6:  # the channel, when not bench:all (a kpay serve: user:bench)
        SUB = json.dumps({"op": "sub", "ref": 1, "ch": sys.argv[6]}).encode()
    asyncio.run(run(int(port), token, int(connections), int(events), int(sample)))
