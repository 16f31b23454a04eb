"""The HTTP server's limits, with real sockets: forwarded headers believed only from
[server] trusted_proxies, idle / header / body timeouts, and the connection cap (HTTP
and WebSocket connections counted together)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import tornado.httputil

from kpay import hookimpl
from kpay.core.errors import ConfigError
from kpay.core.web import BaseHandler, Route
from kpay.testing import wait_until

# pytest-tornado's own limit per test; every wait below is bounded well inside it.
LIMIT = 30
# How long a test waits for something that should happen (a close, a count): generous
# on a loaded machine, and what a test costs before the fix (nothing is closed then).
WAIT = 5.0


class WhoAmI(BaseHandler):
    def get(self) -> None:
        """Test plugin: the client as the server sees it."""
        self.write_json({"ip": self.request.remote_ip, "protocol": self.request.protocol})


class HttpTestPlugin:
    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/test/whoami", WhoAmI)]


@pytest.fixture
def kpay_extra_plugins():
    return [("http_test", HttpTestPlugin())]


@pytest.fixture
def kpay_overrides(request):
    """Per test: ``@pytest.mark.parametrize("kpay_overrides", [...], indirect=True)``."""
    return getattr(request, "param", {})


def server(**values: Any) -> dict[str, dict[str, Any]]:
    return {"server": values}


# -- raw sockets ----------------------------------------------------------------------


class Raw:
    """One raw TCP connection to the app: send bytes, read answers, see it closed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, app: Any) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", app.port))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def get(self, path: str, headers: dict[str, str] | None = None
                  ) -> tuple[int, bytes]:
        """A keep-alive GET on this connection and its answer (status, body)."""
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        start, _, rest = head.decode("latin-1").partition("\r\n")
        parsed = tornado.httputil.HTTPHeaders.parse(rest)
        body = await asyncio.wait_for(
            self.reader.readexactly(int(parsed.get("Content-Length", "0"))), WAIT)
        return int(start.split()[1]), body

    async def closed_by_server(self, within: float = WAIT) -> bool:
        """True when the server closes the connection within ``within`` seconds (what
        it sends first, if anything, is read and dropped)."""

        async def until_end() -> None:
            while await self.reader.read(65536):
                pass

        try:
            await asyncio.wait_for(until_end(), within)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.writer.close()


async def served(app: Any) -> bool:
    """A new connection gets an answer (not closed at once by the cap)."""
    raw = await Raw.open(app)
    try:
        status, _ = await raw.get("/healthz")
        return status == 200
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        return False
    finally:
        raw.close()


# -- the client's IP -------------------------------------------------------------------

SPOOFED = {"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.8",
           "X-Forwarded-Proto": "https"}


@pytest.mark.gen_test(timeout=LIMIT)
async def test_forwarded_headers_from_a_direct_client_are_ignored(api):
    # Default: no trusted proxy. Anyone could otherwise choose their IP (and https).
    status, body = await api.request("GET", "/api/v1/test/whoami", headers=SPOOFED)
    assert status == 200, body
    assert body == {"ip": "127.0.0.1", "protocol": "http"}


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("kpay_overrides", [server(trusted_proxies=["10.0.0.0/8"])],
                         indirect=True)
async def test_forwarded_headers_from_a_peer_not_in_trusted_proxies_are_ignored(api):
    status, body = await api.request("GET", "/api/v1/test/whoami", headers=SPOOFED)
    assert status == 200, body
    assert body == {"ip": "127.0.0.1", "protocol": "http"}


@pytest.mark.gen_test(timeout=LIMIT)
async def test_spbill_create_ip_sent_to_wechat_is_the_socket_peer(api, kpay_app, monkeypatch):
    from plugins.wechat_pay import fake_routes

    seen: list[str] = []
    unifiedorder = fake_routes.ENDPOINTS["pay/unifiedorder"]

    def recording(fake: Any, params: dict[str, str]) -> dict[str, Any]:
        seen.append(params.get("spbill_create_ip", ""))
        return unifiedorder(fake, params)

    monkeypatch.setitem(fake_routes.ENDPOINTS, "pay/unifiedorder", recording)
    token = await api.login("ip-student")
    status, body = await api.request(
        "POST", "/api/v1/orders", {"item": {"kind": "wallet_topup", "amount": 500},
                                   "channel": "native"}, token, headers=SPOOFED)
    assert status == 201, body
    assert seen == ["127.0.0.1"]


BEHIND_NGINX = server(trusted_proxies=["127.0.0.1/32"])


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("kpay_overrides", [BEHIND_NGINX], indirect=True)
@pytest.mark.parametrize("headers, ip, protocol", [
    ({}, "127.0.0.1", "http"),
    # nginx: X-Forwarded-For $proxy_add_x_forwarded_for. The client may send its own
    # X-Forwarded-For; only the address nginx appended (right-most) is believed.
    ({"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}, "203.0.113.9", "http"),
    # Trusted hops are skipped from the right.
    ({"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 127.0.0.1"}, "203.0.113.9", "http"),
    # All trusted: the left-most.
    ({"X-Forwarded-For": "127.0.0.1"}, "127.0.0.1", "http"),
    # X-Forwarded-For wins over X-Real-IP; X-Real-IP alone is used.
    ({"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "198.51.100.2"}, "203.0.113.9", "http"),
    ({"X-Real-IP": "2001:db8::7"}, "2001:db8::7", "http"),
    # Not IP addresses: nothing from the headers is used.
    ({"X-Real-IP": "<script>"}, "127.0.0.1", "http"),
    ({"X-Forwarded-For": "203.0.113.9, unknown"}, "127.0.0.1", "http"),
    ({"X-Forwarded-For": "203.0.113.9:4711"}, "127.0.0.1", "http"),
    ({"X-Forwarded-Proto": "https"}, "127.0.0.1", "https"),
    ({"X-Forwarded-Proto": "javascript"}, "127.0.0.1", "http"),
])
async def test_forwarded_headers_from_a_trusted_proxy(api, headers, ip, protocol):
    status, body = await api.request("GET", "/api/v1/test/whoami", headers=headers)
    assert status == 200, body
    assert body == {"ip": ip, "protocol": protocol}


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("kpay_overrides", [BEHIND_NGINX], indirect=True)
async def test_forwarded_client_does_not_leak_into_the_next_request(kpay_app):
    raw = await Raw.open(kpay_app)
    try:
        _, first = await raw.get("/api/v1/test/whoami", {"X-Forwarded-For": "203.0.113.9",
                                                         "X-Forwarded-Proto": "https"})
        _, second = await raw.get("/api/v1/test/whoami")
    finally:
        raw.close()
    assert first == b'{"ip": "203.0.113.9", "protocol": "https"}'
    assert second == b'{"ip": "127.0.0.1", "protocol": "http"}'


def test_client_ip_rule():
    from kpay.core.httpserver import client_ip, trusted_networks

    trusted = trusted_networks(["10.0.0.0/8", "2001:db8:1::/48"])

    def ip(peer: str, **headers: str) -> str:
        sent = tornado.httputil.HTTPHeaders(
            {k.replace("_", "-"): v for k, v in headers.items()})
        return client_ip(peer, sent, trusted)

    assert ip("192.0.2.1", X_Forwarded_For="198.51.100.1") == "192.0.2.1"
    assert ip("10.1.2.3", X_Forwarded_For="1.1.1.1, 2.2.2.2, 10.0.0.5") == "2.2.2.2"
    assert ip("2001:db8:1::9", X_Forwarded_For="2001:db8:2::1") == "2001:db8:2::1"
    assert ip("::ffff:10.0.0.1", X_Real_IP="192.0.2.5") == "192.0.2.5"
    assert ip("10.0.0.1", X_Real_IP="192.0.2.5 ") == "192.0.2.5"
    assert ip("10.0.0.1", X_Real_IP="evil.example") == "10.0.0.1"
    # Two X-Forwarded-For headers are one list, in order.
    headers = tornado.httputil.HTTPHeaders()
    headers.add("X-Forwarded-For", "1.1.1.1")
    headers.add("X-Forwarded-For", "3.3.3.3, 10.9.9.9")
    assert client_ip("10.0.0.1", headers, trusted) == "3.3.3.3"


@pytest.mark.parametrize("value", [["localhost"], ["10.0.0.1/8"], ["10.0.0.0/33"], [""]])
def test_trusted_proxies_must_be_ip_networks(value):
    from kpay.core.app import load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides={"server": {"trusted_proxies": value},
                                       "plugins": {"enabled": []}})
    assert "[server] trusted_proxies" in str(caught.value)
    assert "is not an IP address or network" in str(caught.value)


def test_http_limit_defaults():
    from kpay.core.config import ServerSettings

    defaults = ServerSettings()
    assert defaults.trusted_proxies == []
    assert defaults.idle_connection_timeout_seconds == 60
    assert defaults.body_timeout_seconds == 30
    assert defaults.max_connections == 10_000


# -- timeouts ------------------------------------------------------------------------

SHORT = server(idle_connection_timeout_seconds=0.5, body_timeout_seconds=0.5)


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("kpay_overrides", [SHORT], indirect=True)
@pytest.mark.parametrize("sent", [
    b"",                                                          # connects, says nothing
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",              # half a request head
    b"GET /heal",                                                 # half a request line
    b"POST /api/v1/test/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n"   # half a body
    b"Content-Length: 100\r\n\r\n0123456789",
    b"POST /api/v1/test/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n"   # a chunked body, stalled
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
], ids=["nothing", "partial-head", "partial-line", "partial-body", "stalled-chunks"])
async def test_stalled_connections_are_closed(kpay_app, sent):
    raw = await Raw.open(kpay_app)
    try:
        raw.send(sent)
        assert await raw.closed_by_server()
    finally:
        raw.close()


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("kpay_overrides", [SHORT], indirect=True)
async def test_idle_keep_alive_connection_is_closed(kpay_app):
    raw = await Raw.open(kpay_app)
    try:
        status, _ = await raw.get("/healthz")
        assert status == 200
        assert await raw.closed_by_server()
    finally:
        raw.close()


# -- the connection cap ----------------------------------------------------------------


async def open_served(app: Any, count: int) -> list[Raw]:
    """``count`` keep-alive connections, each shown served (so accepted and counted)."""
    connections = []
    for _ in range(count):
        raw = await Raw.open(app)
        connections.append(raw)
        status, _ = await raw.get("/healthz")
        assert status == 200
    return connections


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("kpay_overrides", [server(max_connections=3)], indirect=True)
async def test_connections_beyond_the_cap_are_closed_at_once(kpay_app):
    connections = await open_served(kpay_app, 3)
    try:
        extra = await Raw.open(kpay_app)
        extra.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # Closed at once, unanswered: well before any timeout (60 s idle here).
        assert await extra.closed_by_server(within=2.0)
        extra.close()
        # The held ones still work; one closed frees a place.
        status, _ = await connections[0].get("/healthz")
        assert status == 200
        connections.pop().close()
        await wait_until(lambda: kpay_app.server.open_connections == 2)
        assert await served(kpay_app)
    finally:
        for raw in connections:
            raw.close()


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("kpay_overrides", [server(max_connections=2)], indirect=True)
async def test_websockets_count_towards_the_cap(api, kpay_app):
    token = await api.login("cap-student")
    # The login's connection (Connection: close) is let go first.
    await wait_until(lambda: kpay_app.server.open_connections == 0)
    socket = await api.socket(token)
    [held] = await open_served(kpay_app, 1)
    try:
        extra = await Raw.open(kpay_app)
        extra.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert await extra.closed_by_server(within=2.0)
        extra.close()
        socket.close()
        await wait_until(lambda: kpay_app.server.open_connections == 1)
        assert await served(kpay_app)
    finally:
        socket.close()
        held.close()


# -- a Host header Tornado refuses ------------------------------------------------------


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("host_line, message", [
    ("Host: )?{`c\r\n", "Invalid Host header"),
    ("Host: a.example,b.example\r\n", "Multiple host headers not allowed"),
    ("", "Missing Host header"),
])
async def test_a_refused_host_header_gets_the_error_envelope(kpay_app, host_line, message):
    """Found by the schemathesis fuzzer (tests/reliability/test_fuzz_api.py): Tornado refuses
    such a request before any handler exists, with a bare 400 and no body; the client
    gets the envelope, its body is dropped, and the connection serves the next request."""
    raw = await Raw.open(kpay_app)
    try:
        raw.send((f"POST /api/v1/orders HTTP/1.1\r\n{host_line}Content-Length: 2\r\n"
                  "Content-Type: application/json\r\n\r\n{}").encode())
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), WAIT)
        start, _, rest = head.decode("latin-1").partition("\r\n")
        headers = tornado.httputil.HTTPHeaders.parse(rest)
        body = await asyncio.wait_for(
            raw.reader.readexactly(int(headers["Content-Length"])), WAIT)
        assert start.split()[1] == "400"
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert "X-Content-Type-Options" in headers
        assert json.loads(body) == {"error": {"code": "bad_request", "message": message}}
        status, _ = await raw.get("/healthz")
        assert status == 200
    finally:
        raw.close()


@pytest.mark.gen_test(timeout=LIMIT)
@pytest.mark.parametrize("length", [b"\xb2", b"9" * 5000], ids=["superscript", "5000 digits"])
async def test_a_content_length_of_other_digits_is_answered_not_an_exception(kpay_app, caplog,
                                                                            length):
    # "²" (latin-1 0xB2) is a digit to str.isdigit() but not to int(); int() refuses
    # more than 4300 digits.
    raw = await Raw.open(kpay_app)
    try:
        raw.send(b"POST /api/v1/dev/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Length: " + length + b"\r\n\r\n")
        answer = await asyncio.wait_for(raw.reader.read(65536), WAIT)
    finally:
        raw.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
