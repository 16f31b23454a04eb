"""Frames for a backed-up socket are coalesced into one write (docs/performance.md,
"Hub fan-out"): a real server, raw clients that read when the test says so."""

from __future__ import annotations

import asyncio
import json
import socket
import types

import pytest

from kpay import hookimpl
from kpay.core.realtime.channels import ChannelRule
from kpay.testing import wait_until
from tests.core.test_socket import raw_socket

CLOSE = 0x8


@hookimpl
def register_channels(app):
    return [ChannelRule("test", lambda app, user, ident: True)]


@pytest.fixture
def kpay_extra_plugins():
    return [("test_channels", types.SimpleNamespace(register_channels=register_channels))]


@pytest.fixture
def kpay_overrides():
    return {"plugins": {"enabled": []}}


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(opcode, payload) of each whole unmasked frame in ``data``, and what is left."""
    frames, offset = [], 0
    while len(data) - offset >= 2:
        length, start = data[offset + 1] & 0x7F, offset + 2
        if length == 126:
            length, start = int.from_bytes(data[start:start + 2], "big"), start + 2
        elif length == 127:
            length, start = int.from_bytes(data[start:start + 8], "big"), start + 8
        if len(data) < start + length:
            break
        frames.append((data[offset] & 0x0F, data[start:start + length]))
        offset = start + length
    return frames, data[offset:]


async def subscribed(kpay_app, api, user: str, channel: str) -> tuple[socket.socket, object]:
    """A raw client on ``channel`` that has read its sub reply, and its server handler."""
    sock = await raw_socket(kpay_app.port, await api.login(user), channel)
    await wait_until(lambda: kpay_app.hub.is_present(channel, user))
    (handler,) = [s for s in kpay_app.sockets if s.user_id == user]
    # A small kernel send buffer: a burst backs up at once, as a slow phone's would.
    handler.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    loop = asyncio.get_running_loop()
    received = b""
    while not server_frames(received)[0]:
        received += await loop.sock_recv(sock, 65536)
    return sock, handler


def count_writes(handler) -> list[int]:
    """Record the size of every IOStream.write of this socket's stream."""
    sizes: list[int] = []
    write = handler.stream.write

    def counting(data):
        sizes.append(len(data))
        return write(data)

    handler.stream.write = counting
    return sizes


async def read_until_close(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Every frame up to the end of the connection (answering the server's close)."""
    loop = asyncio.get_running_loop()
    frames: list[tuple[int, bytes]] = []
    rest, answered = b"", False
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
        got, rest = server_frames(rest + chunk)
        frames += got
        if not answered and any(op == CLOSE for op, _ in got):
            answered = True
            # A client frame is masked; an all-zero mask leaves the payload as it is.
            await loop.sock_sendall(sock, bytes([0x88, 0x82]) + b"\0\0\0\0" + b"\x03\xe8")
    assert rest == b""
    return frames


def events(frames: list[tuple[int, bytes]]) -> list[int]:
    return [json.loads(payload)["data"]["i"] for op, payload in frames if op == 0x1]


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_reaches_a_slow_reader_complete_in_order_in_few_writes(api, kpay_app):
    sock, handler = await subscribed(kpay_app, api, "slow", "test:burst")
    writes = count_writes(handler)
    text = "x" * 2_000
    # 300 events of ~2 KB in one loop iteration (~600 KB, under the 1 MiB bound), to a
    # client that reads nothing yet: the kernel fills up after the first few.
    for i in range(300):
        await kpay_app.publish("test:burst", "chunk", {"i": i, "text": text})
    assert handler.outbound_bytes() > 0, "the kernel took the whole burst: nothing to test"
    loop = asyncio.get_running_loop()
    received, frames = b"", []
    while len(events(frames)) < 300:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        got, received = server_frames(received + chunk)
        frames += got
    assert events(frames) == list(range(300))
    # One write per drain of the socket, not one per frame.
    assert len(writes) <= 10, f"{len(writes)} writes for 300 frames"
    assert handler.outbound_bytes() == 0
    sock.close()


@pytest.mark.gen_test(timeout=60)
async def test_close_after_a_burst_sends_the_burst_then_the_close_frame_then_nothing(
        api, kpay_app):
    sock, handler = await subscribed(kpay_app, api, "slow", "test:burst")
    text = "x" * 2_000
    for i in range(200):
        await kpay_app.publish("test:burst", "chunk", {"i": i, "text": text})
    assert handler.state.pending, "nothing was coalesced: nothing to test"
    handler.close(1000, "bye")
    for i in range(200, 210):
        await kpay_app.publish("test:burst", "chunk", {"i": i, "text": text})
    frames = await read_until_close(sock)
    ops = [op for op, _ in frames]
    assert ops.count(CLOSE) == 1
    assert ops[-1] == CLOSE, "a frame followed the close frame"
    assert events(frames) == list(range(200))
    sock.close()


@pytest.mark.gen_test
async def test_frames_are_not_held_back_for_acknowledgements(api, kpay_app):
    """Nagle's algorithm is off on every socket: a frame written while the previous one
    is unacknowledged goes out at once instead of after the client's delayed ACK
    (docs/performance.md, "What makes p99"). Tornado's handshake leaves it on."""
    sock = await raw_socket(kpay_app.port, await api.login("quick"), "test:quick")
    await wait_until(lambda: kpay_app.hub.is_present("test:quick", "quick"))
    (handler,) = [s for s in kpay_app.sockets if s.user_id == "quick"]
    assert handler.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    sock.close()
