"""The WeChat login redirect cannot send the token to another site (open redirect).

The callback answers ``302 Location: <redirect>#token=<kpay token>``. Browsers read
that Location leniently (WHATWG URL parsing): tabs and newlines vanish, ``\\`` counts
as ``/``, so ``/\\t/evil.example`` lands on ``//evil.example``. Every accepted redirect
is resolved here the way a browser would and must stay on kpay's (or an allowed) origin.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
import tornado.httpclient

from kpay.core.errors import BadRequest
from plugins.wechat_pay.oauth import STATES, safe_redirect

START = "/api/v1/wechat/oauth/start"
CALLBACK = "/api/v1/wechat/oauth/callback"
ALLOWED = "https://allowed.example/"

REFUSED = [
    "/\t/evil.example/steal",          # the reported one: tab dropped -> //evil.example
    "\t//evil.example",
    "/%09/evil.example",               # an escaped tab, for whoever decodes it
    "/\n/evil.example",
    "/\r/evil.example",
    "/\r\n/evil.example",
    " //evil.example",                 # leading space, trimmed by the browser
    " /static/course.html",
    "/static/course.html ",
    "/\x00/evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "\\\\evil.example",
    "/%5Cevil.example",
    "/%5cevil.example",
    "%2F%2Fevil.example",
    "/%2Fevil.example",
    "/%2f/evil.example",
    "/%2e%2e/%2e%2e/x",
    "/static/../x",
    "/%zz",
    "https:",
    "https:evil.example",
    "https:/evil.example",
    "https:\\\\evil.example",
    "http://evil.example/",
    "//evil.example",
    "//evil.example/x",
    "///evil.example",
    "////evil.example",
    "/\uff0fevil.example",             # fullwidth solidus
    "\uff0f\uff0fevil.example",
    "/\u2215evil.example",             # division slash
    "/\u2044evil.example",             # fraction slash
    "/static/\u8bfe.html",             # non-ASCII must come percent-encoded
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://allowed.example@evil.example/",       # userinfo tricks
    "https://user:pw@allowed.example/",
    "https://allowed.example%40evil.example/",
    "https://evil.example#@allowed.example/",
    "https://evil.example?@allowed.example/",
    "https://allowed.example.evil.com/",          # allowed origin used as a prefix
    "https://allowed.exampleevil.com/",
    "https://allowed.example:8443/",               # wrong port
    "http://allowed.example/",                     # wrong scheme
    "https://allowed.example\\@evil.example/",
    "https://allowed.example/\t/x",                # allowed origin, path checked too
    "https://allowed.example//evil.example/",
    "https://allowed.example/%2F%2Fevil.example",
    "https:///allowed.example/",
    "",
    "/" + "a" * 2000,                              # longer than 2,000 characters
]

ACCEPTED = [
    "/",
    "/static/course.html?id=abc",
    "/static/x.html#frag",
    "/static/%E8%AF%BE.html?next=%2Fme",
    "/" + "a" * 1999,
    "https://allowed.example/static/x.html?id=1",
    "https://ALLOWED.example:443/",
]


def browser_resolve(location: str, base: str) -> str:
    """Resolve ``location`` against ``base`` roughly as a browser does (WHATWG):
    trim C0 controls and spaces, drop tab/LF/CR anywhere, ``\\`` is ``/``, any number
    of leading slashes (also after a special scheme) start an authority."""
    url = location.strip("".join(map(chr, range(0x21))))
    url = re.sub(r"[\t\n\r]", "", url).replace("\\", "/")
    special = re.match(r"(?i)(https?|wss?|ftp):(.*)", url, re.S)
    if special and (special[2].startswith("/")
                    or special[1].lower() != urlsplit(base).scheme):
        url = special[1].lower() + "://" + special[2].lstrip("/")
    elif url.startswith("//"):
        url = "//" + url.lstrip("/")
    return urljoin(base, url)


def origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(
        parts.scheme)


def test_the_resolver_reads_the_reported_payloads_as_a_browser_does():
    base = "http://127.0.0.1:8080" + CALLBACK
    for sneaky in ("/\t/evil.example/steal", "/\\evil.example", "///evil.example",
                   " //evil.example", "https:evil.example"):
        assert origin(browser_resolve(sneaky, base))[1] == "evil.example", sneaky


# -- safe_redirect alone ----------------------------------------------------------------

def runtime_stub(allow: list[str], public_url: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        settings=SimpleNamespace(oauth_redirect_allow=allow),
        app=SimpleNamespace(settings=SimpleNamespace(server=SimpleNamespace(
            public_url=public_url))))


UNIT_BASE = "https://kpay.example" + CALLBACK
UNIT_RUNTIME = runtime_stub([ALLOWED, "https://h5.example/app/"], "https://kpay.example")
UNIT_ORIGINS = {origin(u) for u in (UNIT_BASE, ALLOWED, "https://h5.example/")}


@pytest.mark.parametrize("redirect", REFUSED)
def test_safe_redirect_refuses(redirect):
    with pytest.raises(BadRequest) as raised:
        safe_redirect(UNIT_RUNTIME, redirect)
    assert raised.value.code == "invalid_redirect" and raised.value.details == {"field": "redirect"}


@pytest.mark.parametrize("redirect", [
    *ACCEPTED, "https://kpay.example/static/x.html",  # [server] public_url
    "https://h5.example/app/page.html"])
def test_safe_redirect_accepts_and_the_browser_stays_home(redirect):
    assert safe_redirect(UNIT_RUNTIME, redirect) == redirect
    # What the callback sends, read as the browser reads it.
    location = redirect.split("#", 1)[0] + "#token=t"
    assert origin(browser_resolve(location, UNIT_BASE)) in UNIT_ORIGINS


@pytest.mark.parametrize("redirect", [
    "https://h5.example/", "https://h5.example/apple", "https://h5.example/app/../admin",
    "https://h5.example/app/%2e%2e/admin"])
def test_safe_redirect_keeps_an_allowed_entry_s_path_prefix(redirect):
    with pytest.raises(BadRequest):
        safe_redirect(UNIT_RUNTIME, redirect)


# -- the start and callback routes ------------------------------------------------------

@pytest.fixture
def kpay_overrides(fake_wechat):
    return {"wechat_pay": {**fake_wechat.settings(), "oauth_redirect_allow": [ALLOWED]}}


async def fetch(url: str, cookie: str = "") -> tornado.httpclient.HTTPResponse:
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        url, follow_redirects=False, raise_error=False,
        headers={"Cookie": cookie} if cookie else {})


def start_url(api, redirect: str) -> str:
    return f"{api.base}{START}?redirect={quote(redirect, safe='')}"


@pytest.mark.gen_test
async def test_the_reported_request_is_refused(api, kpay_app, fake_wechat):
    response = await fetch(f"{api.base}{START}?redirect=/%09/evil.example/steal")
    assert response.code == 400 and b'"invalid_redirect"' in response.body
    assert "Set-Cookie" not in response.headers
    assert await kpay_app.store[STATES].count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_start_refuses_every_variant_and_stores_no_state(api, kpay_app, fake_wechat):
    wrong = []
    for redirect in REFUSED:
        response = await fetch(start_url(api, redirect))
        error = json.loads(response.body or b"{}").get("error", {}) if response.code == 400 else {}
        if ((error.get("code"), error.get("field")) != ("invalid_redirect", "redirect")
                or "Set-Cookie" in response.headers):
            wrong.append((redirect, response.code, response.headers.get("Location")))
    assert wrong == []
    assert await kpay_app.store[STATES].count_documents({}) == 0
    assert fake_wechat.calls["sns/oauth2/access_token"] == 0


@pytest.mark.gen_test(timeout=60)
async def test_accepted_redirects_come_back_to_this_site_or_the_allowed_one(
        api, kpay_app, fake_wechat):
    home = origin(api.base + "/")
    for redirect in ACCEPTED:
        started = await fetch(start_url(api, redirect))
        assert started.code == 302, (redirect, started.body)
        cookie = started.headers["Set-Cookie"].split(";", 1)[0]
        at_wechat = await fetch(started.headers["Location"])
        assert at_wechat.code == 302, redirect
        back = await fetch(at_wechat.headers["Location"], cookie)
        assert back.code == 302, (redirect, back.body)
        location = back.headers["Location"]
        assert location.startswith(redirect.split("#", 1)[0] + "#token="), location
        landed = browser_resolve(location, api.base + CALLBACK)
        expected = origin(ALLOWED) if redirect.lower().startswith("https:") else home
        assert origin(landed) == expected, (redirect, landed)
        assert parse_qs(urlsplit(landed).fragment)["token"]
    assert await kpay_app.store[STATES].count_documents({}) == 0  # all used up


@pytest.mark.gen_test
async def test_a_state_that_is_not_ours_is_400_whatever_its_characters(api):
    for state in ("é" * 64, "g" * 64, "0" * 63, "0" * 65, "A" * 64):
        status, body = await api.get(f"/api/v1/wechat/oauth/callback?code=x&state={quote(state)}")
        assert status == 400 and body["error"]["code"] == "invalid_state", (state, body)
