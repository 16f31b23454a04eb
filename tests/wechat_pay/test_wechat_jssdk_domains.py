"""/api/v1/wechat/jssdk signs wx.config only for pages of the allowed origins:
[wechat_pay] jssdk_origins, [server] public_url and allowed_origins, and in dev mode the
app's own host. Anything else is 400 ``url_not_allowed``, before WeChat is asked."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from plugins.wechat_pay.settings import WeChatPaySettings

JSSDK = "/api/v1/wechat/jssdk"


@pytest.fixture
def kpay_overrides(fake_wechat):
    return {"wechat_pay": {**fake_wechat.settings(), "jssdk_origins": ["https://h5.example.com"]},
            "server": {"public_url": "https://pay.example.com",
                       "allowed_origins": ["https://app.example.com:8443", "*"]}}


async def sign(api, url: str) -> tuple[int, dict]:
    return await api.get(f"{JSSDK}?url={quote(url, safe='')}")


@pytest.mark.gen_test
async def test_pages_of_the_allowed_origins_are_signed(api, kpay_app, fake_wechat):
    port = kpay_app.port
    for url in ("https://h5.example.com/room.html?id=7",
                "https://H5.Example.com:443/a/b?x=1#frag",
                "https://pay.example.com/static/pay.html",
                "https://app.example.com:8443/",
                f"http://127.0.0.1:{port}/index.html",      # dev mode: the app's own host
                f"http://localhost:{port}/index.html"):
        status, body = await sign(api, url)
        assert status == 200 and body["appId"] == fake_wechat.appid, (url, body)


@pytest.mark.gen_test
async def test_other_pages_are_refused_before_wechat_is_asked(api, kpay_app, fake_wechat):
    port = kpay_app.port
    for url in ("https://evil.example/page.html",
                "http://h5.example.com/room.html",           # another scheme
                "https://h5.example.com:444/room.html",      # another port
                "https://h5.example.com.evil.example/",
                "https://evil.example/?next=https://h5.example.com/",
                "https://app.example.com/",                  # allowed only on :8443
                "https://anything.example/",                 # "*" opens /ws, not the JS-SDK
                f"http://127.0.0.1:{port + 1}/index.html",
                f"https://127.0.0.1:{port}/index.html"):
        status, body = await sign(api, url)
        assert status == 400, (url, body)
        assert body["error"]["code"] == "url_not_allowed" and body["error"]["field"] == "url"
    assert fake_wechat.calls["cgi-bin/token"] == 0
    assert fake_wechat.calls["cgi-bin/ticket/getticket"] == 0


@pytest.mark.gen_test
async def test_long_or_malformed_urls_are_refused(api, kpay_app, fake_wechat):
    long_url = "https://h5.example.com/room.html?pad=" + "a" * 2100
    status, body = await sign(api, long_url)
    assert status == 400 and body["error"]["field"] == "url"
    for bad in ("javascript:alert(1)", "//h5.example.com/x", "https://h5.example.com:99999/",
                "https://h5.example.com@evil.example/"):
        status, body = await sign(api, bad)
        assert status == 400 and body["error"]["code"] == "invalid_field", bad
    assert fake_wechat.calls["cgi-bin/token"] == 0


def test_outside_dev_mode_the_own_host_is_not_allowed():
    from plugins.wechat_pay.jssdk import allowed_origins

    def runtime(dev: bool):
        server = SimpleNamespace(public_url="https://pay.example.com/", allowed_origins=[])
        app = SimpleNamespace(dev=dev, port=8888, settings=SimpleNamespace(server=server))
        return SimpleNamespace(app=app, settings=WeChatPaySettings(
            jssdk_origins=["https://h5.example.com"]))

    production = {("https", "h5.example.com", 443), ("https", "pay.example.com", 443)}
    assert allowed_origins(runtime(False)) == production
    assert allowed_origins(runtime(True)) == production | {
        ("http", "127.0.0.1", 8888), ("http", "localhost", 8888)}


@pytest.mark.parametrize("entry", ["h5.example.com", "https://h5.example.com/pages/",
                                   "ftp://h5.example.com", "https://"])
def test_jssdk_origins_must_be_origins(entry):
    with pytest.raises(ValidationError, match="jssdk_origins"):
        WeChatPaySettings(jssdk_origins=[entry])
    WeChatPaySettings(jssdk_origins=["https://h5.example.com", "http://10.0.0.5:8080/"])


class TestNothingConfigured:
    """No origins configured (dev mode): the app's own pages only."""

    @pytest.fixture
    def kpay_overrides(self, fake_wechat):
        return {"wechat_pay": fake_wechat.settings()}

    @pytest.mark.gen_test
    async def test_only_the_own_host_is_signed(self, api, kpay_app, fake_wechat):
        status, body = await sign(api, "https://evil.example/page.html")
        assert status == 400 and body["error"]["code"] == "url_not_allowed", body
        status, body = await sign(api, f"http://localhost:{kpay_app.port}/page.html")
        assert status == 200, body


class TestTicketFailure:
    """WeChat unreachable: the 502 does not quote WeChat's URL (it carries the AppSecret)."""

    @pytest.fixture
    def kpay_overrides(self, fake_wechat):
        return {"wechat_pay": {**fake_wechat.settings(),
                               "oauth_api_base_url": "http://127.0.0.1:9/"}}

    @pytest.mark.gen_test
    async def test_the_app_secret_is_not_sent_to_the_browser(self, api, kpay_app, fake_wechat):
        status, body = await sign(api, f"http://127.0.0.1:{kpay_app.port}/index.html")
        assert status == 502 and body["error"]["code"] == "wechat_unavailable"
        assert fake_wechat.app_secret not in str(body) and "secret=" not in str(body)
