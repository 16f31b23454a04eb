"""Hardening of the HTTP edge: hostile bodies and static paths get a 4xx (never a 500 and
a traceback), and every response carries the security headers (CSP and friends)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.web

from kpay import hookimpl
from kpay.core import config
from kpay.core.errors import ConfigError
from kpay.core.web import BaseHandler, Route

ROOT = Path(__file__).resolve().parents[2]


class Echo(BaseHandler):
    def post(self) -> None:
        """Test plugin: parse the body, say what it was."""
        self.write_json({"type": type(self.json()).__name__})


class Plain(tornado.web.RequestHandler):
    def initialize(self, route_path: str = "") -> None:
        self.route_path = route_path

    def get(self) -> None:
        """Test plugin: a handler of a plugin that is not a BaseHandler."""
        self.set_header("Content-Type", "text/plain")
        self.finish("plain")


class EchoPlugin:
    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/test/echo", Echo), Route("/api/v1/test/plain", Plain)]


@pytest.fixture
def kpay_extra_plugins():
    return [("echo_test", EchoPlugin())]


@pytest.fixture
def kpay_overrides():
    return {"server": {"static_path": str(ROOT / "static")}}


async def fetch(app: Any, method: str, path: str,
                body: bytes | None = None) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    if body is None and method in ("POST", "PUT"):
        body = b""
    return await client.fetch(f"http://127.0.0.1:{app.port}{path}", method=method, body=body,
                              raise_error=False, allow_nonstandard_methods=True)


def error_code(response: tornado.httpclient.HTTPResponse) -> str:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return json.loads(response.body)["error"]["code"]


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records a 4xx must not produce: errors, and anything with a traceback."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR or r.exc_info]


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


# -- hostile JSON ---------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_deeply_nested_json_is_a_400_without_a_traceback(kpay_app, caplog):
    caplog.set_level(logging.INFO)
    for raw in (b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000,
                nested(100_000)):
        response = await fetch(kpay_app, "POST", "/api/v1/test/echo", raw)
        assert response.code == 400, (raw[:10], response.code, response.body[:200])
        assert error_code(response) == "invalid_json"
    # dev/login parses its body the same way (BaseHandler.body).
    response = await fetch(kpay_app, "POST", "/api/v1/dev/login", b"[" * 100_000)
    assert response.code == 400 and error_code(response) == "invalid_json"
    assert server_errors(caplog) == []


@pytest.mark.gen_test
async def test_json_nesting_depth_is_bounded(api):
    status, body = await api.request("POST", "/api/v1/test/echo", raw=nested(20))
    assert status == 200 and body == {"type": "dict"}
    # Well inside Python's recursion limit, but deeper than any kpay body needs.
    status, body = await api.request("POST", "/api/v1/test/echo", raw=nested(200))
    assert status == 400 and body["error"]["code"] == "invalid_json", body
    assert "nested" in body["error"]["message"]
    # Brackets inside strings are text, not nesting.
    status, body = await api.request("POST", "/api/v1/test/echo",
                                     raw=json.dumps({"text": "[" * 5000 + "{" * 5000}))
    assert status == 200 and body == {"type": "dict"}
    # Many siblings are not depth either.
    status, body = await api.request("POST", "/api/v1/test/echo",
                                     raw=json.dumps([[{"a": [1]}] for _ in range(2000)]))
    assert status == 200 and body == {"type": "list"}


# -- hostile static paths -----------------------------------------------------------------


@pytest.mark.gen_test
async def test_nul_byte_in_a_static_path_is_a_404(kpay_app, caplog):
    caplog.set_level(logging.INFO)
    for path in ("/static/index.html%00.js", "/static/%00", "/static/js/%00kpay.js"):
        for method in ("GET", "HEAD"):
            response = await fetch(kpay_app, method, path)
            assert response.code == 404, (method, path, response.code)
            if method == "GET":
                assert error_code(response) == "not_found", path
    assert server_errors(caplog) == []


@pytest.mark.gen_test
async def test_odd_static_paths_are_refused_with_a_4xx(kpay_app, caplog):
    caplog.set_level(logging.INFO)
    odd = ["/static/%2e%2e/", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fetc%2fpasswd",
           "/static/%2f%2fetc/passwd", "/static/" + "a" * 5000, "/static/" + "a/" * 2000 + "b",
           "/static/" + "a" * 300 + ".js", "/static/%ff", "/static/%ff.js", "/static/%c0%ae%c0%ae/",
           "/static/index.html%0a", "/static/css", "/static/css/", "/static/js/..",
           "/static/%5c..%5c..%5cetc%5cpasswd", "/static/~", "/%00",
           "/%ff"]
    answered = {}
    for path in odd:
        response = await fetch(kpay_app, "GET", path)
        answered[path[:40]] = response.code
        if 400 <= response.code < 500:
            assert error_code(response) in ("not_found", "forbidden", "bad_request"), path[:60]
    assert all(400 <= code < 500 for code in answered.values()), answered
    assert server_errors(caplog) == []


# -- security headers -----------------------------------------------------------------------


def csp_of(response: tornado.httpclient.HTTPResponse) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy", "")
    assert policy, response.headers
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in directives, policy
        directives[name] = sources
    return directives


def assert_hardened(response: tornado.httpclient.HTTPResponse, port: int) -> None:
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", headers
    assert headers.get("Referrer-Policy") == "strict-origin-when-cross-origin", headers
    assert headers.get("Server", "kpay") == "kpay", headers
    assert "tornado" not in str(headers).lower()
    csp = csp_of(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'", "https://res.wx.qq.com"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["img-src"][:2] == ["'self'", "https:"]
    assert csp["media-src"] == ["'self'", "https:"]
    assert csp["connect-src"] == ["'self'", f"ws://127.0.0.1:{port}", f"wss://127.0.0.1:{port}"]
    assert not any("unsafe-eval" in s for sources in csp.values() for s in sources)


@pytest.mark.gen_test
async def test_every_kind_of_response_carries_the_security_headers(kpay_app):
    for method, path, status in (
        ("GET", "/healthz", 200),                 # API
        ("GET", "/api/v1/openapi.json", 200),
        ("GET", "/api/v1/me", 401),               # API error envelope
        ("POST", "/api/v1/test/echo", 400),       # hostile body
        ("GET", "/", 200),                        # pages
        ("GET", "/static/index.html", 200),
        ("GET", "/static/wallet.html", 200),
        ("GET", "/static/js/kpay.js", 200),
        ("GET", "/nope", 404),                    # not found: API and static
        ("GET", "/static/no-such-file.js", 404),
        ("GET", "/static/index.html%00.js", 404),
        ("GET", "/static/../../etc/passwd", 403),
        ("DELETE", "/api/v1/me", 405),
        ("GET", "/api/v1/test/plain", 200),       # a plugin's own RequestHandler
    ):
        body = b"[" * 100_000 if path == "/api/v1/test/echo" else None
        response = await fetch(kpay_app, method, path, body)
        assert response.code == status, (path, response.code)
        assert_hardened(response, kpay_app.port)


@pytest.mark.gen_test
async def test_a_conditional_page_request_keeps_the_headers(kpay_app):
    first = await fetch(kpay_app, "GET", "/static/index.html")
    client = tornado.httpclient.AsyncHTTPClient()
    again = await client.fetch(f"http://127.0.0.1:{kpay_app.port}/static/index.html",
                               headers={"If-None-Match": first.headers["Etag"]},
                               raise_error=False)
    assert again.code == 304
    assert_hardened(again, kpay_app.port)


@pytest.mark.gen_test
async def test_a_hostile_host_header_does_not_reach_the_policy(kpay_app):
    client = tornado.httpclient.AsyncHTTPClient()
    response = await client.fetch(f"http://127.0.0.1:{kpay_app.port}/healthz",
                                  headers={"Host": "evil.example;script-src'unsafe-inline'"},
                                  raise_error=False)
    assert response.code == 200
    csp = csp_of(response)
    assert csp["script-src"] == ["'self'", "https://res.wx.qq.com"]
    assert csp["connect-src"] == ["'self'"]


class TestBodyLimit:
    @pytest.fixture
    def kpay_overrides(self):
        return {"server": {"max_body_bytes": 1000, "max_discard_bytes": 100_000}}

    @pytest.mark.gen_test
    async def test_the_413_envelope_carries_the_headers(self, kpay_app):
        response = await fetch(kpay_app, "POST", "/api/v1/test/echo", b"x" * 5000)
        assert response.code == 413 and error_code(response) == "payload_too_large"
        assert_hardened(response, kpay_app.port)


class TestMediaOrigins:
    @pytest.fixture
    def kpay_overrides(self):
        return {"server": {"static_path": str(ROOT / "static"),
                           "media_origins": ["'self'", "https://media.example.com",
                                             "https://*.cdn.example.net"]}}

    @pytest.mark.gen_test
    async def test_images_and_media_come_from_the_configured_origins(self, kpay_app):
        response = await fetch(kpay_app, "GET", "/static/room.html")
        csp = csp_of(response)
        expected = ["'self'", "https://media.example.com", "https://*.cdn.example.net"]
        assert csp["media-src"] == expected
        assert csp["img-src"][:3] == expected
        assert csp["script-src"] == ["'self'", "https://res.wx.qq.com"]


@pytest.mark.parametrize("origins", [["'self'; script-src *"], ["https://a.example b.example"],
                                     ["'unsafe-inline'"], [""], ["https://a.example,"]])
def test_media_origins_reject_what_could_change_the_policy(origins):
    with pytest.raises(ConfigError, match=r"\[server\] media_origins"):
        config.validate({"server": {"media_origins": origins}, "dev": {"enabled": True}})


def test_media_origins_default():
    settings = config.validate({"dev": {"enabled": True}})
    assert settings.server.media_origins == ["'self'", "https:"]
