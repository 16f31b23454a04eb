"""No log line carries an OAuth code or state, a token, a ticket, a signature or a secret
from a request URI: Tornado's own 4xx warnings and 5xx errors (which quote the URI and
the request), urllib3's request lines, the fake's access log, the WeChat login errors."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import tornado.httpclient

from kpay import hookimpl
from kpay.core.web import BaseHandler, Route

SECRETS = {"code": "CODE-s3cr3t-1111", "state": "STATE-s3cr3t-2222",
           "token": "TOKEN-s3cr3t-3333", "access_token": "ACCESS-s3cr3t-4444",
           "ticket": "TICKET-s3cr3t-5555", "sign": "SIGN-s3cr3t-6666",
           "paySign": "PAYSIGN-s3cr3t-7777"}
QUERY = urlencode({"page": "1", **SECRETS})


class BoomHandler(BaseHandler):
    async def get(self) -> None:
        # A bug whose message quotes the request, as a careless error would.
        raise RuntimeError(f"cannot serve {self.request.uri}")


class NeedsArgumentHandler(BaseHandler):
    async def get(self) -> None:
        # Tornado's MissingArgumentError: a 400 that Tornado logs, quoting the URI.
        self.write_json({"value": self.get_query_argument("required")})


class BoomPlugin:
    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/test/boom", BoomHandler),
                Route("/api/v1/test/needs-argument", NeedsArgumentHandler)]


@pytest.fixture
def kpay_extra_plugins():
    return [("boom", BoomPlugin())]


@pytest.fixture
def kpay_overrides(fake_wechat):
    return {"wechat_pay": fake_wechat.settings()}


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def leaks(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> list[str]:
    """Every record (message and traceback) that contains one of ``secrets``."""
    found = []
    for record in caplog.records:
        text = record.getMessage() + "\n" + (record.exc_text or "")
        found += [f"{record.name}: {text[:300]}" for s in secrets if s and s in text]
    found += [f"caplog.text has {s}" for s in secrets if s and s in caplog.text]
    return found


async def fetch(url: str, method: str = "GET", cookie: str = "") -> Any:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(url, method=method, follow_redirects=False, raise_error=False,
                              headers={"Cookie": cookie} if cookie else {},
                              body=b"" if method == "POST" else None)


@pytest.mark.gen_test
async def test_a_500_logs_no_secret(api, kpay_app, logs):
    response = await fetch(f"{api.base}/api/v1/test/boom?{QUERY}")
    assert response.code == 500
    errors = [r for r in logs.records if r.name == "tornado.application"]
    assert errors and errors[0].exc_info, "Tornado's uncaught exception log is the path tested"
    assert "[redacted]" in errors[0].getMessage() and "page=1" in errors[0].getMessage()
    assert not leaks(logs, list(SECRETS.values()))


@pytest.mark.gen_test
async def test_4xx_logs_no_secret(api, kpay_app, logs):
    assert (await fetch(f"{api.base}/api/v1/test/needs-argument?{QUERY}")).code == 400
    callback = f"{api.base}/api/v1/wechat/oauth/callback?{QUERY}"
    assert (await fetch(callback, "POST")).code == 405
    assert (await fetch(callback)).code == 400              # invalid_state
    assert (await fetch(f"{api.base}/nowhere?{QUERY}")).code == 404
    warnings = [r for r in logs.records if r.name == "tornado.general"]
    assert warnings and "Missing argument required" in warnings[0].getMessage(), (
        "Tornado's 4xx warning is the path tested")
    assert not leaks(logs, list(SECRETS.values()))


@pytest.mark.gen_test
async def test_a_socket_with_a_bad_token_logs_no_token(api, kpay_app, logs):
    socket = await api.socket(token=SECRETS["token"])
    await socket.closed()
    assert not leaks(logs, [SECRETS["token"]])


@pytest.mark.gen_test
async def test_wechat_login_logs_no_code_state_or_token(api, kpay_app, fake_wechat, logs):
    start = await fetch(f"{api.base}/api/v1/wechat/oauth/start?redirect=/course.html")
    cookie = start.headers["Set-Cookie"].split(";", 1)[0]
    callback = (await fetch(start.headers["Location"])).headers["Location"]
    back = await fetch(callback, cookie=cookie)
    assert back.code == 302, back.body
    query = parse_qs(urlsplit(callback).query)
    token = parse_qs(urlsplit(back.headers["Location"]).fragment)["token"][0]
    # The fake's and urllib3's request lines (DEBUG) were logged, redacted.
    assert any("access_token?" in r.getMessage() for r in logs.records)
    assert not leaks(logs, [query["code"][0], query["state"][0], token, fake_wechat.app_secret])


class TestLoginFailure:
    """WeChat unreachable during the code exchange: the error quotes WeChat's URL, with
    the code and the AppSecret in its query."""

    @pytest.fixture
    def kpay_overrides(self, fake_wechat):
        return {"wechat_pay": {**fake_wechat.settings(),
                               "oauth_api_base_url": "http://127.0.0.1:9/"}}

    @pytest.mark.gen_test
    async def test_oauth_callback_error_shows_and_logs_no_secret(self, api, kpay_app,
                                                                  fake_wechat, logs):
        start = await fetch(f"{api.base}/api/v1/wechat/oauth/start?redirect=/course.html")
        cookie = start.headers["Set-Cookie"].split(";", 1)[0]
        callback = (await fetch(start.headers["Location"])).headers["Location"]
        back = await fetch(callback, cookie=cookie)
        assert back.code == 502 and b"oauth_failed" in back.body
        query = parse_qs(urlsplit(callback).query)
        secrets = [query["code"][0], query["state"][0], fake_wechat.app_secret]
        assert not [s for s in secrets if s.encode() in back.body], back.body
        assert any("OAuth login failed" in r.getMessage() for r in logs.records)
        assert not leaks(logs, secrets)


def test_redact_covers_plain_and_encoded_queries():
    from kpay.core.logs import redact

    text = ("GET /a?code=C1&state=S1&x=1&Token=T1 uri='/ws?token=T2' "
            "/jssdk?url=https%3A%2F%2Fh5%2Fp%3Fcode%3DC3%26ok%3D1%26paySign%3DP3&access_token=A4")
    redacted = redact(text)
    for value in ("C1", "S1", "T1", "T2", "C3", "P3", "A4"):
        assert value not in redacted
    assert "x=1" in redacted and "ok%3D1" in redacted and "code=[redacted]" in redacted
