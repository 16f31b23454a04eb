"""The /ws hub end to end: a real server, real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
import types

import jwt
import pytest
import tornado.httpclient
from prometheus_client import REGISTRY

from kpay import hookimpl
from kpay.core.realtime.channels import ChannelRule
from kpay.testing import TEST_SECRET, wait_until

PRESENCE: list[tuple[str, str, bool]] = []


def can_subscribe(app, user, ident):
    if ident == "boom":
        raise RuntimeError("a rule that fails")
    return ident != "closed"


async def on_publish(app, user, ident, type, data):
    await app.publish(f"test:{ident}", type, {"from": user.id, **data})


@hookimpl
def register_channels(app):
    return [ChannelRule("test", can_subscribe, on_publish)]


@hookimpl
def on_presence(app, channel, user_id, present):
    PRESENCE.append((channel, user_id, present))


@pytest.fixture
def kpay_extra_plugins():
    return [("test_channels", types.SimpleNamespace(register_channels=register_channels,
                                                    on_presence=on_presence))]


@pytest.fixture
def kpay_overrides():
    # Only the core: these tests must not depend on any feature plugin.
    return {"plugins": {"enabled": []}}


def overrides(**realtime):
    return pytest.mark.parametrize("kpay_overrides", [
        {"plugins": {"enabled": []}, "realtime": realtime}])


# -- auth ---------------------------------------------------------------------


@pytest.mark.gen_test
async def test_auth_by_first_frame(api):
    token = await api.login("alice")
    ws = await api.socket()
    early = await ws.request("sub", ch="user:alice")
    assert early["ok"] is False and early["error"]["code"] == "auth_required"
    reply = await ws.request("auth", token=token)
    assert reply["ok"] is True and reply["user"] == {"id": "alice", "role": "student"}
    again = await ws.request("auth", token=token)
    assert again["error"]["code"] == "already_authenticated"
    assert (await ws.request("sub", ch="user:alice"))["ok"] is True


@overrides(auth_timeout_seconds=0.3)
@pytest.mark.gen_test
async def test_no_auth_within_the_timeout_closes_4401(api):
    ws = await api.socket()
    assert await ws.closed() == 4401
    assert ws.close_reason == "auth timeout"


@overrides(auth_timeout_seconds=0.3)
@pytest.mark.gen_test
async def test_auth_frame_cancels_the_timeout(api):
    ws = await api.socket()
    await ws.request("auth", token=await api.login("alice"))
    await asyncio.sleep(0.5)
    assert (await ws.request("ping"))["ok"] is True


def expired_token(api, user_id: str) -> str:
    now = int(api.app.clock.time())
    return jwt.encode({"sub": user_id, "role": "student", "iat": now - 100, "exp": now - 50,
                       "aud": "kpay"}, TEST_SECRET, algorithm="HS256")


@pytest.mark.gen_test
async def test_bad_and_expired_tokens_close_4401(api):
    bad = await api.socket("not-a-jwt")
    assert await bad.closed() == 4401 and bad.close_reason == "invalid_token"
    expired = await api.socket(expired_token(api, "alice"))
    assert await expired.closed() == 4401 and expired.close_reason == "token_expired"
    by_frame = await api.socket()
    await by_frame.send("auth", token=expired_token(api, "alice"))
    assert await by_frame.closed() == 4401
    not_a_string = await api.socket()
    await not_a_string.send("auth", token=12)
    assert await not_a_string.closed() == 4401


# -- channels -----------------------------------------------------------------


@pytest.mark.gen_test
async def test_channel_rules(api):
    ws = await api.socket(await api.login("alice"))
    forbidden = await ws.request("sub", ch="user:bob")
    assert forbidden["ok"] is False and forbidden["error"]["code"] == "forbidden"
    closed = await ws.request("sub", ch="test:closed")
    assert closed["error"]["code"] == "forbidden"
    unknown = await ws.request("sub", ch="nope:1")
    assert unknown["error"]["code"] == "unknown_channel"
    for bad in ("nochannel", ":x", "test:", 5, None, "x" * 300):
        reply = await ws.request("sub", ch=bad)
        assert reply["error"]["code"] == "bad_frame", bad
    bad_since = await ws.request("sub", ch="test:r", since="12")
    assert bad_since["error"]["code"] == "bad_frame"
    assert (await ws.request("sub", ch="test:r"))["ok"] is True
    twice = await ws.request("sub", ch="test:r")
    assert twice["error"]["code"] == "already_subscribed"
    failing_rule = await ws.request("sub", ch="test:boom")
    assert failing_rule["error"]["code"] == "internal_error"
    assert (await ws.request("ping"))["ok"] is True


@pytest.mark.gen_test
async def test_pub_goes_through_the_channel_rule(api):
    alice = await api.socket(await api.login("alice"))
    bob = await api.socket(await api.login("bob"))
    await bob.request("sub", ch="test:r")
    sent = await alice.request("pub", ch="test:r", type="message", data={"text": "hi"})
    assert sent["ok"] is True
    event = await bob.event("message")
    assert event["ch"] == "test:r" and event["data"] == {"from": "alice", "text": "hi"}
    refused = await alice.request("pub", ch="user:alice", type="message", data={})
    assert refused["error"]["code"] == "forbidden"
    no_type = await alice.request("pub", ch="test:r", data={})
    assert no_type["error"]["code"] == "bad_frame"


@pytest.mark.gen_test
async def test_unsub_stops_events(api, kpay_app):
    ws = await api.socket(await api.login("alice"))
    await ws.request("sub", ch="user:alice")
    assert (await ws.request("unsub", ch="user:alice"))["ok"] is True
    again = await ws.request("unsub", ch="user:alice")
    assert again["error"]["code"] == "not_subscribed"
    await kpay_app.publish("user:alice", "gone", {})
    await ws.request("sub", ch="test:r")
    await kpay_app.publish("test:r", "here", {})
    assert (await ws.event())["type"] == "here"


# -- bad frames -----------------------------------------------------------------


@pytest.mark.gen_test
async def test_malformed_binary_and_unknown_frames_get_errors(api):
    ws = await api.socket(await api.login("alice"))
    for raw in ("{not json", "[1, 2]", "42", b"\x00\x01binary", "[" * 60_000):
        await ws.send_raw(raw)
        frame = await ws.receive()
        assert frame["op"] == "reply" and frame["ok"] is False
        assert frame["error"]["code"] == "bad_frame", raw
    unknown = await ws.request("dance")
    assert unknown["error"]["code"] == "unknown_op"
    assert (await ws.request("ping"))["ok"] is True


@pytest.mark.gen_test
async def test_oversized_frame_closes_1009(api):
    ws = await api.socket(await api.login("alice"))
    await ws.send_raw('{"op":"ping","pad":"' + "x" * 70_000 + '"}')
    assert await ws.closed() == 1009


@overrides(rate_per_second=1, rate_burst=3, rate_violations_before_close=3)
@pytest.mark.gen_test
async def test_rate_limit_errors_then_closes_4429(api):
    ws = await api.socket(await api.login("alice"))
    for _ in range(10):
        await ws.send("ping")
    frames = []
    while (frame := await ws.receive()) is not None:
        frames.append(frame)
    codes = [f["error"]["code"] if not f["ok"] else "ok" for f in frames]
    assert codes[:3] == ["ok", "ok", "ok"]
    assert codes[3:] == ["rate_limited"] * 3
    assert ws.close_code == 4429


# -- origin -------------------------------------------------------------------


@pytest.mark.parametrize("kpay_overrides", [{
    "plugins": {"enabled": []}, "server": {"allowed_origins": ["https://h5.example.com"]}}])
@pytest.mark.gen_test
async def test_origin_allow_list(api, kpay_app):
    token = await api.login("alice")
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await api.socket(token, headers={"Origin": "https://evil.example.com"})
    assert refused.value.code == 403
    allowed = await api.socket(token, headers={"Origin": "https://H5.example.com"})
    assert (await allowed.request("ping"))["ok"] is True
    same_host = await api.socket(token, headers={"Origin": f"http://127.0.0.1:{kpay_app.port}"})
    assert (await same_host.request("ping"))["ok"] is True
    no_origin = await api.socket(token)
    assert (await no_origin.request("ping"))["ok"] is True


# -- presence -----------------------------------------------------------------


@pytest.mark.gen_test
async def test_presence_counts_users_not_sockets(api, kpay_app):
    PRESENCE.clear()
    alice_token = await api.login("alice")
    alice1, alice2 = await api.socket(alice_token), await api.socket(alice_token)
    bob = await api.socket(await api.login("bob"))
    for ws in (alice1, alice2, bob):
        await ws.request("sub", ch="test:room")
    assert kpay_app.hub.presence("test:room") == 2
    assert kpay_app.hub.is_present("test:room", "alice")
    assert PRESENCE == [("test:room", "alice", True), ("test:room", "bob", True)]
    alice1.close()
    await wait_until(lambda: len(kpay_app.hub.subscribers["test:room"]) == 2)
    assert kpay_app.hub.presence("test:room") == 2
    await alice2.request("unsub", ch="test:room")
    await wait_until(lambda: ("test:room", "alice", False) in PRESENCE)
    assert kpay_app.hub.presence("test:room") == 1
    assert not kpay_app.hub.is_present("test:room", "alice")
    assert kpay_app.hub.remove_user("test:room", "bob", "removed by host") == 1
    ended = await bob.receive()
    assert ended == {"op": "unsubscribed", "ch": "test:room", "reason": "removed by host"}
    assert kpay_app.hub.presence("test:room") == 0


# -- fan-out ------------------------------------------------------------------


async def raw_socket(port: int, token: str, channel: str) -> socket.socket:
    """A client that subscribes and then never reads again, with a tiny receive buffer."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, (
        f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += await loop.sock_recv(sock, 4096)
    assert received.startswith(b"HTTP/1.1 101"), received
    payload = json.dumps({"op": "sub", "ref": 1, "ch": channel}).encode()
    # A client frame must be masked; an all-zero mask leaves the payload as it is.
    await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
    return sock


def slow_consumers_dropped() -> float:
    return REGISTRY.get_sample_value("kpay_sockets_closed_total",
                                     {"reason": "slow_consumer"}) or 0.0


@overrides(outbound_buffer_bytes=65_536)
@pytest.mark.gen_test(timeout=60)
async def test_a_client_that_stops_reading_is_dropped_and_the_others_get_everything(
        api, kpay_app):
    token = await api.login("reader")
    readers = [await api.socket(token) for _ in range(2)]
    for ws in readers:
        await ws.request("sub", ch="test:wide")
    slow = await raw_socket(kpay_app.port, await api.login("slow"), "test:wide")
    await wait_until(lambda: len(kpay_app.hub.subscribers.get("test:wide", ())) == 3)
    dropped_before = slow_consumers_dropped()
    limit = 65_536
    text = "x" * 16_000
    published = 0
    while kpay_app.hub.presence("test:wide") == 2 and published < 2000:
        await kpay_app.publish("test:wide", "chunk", {"i": published, "text": text})
        published += 1
        for socket_handler in kpay_app.sockets:
            # Memory held per socket (IOStream buffer and coalesced frames) stays
            # under the configured bound.
            assert socket_handler.outbound_bytes() <= limit
        for ws in readers:
            assert (await ws.event("chunk"))["data"]["i"] == published - 1
    assert kpay_app.hub.presence("test:wide") == 1, "the slow socket was never dropped"
    assert slow_consumers_dropped() == dropped_before + 1
    assert not kpay_app.hub.is_present("test:wide", "slow")
    await kpay_app.publish("test:wide", "after", {})
    for ws in readers:
        assert (await ws.event("after"))["ch"] == "test:wide"
    slow.close()


@pytest.mark.gen_test
async def test_one_broken_socket_does_not_stop_fan_out(api, kpay_app):
    good = [await api.socket(await api.login(f"u{i}")) for i in range(3)]
    broken = await api.socket(await api.login("broken"))
    for ws in [good[0], broken, *good[1:]]:
        await ws.request("sub", ch="test:fan")
    (handler,) = [s for s in kpay_app.sockets if s.user_id == "broken"]
    # The connection dies under the server: its next write fails.
    handler.stream.socket.shutdown(socket.SHUT_RDWR)
    for i in range(3):
        await kpay_app.publish("test:fan", "tick", {"i": i})
    for ws in good:
        assert [(await ws.event("tick"))["data"]["i"] for _ in range(3)] == [0, 1, 2]
    await wait_until(lambda: not kpay_app.hub.is_present("test:fan", "broken"))
    assert kpay_app.hub.presence("test:fan") == 3


@overrides(ping_interval_seconds=0.2, ping_timeout_seconds=0.1)
@pytest.mark.gen_test
async def test_a_socket_that_does_not_answer_pings_is_closed(api, kpay_app):
    # The Tornado client answers pings by itself; the raw one never reads them.
    answering = await api.socket(await api.login("alice"))
    await answering.request("sub", ch="test:k")
    silent = await raw_socket(kpay_app.port, await api.login("silent"), "test:k")
    await wait_until(lambda: kpay_app.hub.is_present("test:k", "silent"))
    await wait_until(lambda: not kpay_app.hub.is_present("test:k", "silent"))
    await asyncio.sleep(0.5)
    assert (await answering.request("ping"))["ok"] is True
    assert kpay_app.hub.is_present("test:k", "alice")
    silent.close()


@overrides(ping_interval_seconds=0.2, ping_timeout_seconds=0.1)
@pytest.mark.gen_test
async def test_a_socket_still_authenticating_is_not_closed_for_missing_pongs(
        api, kpay_app, monkeypatch):
    # Under load a socket's open() can wait on the user's standing for longer than a
    # ping interval; Tornado reads no pong before open() returns.
    token = await api.login("slowpoke")
    standing = kpay_app.users.standing

    async def slow_standing(user_id: str):
        await asyncio.sleep(0.8)
        return await standing(user_id)

    monkeypatch.setattr(kpay_app.users, "standing", slow_standing)
    ws = await api.socket(token)
    reply = await ws.request("sub", ch="test:slow", timeout=5)
    assert reply["ok"] is True, reply
    await asyncio.sleep(0.5)
    assert (await ws.request("ping"))["ok"] is True
    assert kpay_app.hub.is_present("test:slow", "slowpoke")
