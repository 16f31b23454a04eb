"""The attack checks of the hardening review, tried the way an attacker would against
one running kpay (all built-in plugins, the local fake WeChat). Each test is one
finding; the figures go to docs/reliability.md (``make reliability``). Every finding
also has a narrower regression test next to the code it concerns."""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urljoin

import pytest
from reliability_helpers import record_figures

from plugins.wechat_pay import signing

NOTIFY = "/api/v1/pay/wechat/notify"
ROWS: list[dict[str, str]] = []


def held(attack: str, tried: str, result: str) -> None:
    ROWS.append({"attack": attack, "tried": tried, "held": result})
    record_figures("attacks", {"rows": ROWS})


@pytest.fixture
def kpay_overrides(fake_wechat):
    # Limits on, with their defaults, as in production (kpay.testing turns them off).
    return {"wechat_pay": fake_wechat.settings(), "limits": {"enabled": True}}


async def post_xml(api, body: str) -> tuple[int, dict[str, str]]:
    status, text = await api.request("POST", NOTIFY, raw=body,
                                     headers={"Content-Type": "text/xml"})
    return status, signing.parse_xml(text.encode() if isinstance(text, str) else b"")


REDIRECTS = ["/\t/evil.example/steal", "/\n/evil.example", "/\r/evil.example",
             "/\\evil.example", "/%5Cevil.example", "%2F%2Fevil.example", "/%2F/evil.example",
             "https:evil.example", "//evil.example", "///evil.example",
             "\uff0f\uff0fevil.example", "/\u2215evil.example", "javascript:alert(1)",
             "https://evil.example/", " //evil.example"]


@pytest.mark.gen_test(timeout=60)
async def test_login_redirects_never_leave_the_site(api):
    refused = 0
    for redirect in REDIRECTS:
        status, body = await api.get(f"/api/v1/wechat/oauth/start?redirect={quote(redirect)}")
        assert status == 400 and body["error"]["code"] == "invalid_redirect", redirect
        refused += 1
    held("open redirect in WeChat login", f"{len(REDIRECTS)} redirect variants "
         "(tab, newline, CR, backslash, encoded slashes, scheme, unicode slashes)",
         f"{refused} refused with 400, 0 redirected off the site")


@pytest.mark.gen_test(timeout=60)
async def test_forty_concurrent_replays_of_one_notify_credit_once(api, kpay_app,
                                                                  fake_wechat):
    token = await api.login("victim")
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": 500}, "channel": "native"}, token)
    assert status == 201, body
    notify = fake_wechat.payment_notify(body["order"]["out_trade_no"])
    answers = await asyncio.gather(*(post_xml(api, notify) for _ in range(40)))
    assert all(status == 200 for status, _ in answers)
    wallet = await kpay_app.money.ledger.wallet("victim")
    credits = await kpay_app.store["ledger"].count_documents(
        {"meta.order_id": body["order"]["id"]})
    assert wallet["balance"] == 500 and credits == 1
    out_trade_no = body["order"]["out_trade_no"]
    for forged in (fake_wechat.payment_notify(out_trade_no, sign="0" * 32),
                   fake_wechat.payment_notify(out_trade_no, total_fee=50000)):
        status, answer = await post_xml(api, forged)
        assert answer.get("return_code") == "FAIL" or status >= 400, answer
    assert (await kpay_app.money.ledger.wallet("victim"))["balance"] == 500
    held("replayed and forged payment notifies", "40 concurrent replays of one signed "
         "notify; one with a wrong signature; one signed with another amount",
         f"{credits} credit of 500 fen; the forged one refused, 0 fen more")


@pytest.mark.gen_test(timeout=60)
async def test_junk_notifies_cannot_grow_storage_without_bound(api, kpay_app):
    junk = "<xml>" + "<a>" + "x" * 60_000 + "</a></xml>"
    for _ in range(50):
        await api.request("POST", NOTIFY, raw=junk, headers={"Content-Type": "text/xml"})
    stored = [len(n.get("body") or "") async for n in kpay_app.store["wechat_notifies"].find()]
    assert stored and max(stored) <= 4096
    indexes = await kpay_app.store["wechat_notifies"].index_information()
    assert any("expireAfterSeconds" in spec for spec in indexes.values())
    held("unauthenticated notify floods storage", "50 unsigned notifies of 60 KB",
         f"at most {max(stored)} bytes kept of each; records expire (TTL index)")


@pytest.mark.gen_test(timeout=60)
async def test_one_author_cannot_stop_drip_for_everyone(api, kpay_app):
    author = await api.login("evil-author", "consultant")
    status, body = await api.post("/api/v1/courses", {
        "title": "坏日期", "price": 100, "lessons": [
            {"title": "x", "body": "y", "release": {"at_date": "0001-01-01T00:00:00+14:00"}}]},
        author)
    assert status == 400 and body["error"]["code"] == "invalid_release"
    held("a date that overflows (year 1 at +14:00) in a course", "create a course with it",
         "400 invalid_release; dates are bounded to 2000-2099, and a broken record "
         "is skipped by every job and put on the needs-attention list")


@pytest.mark.gen_test(timeout=60)
async def test_malformed_requests_are_client_errors(api):
    deep = "[" * 100_000 + "]" * 100_000
    status, body = await api.request("POST", "/api/v1/orders", raw=deep,
                                     token=await api.login("fuzzer"))
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, _ = await api.get("/static/index.html%00.js")
    assert status == 404
    held("malformed input", "JSON nested 100,000 deep; a NUL byte in a static path",
         "400 invalid_json and 404; no 500, no traceback")


@pytest.mark.gen_test(timeout=60)
async def test_tokens_stop_working_when_standing_changes(api):
    admin = await api.login("boss", "admin")
    demoted = await api.login("ex-admin", "admin")
    victim = await api.login("spammer")
    await api.post("/api/v1/admin/users/ex-admin/role", {"role": "student"}, admin)
    await api.post("/api/v1/admin/users/spammer/block", {"reason": "spam"}, admin)
    assert (await api.get("/api/v1/plugins", demoted))[0] == 401
    assert (await api.get("/api/v1/me", victim))[0] == 403
    phone = await api.login("user")
    await api.post("/api/v1/auth/logout", {}, phone)
    assert (await api.get("/api/v1/me", phone))[0] == 401
    _, body = await api.get("/api/v1/admin/audit", admin)
    assert [r["action"] for r in body["records"]] == ["user.block", "user.role"]
    held("tokens outliving a role change, a block or a logout",
         "a demoted admin's, a blocked user's and a logged-out token",
         "401 token_revoked / 403 account_blocked at once; both changes in the audit log")


@pytest.mark.gen_test(timeout=60)
async def test_the_js_sdk_signs_only_our_pages(api, kpay_app):
    token = await api.login("anyone")
    url = "https://evil.example/phish.html"
    status, body = await api.get(f"/api/v1/wechat/jssdk?url={quote(url)}", token)
    assert status == 400, body
    held("JS-SDK signature for any page", f"wx.config for {url}",
         f"{status} {body['error']['code']}; only configured page origins are signed")


@pytest.mark.gen_test(timeout=60)
async def test_pages_and_api_carry_security_headers(api):
    for path in ("/", "/api/v1/openapi.json", "/nope"):
        response = await api.http.fetch(urljoin(api.base, path), raise_error=False)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors" in csp, path
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
        assert "Server" not in response.headers or "Tornado" not in response.headers["Server"]
    held("missing security headers", "a page, the API and a 404",
         "CSP without inline script, nosniff, Referrer-Policy, no server version")


@pytest.mark.gen_test(timeout=120)
async def test_one_account_cannot_flood_writes_or_sockets(api, kpay_app):
    host = await api.login("flooder", "consultant")
    answers = [await api.post("/api/v1/rooms", {"title": f"刷{n}", "ticket_price": 0}, host)
               for n in range(150)]
    created = sum(1 for status, _ in answers if status == 201)
    limited = [body for status, body in answers if status == 429]
    assert limited and created <= 50, (created, len(limited))
    assert all(b["error"]["code"] == "rate_limited" and b["error"]["retry_after"] >= 1
               for b in limited)
    other = await api.login("bystander", "consultant")
    assert (await api.post("/api/v1/rooms", {"title": "正常", "ticket_price": 0}, other))[0] \
        == 201
    sockets = [await api.socket(host) for _ in range(25)]
    codes = [await ws.closed(timeout=2) if n >= 20 else None for n, ws in enumerate(sockets)]
    refused = sum(1 for code in codes if code == 4429)
    assert refused == 5, codes
    held("one account flooding writes and sockets", "150 room creations in a row; 25 sockets",
         f"{created} created, {len(limited)} answered 429 with Retry-After, another user "
         f"unaffected; sockets over 20 closed ({refused} with 4429)")
