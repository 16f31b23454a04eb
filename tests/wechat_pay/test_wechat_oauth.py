"""WeChat OAuth login for H5 pages and the JS-SDK config, against the local fake."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
import tornado.httpclient
from wechat_helpers import create_order

START = "/api/v1/wechat/oauth/start"


async def fetch(url: str, cookie: str = "") -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(url, follow_redirects=False, raise_error=False,
                              headers={"Cookie": cookie} if cookie else {})


async def start_login(api, redirect: str = "/course.html?id=1", scope: str = "snsapi_base"):
    """Start the flow; returns (authorize URL, cookie the browser keeps)."""
    response = await fetch(f"{api.base}{START}?redirect={redirect}&scope={scope}")
    assert response.code == 302, response.body
    cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    return response.headers["Location"], cookie


async def login_through_wechat(api, scope: str = "snsapi_base") -> tuple[str, dict]:
    """The whole browser dance; returns (final Location, its fragment)."""
    authorize, cookie = await start_login(api, scope=scope)
    at_wechat = await fetch(authorize)
    assert at_wechat.code == 302
    callback = at_wechat.headers["Location"]
    back = await fetch(callback, cookie)
    assert back.code == 302, back.body
    location = back.headers["Location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}


@pytest.mark.gen_test
async def test_oauth_login_creates_the_user_and_hands_back_a_token(api, kpay_app, fake_wechat):
    authorize, cookie = await start_login(api)
    parts = urlsplit(authorize)
    query = parse_qs(parts.query)
    assert authorize.startswith(fake_wechat.base_url + "connect/oauth2/authorize?")
    assert query["appid"] == [fake_wechat.appid] and query["scope"] == ["snsapi_base"]
    assert query["redirect_uri"][0].endswith("/api/v1/wechat/oauth/callback")
    assert len(query["state"][0]) == 64 and cookie.startswith("kpay_wechat_oauth=")

    location, fragment = await login_through_wechat(api, "snsapi_userinfo")
    assert location.startswith("/course.html?id=1#")
    status, me = await api.get("/api/v1/me", fragment["token"])
    assert status == 200 and me["id"] == fragment["user_id"] and me["role"] == "student"
    user = await kpay_app.store["users"].find_one({"_id": me["id"]})
    assert user["openid"] == fake_wechat.oauth_user["openid"]
    assert user["wechat_nickname"] == fake_wechat.oauth_user["nickname"]
    assert fake_wechat.calls["sns/userinfo"] == 1
    # Logging in again finds the same user; a jsapi order then needs no openid field.
    _, again = await login_through_wechat(api)
    assert again["user_id"] == me["id"]
    assert await kpay_app.store["users"].count_documents({"openid": user["openid"]}) == 1
    created = await create_order(api, again["token"], "jsapi", 100)
    assert fake_wechat.orders[created["order"]["out_trade_no"]].openid == user["openid"]


@pytest.mark.gen_test
async def test_oauth_state_is_bound_to_the_browser_and_single_use(api, kpay_app, fake_wechat):
    authorize, cookie = await start_login(api)
    callback = (await fetch(authorize)).headers["Location"]
    # Another browser (no cookie, or someone else's) cannot complete this login.
    _, other_cookie = await start_login(api)
    for stolen in ("", other_cookie):
        response = await fetch(callback, stolen)
        assert response.code == 400 and b"invalid_state" in response.body
    assert (await fetch(callback, cookie)).code == 302
    replay = await fetch(callback, cookie)  # the state was used up
    assert replay.code == 400 and b"invalid_state" in replay.body
    # A tampered state is refused before anything is looked up.
    state = parse_qs(urlsplit(callback).query)["state"][0]
    tampered = callback.replace(state, state[:-1] + ("0" if state[-1] != "0" else "1"))
    assert (await fetch(tampered, cookie)).code == 400
    assert fake_wechat.calls["sns/oauth2/access_token"] == 1


@pytest.mark.gen_test
@pytest.mark.parametrize("redirect", ["https://evil.example/", "//evil.example/x",
                                      "javascript:alert(1)", "/\\evil.example"])
async def test_oauth_start_refuses_open_redirects(api, kpay_app, fake_wechat, redirect):
    from urllib.parse import quote

    status, body = await api.get(f"{START}?redirect={quote(redirect, safe='')}")
    assert status == 400 and body["error"]["code"] == "invalid_redirect"


@pytest.mark.gen_test
async def test_jssdk_signature_is_correct_and_the_ticket_is_cached(api, kpay_app, fake_wechat):
    url = f"http://127.0.0.1:{kpay_app.port}/room.html?id=7"  # dev mode: own host allowed
    status, config = await api.get(f"/api/v1/wechat/jssdk?url={url}%23frag")
    assert status == 200 and config["appId"] == fake_wechat.appid
    plain = (f"jsapi_ticket={fake_wechat.ticket}&noncestr={config['nonceStr']}"
             f"&timestamp={config['timestamp']}&url={url}")
    assert config["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    status, second = await api.get(f"/api/v1/wechat/jssdk?url={url}")
    assert status == 200 and second["nonceStr"] != config["nonceStr"]
    assert fake_wechat.calls["cgi-bin/token"] == 1
    assert fake_wechat.calls["cgi-bin/ticket/getticket"] == 1
    cached = await kpay_app.store["wechat_tokens"].find_one(
        {"_id": f"jsapi_ticket:{fake_wechat.appid}"})
    assert cached["value"] == fake_wechat.ticket
    # Past its expiry (7200 s, refreshed 5 minutes early) both are fetched again.
    await kpay_app.advance_clock(7200 - 240)
    status, _ = await api.get(f"/api/v1/wechat/jssdk?url={url}")
    assert status == 200 and fake_wechat.calls["cgi-bin/ticket/getticket"] == 2


@pytest.mark.gen_test
async def test_jssdk_refuses_a_bad_url(api, kpay_app, fake_wechat):
    status, body = await api.get("/api/v1/wechat/jssdk?url=ftp://x")
    assert status == 400 and body["error"]["field"] == "url"
    assert fake_wechat.calls["cgi-bin/token"] == 0
