"""Request limits ([limits], kpay/core/ratelimit.py) and the per-user socket cap.

Limits are off in tests unless a test turns them on (kpay.testing); these do, with small
numbers, and move the limiter's clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest
from pydantic import BaseModel

from kpay import hookimpl
from kpay.core.config import LimitSettings
from kpay.core.ratelimit import EXEMPT, RateLimiter, limit_key, retry_after, route_class
from kpay.core.users import issue_token
from kpay.core.web import BaseHandler, Route, api


class FakeMonotonic:
    """The limiter's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- a plugin with routes of each kind -----------------------------------------------------


class Nothing(BaseModel):
    pass


class PublicHandler(BaseHandler):
    @api("A public read", auth=False)
    def get(self) -> None:
        self.write_json({"ok": True})

    @api("A public write", auth=False, body=Nothing)
    def post(self) -> None:
        self.write_json({"ok": True})


class ProbeHandler(BaseHandler):
    @api("Never limited", limit="none")
    def get(self) -> None:
        self.write_json({"ok": True})


class CheckoutHandler(BaseHandler):
    @api("Counted as an order by its route", body=Nothing)
    def post(self) -> None:
        self.require_user()
        self.write_json({"ok": True})


class NoteHandler(BaseHandler):
    @api("A plain write", body=Nothing)
    def post(self) -> None:
        self.require_user()
        self.write_json({"ok": True})


class PluginNotifyHandler(BaseHandler):
    @api("A provider's notify", auth=False)
    def post(self) -> None:
        self.write_json({"ok": True})


@hookimpl
def register_routes(app: Any) -> list[Route]:
    return [Route("/api/v1/test/public", PublicHandler),
            Route("/api/v1/test/probe", ProbeHandler),
            Route("/api/v1/test/checkout", CheckoutHandler, limit="orders"),
            Route("/api/v1/test/notes", NoteHandler),
            Route("/api/v1/pay/testpay/notify", PluginNotifyHandler)]


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("test_limits", types.SimpleNamespace(register_routes=register_routes))]


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": []}}


def limits(plugins: list[str] | None = None, realtime: dict | None = None,
           server: dict | None = None, **values: Any) -> Any:
    """Run the test with the limits on (small numbers given as ``values``)."""
    overrides: dict[str, dict[str, Any]] = {"plugins": {"enabled": plugins or []},
                                            "limits": {"enabled": True, **values}}
    if realtime:
        overrides["realtime"] = realtime
    if server:
        overrides["server"] = server
    return pytest.mark.parametrize("kpay_overrides", [overrides])


async def call(api: Any, method: str, path: str, token: str | None = None, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, parsed body, response headers)."""
    if body is None and method != "GET":
        body = {}
    return await api.exchange(method, path, body, token, headers=headers)


def assert_limited(status: int, body: Any, headers: Any, seconds: int | None = None) -> None:
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited", body
    wait = int(headers["Retry-After"])
    assert wait >= 1 and body["error"]["retry_after"] == wait
    if seconds is not None:
        assert wait == seconds


# -- the classes --------------------------------------------------------------------------


@pytest.mark.parametrize("route, method, declared, expected", [
    ("/api/v1/wallet", "GET", None, "read"),
    ("/api/v1/rooms/{room_id}", "HEAD", None, "read"),
    ("/api/v1/rooms", "POST", None, "write"),
    ("/api/v1/rooms/{room_id}", "PATCH", None, "write"),
    ("/api/v1/rooms/{room_id}/messages/{seq}", "DELETE", None, "write"),
    ("/api/v1/orders", "POST", None, "orders"),
    ("/api/v1/orders", "GET", None, "read"),
    ("/api/v1/dev/login", "POST", None, "login"),
    ("/api/v1/wechat/oauth/start", "GET", None, "login"),
    ("/api/v1/wechat/oauth/callback", "GET", None, "login"),
    ("/api/v1/pay/wechat/notify", "POST", None, EXEMPT),
    ("/api/v1/pay/wechat/refund-notify", "POST", None, EXEMPT),
    # A notify stays exempt whatever its route declares.
    ("/api/v1/pay/acme/notify", "POST", "write", EXEMPT),
    ("/healthz", "GET", None, EXEMPT),
    ("/metrics", "GET", None, EXEMPT),
    ("/api/v1/openapi.json", "GET", None, EXEMPT),
    ("/api/v1/tips", "POST", "orders", "orders"),
    ("/api/v1/thing", "GET", "none", EXEMPT),
])
def test_route_classes(route, method, declared, expected):
    assert route_class(route, method, declared) == expected


def test_keys_user_for_authenticated_ip_for_login_and_public_routes():
    assert limit_key("write", "alice", "10.0.0.1", needs_user=True) == "user:alice"
    assert limit_key("read", "alice", "10.0.0.1", needs_user=False) == "user:alice"
    assert limit_key("login", "alice", "10.0.0.1", needs_user=False) == "ip:10.0.0.1"
    assert limit_key("read", None, "10.0.0.1", needs_user=False) == "ip:10.0.0.1"
    # Anonymous on a route that needs a user: 401 anyway, not counted.
    assert limit_key("write", None, "10.0.0.1", needs_user=True) is None
    assert limit_key(EXEMPT, "alice", "10.0.0.1", needs_user=True) is None


def test_unknown_class_is_refused_at_declaration():
    with pytest.raises(ValueError, match="unknown limit class 'order'"):
        Route("/api/v1/x", BaseHandler, limit="order")
    with pytest.raises(ValueError, match="unknown limit class"):
        api("x", limit="fast")


def test_retry_after_is_whole_seconds_at_least_one():
    assert [retry_after(w) for w in (0.001, 0.5, 1.0, 1.0000000001, 1.2, 4.99)] == \
        [1, 1, 1, 1, 2, 5]


# -- the bucket ---------------------------------------------------------------------------


def limiter(**values: Any) -> tuple[RateLimiter, FakeMonotonic]:
    clock = FakeMonotonic()
    return RateLimiter(LimitSettings(**values), monotonic=clock), clock


def test_bucket_burst_then_rate():
    bucket, clock = limiter(write_per_second=2.0, write_burst=3)
    assert [bucket.take("write", "user:a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("write", "user:a") == pytest.approx(0.5)
    assert bucket.take("write", "user:b") == 0.0  # another key has its own bucket
    assert bucket.take("read", "user:a") == 0.0  # and another class
    clock.advance(0.25)
    assert bucket.take("write", "user:a") == pytest.approx(0.25)  # refused: nothing taken
    clock.advance(0.25)
    assert bucket.take("write", "user:a") == 0.0
    assert bucket.take("write", "user:a") > 0
    clock.advance(60)  # refills to the burst, not beyond
    assert [bucket.take("write", "user:a") == 0.0 for _ in range(4)] == [True] * 3 + [False]


def test_full_idle_buckets_are_dropped():
    bucket, clock = limiter(write_per_second=1.0, write_burst=2)
    for n in range(50):
        bucket.take("write", f"user:{n}")
    assert len(bucket.buckets) == 50
    clock.advance(1.0)  # every bucket is full again
    for _ in range(13):
        bucket.take("write", "user:active")
    assert len(bucket.buckets) == 1 and ("write", "user:active") in bucket.buckets
    # An emptied bucket is kept until it has filled up: its debt is remembered.
    assert bucket.take("write", "user:active") > 0


def test_the_number_of_keys_is_capped():
    bucket, _ = limiter(write_per_second=0.01, write_burst=1, max_keys=100)
    for n in range(1000):
        assert bucket.take("write", f"ip:10.0.{n // 256}.{n % 256}") == 0.0
    assert len(bucket.buckets) == 100 and bucket.evicted == 900
    # The most recent keys are the ones kept.
    assert bucket.take("write", "ip:10.0.3.231") > 0


# -- over HTTP ----------------------------------------------------------------------------


@limits(write_per_second=0.5, write_burst=3)
@pytest.mark.gen_test
async def test_burst_over_the_write_limit_gets_429_with_retry_after(api, kpay_app):
    clock = FakeMonotonic()
    kpay_app.limiter.monotonic = clock
    alice, bob = await api.login("alice"), await api.login("bob")
    for _ in range(3):
        status, body, _ = await call(api, "POST", "/api/v1/test/notes", alice)
        assert status == 200, body
    status, body, headers = await call(api, "POST", "/api/v1/test/notes", alice)
    assert_limited(status, body, headers, seconds=2)
    assert headers["Content-Type"].startswith("application/json")
    # Another user is not affected.
    status, body, _ = await call(api, "POST", "/api/v1/test/notes", bob)
    assert status == 200, body
    # Reads are another class: alice still reads.
    status, body, _ = await call(api, "GET", "/api/v1/me", alice)
    assert status == 200 and body["id"] == "alice"
    # The bucket refills with time.
    clock.advance(1.0)
    status, body, headers = await call(api, "POST", "/api/v1/test/notes", alice)
    assert_limited(status, body, headers, seconds=1)
    clock.advance(1.0)
    status, body, _ = await call(api, "POST", "/api/v1/test/notes", alice)
    assert status == 200, body


@limits(read_per_second=1.0, read_burst=2, write_per_second=1.0, write_burst=5)
@pytest.mark.gen_test
async def test_get_and_post_take_from_different_buckets(api, kpay_app):
    kpay_app.limiter.monotonic = FakeMonotonic()
    token = await api.login("alice")
    assert [(await call(api, "GET", "/api/v1/me", token))[0] for _ in range(3)] == \
        [200, 200, 429]
    statuses = [(await call(api, "POST", "/api/v1/test/notes", token))[0] for _ in range(6)]
    assert statuses == [200] * 5 + [429]


@limits(login_per_second=0.1, login_burst=3, write_burst=100, read_burst=100,
        server={"trusted_proxies": ["127.0.0.1/32"]})
@pytest.mark.gen_test
async def test_dev_login_is_limited_per_client_ip(api, kpay_app):
    kpay_app.limiter.monotonic = FakeMonotonic()

    async def login(user: str, ip: str) -> tuple[int, Any, Any]:
        return await call(api, "POST", "/api/v1/dev/login",
                          body={"user_id": user, "role": "student"},
                          headers={"X-Forwarded-For": ip})

    # Different accounts from one address share its budget.
    for n in range(3):
        status, body, _ = await login(f"u{n}", "203.0.113.7")
        assert status == 200, body
    status, body, headers = await login("u9", "203.0.113.7")
    assert_limited(status, body, headers, seconds=10)
    # Another address is not affected.
    status, body, _ = await login("u9", "203.0.113.8")
    assert status == 200, body
    # A token does not lift the login limit: it stays per address.
    token = body["token"]
    status, body, headers = await call(api, "POST", "/api/v1/dev/login", token,
                                       body={"user_id": "u9", "role": "student"},
                                       headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 429


@limits(read_per_second=0.1, read_burst=2, write_per_second=0.1, write_burst=2,
        server={"trusted_proxies": ["127.0.0.1/32"]})
@pytest.mark.gen_test
async def test_public_routes_are_limited_per_ip_and_authenticated_ones_per_user(api,
                                                                              kpay_app):
    kpay_app.limiter.monotonic = FakeMonotonic()
    here = {"X-Forwarded-For": "198.51.100.1"}
    assert [(await call(api, "GET", "/api/v1/test/public", headers=here))[0]
            for _ in range(3)] == [200, 200, 429]
    other = {"X-Forwarded-For": "198.51.100.2"}
    assert (await call(api, "GET", "/api/v1/test/public", headers=other))[0] == 200
    # With a token the same route counts against the user, not the address.
    token = await api.login("alice")
    assert (await call(api, "GET", "/api/v1/test/public", token, headers=here))[0] == 200
    # Anonymous calls to a route that needs a user are 401, never counted.
    statuses = {(await call(api, "POST", "/api/v1/test/notes", headers=here))[0]
                for _ in range(5)}
    assert statuses == {401}


@limits(plugins=["wechat_pay"], write_per_second=0.01, write_burst=1, read_burst=1,
        login_burst=1)
@pytest.mark.gen_test
async def test_payment_notifies_health_and_metrics_are_never_limited(api, kpay_app):
    kpay_app.limiter.monotonic = FakeMonotonic()
    # Signed in without the (login-limited) dev route: login_burst is 1 here.
    token = issue_token(kpay_app.tokens, await kpay_app.users.sign_in("alice", "student",
                                                                      "alice"))
    for _ in range(5):
        status, body, _ = await call(api, "POST", "/api/v1/pay/wechat/notify",
                                     body={"not": "xml"})
        assert status != 429, body
        status, body, _ = await call(api, "POST", "/api/v1/pay/wechat/refund-notify")
        assert status != 429, body
        # A plugin's notify route (a BaseHandler) is exempt by its path.
        status, body, _ = await call(api, "POST", "/api/v1/pay/testpay/notify", token)
        assert status == 200, body
        for path in ("/healthz", "/metrics", "/api/v1/openapi.json", "/api/v1/test/probe"):
            status, body, _ = await call(api, "GET", path, token)
            assert status == 200, (path, body)
    # The read bucket (burst 1) is there all the same.
    assert (await call(api, "GET", "/api/v1/me", token))[0] == 200
    assert (await call(api, "GET", "/api/v1/me", token))[0] == 429


@limits(orders_per_second=0.01, orders_burst=2, write_per_second=0.01, write_burst=4)
@pytest.mark.gen_test
async def test_orders_and_declared_routes_take_from_the_orders_bucket(api, kpay_app):
    kpay_app.limiter.monotonic = FakeMonotonic()
    token = await api.login("alice")
    order = {"item": {"kind": "nothing"}, "channel": "wallet"}
    status, body, _ = await call(api, "POST", "/api/v1/orders", token, body=order)
    assert status == 400, body  # counted even when refused for its content
    status, body, _ = await call(api, "POST", "/api/v1/test/checkout", token)
    assert status == 200, body
    status, body, headers = await call(api, "POST", "/api/v1/orders", token, body=order)
    assert_limited(status, body, headers, seconds=100)
    status, body, headers = await call(api, "POST", "/api/v1/test/checkout", token)
    assert status == 429
    # The write bucket is untouched by orders.
    statuses = [(await call(api, "POST", "/api/v1/test/notes", token))[0] for _ in range(5)]
    assert statuses == [200] * 4 + [429]


@pytest.mark.gen_test
async def test_limits_are_off_in_tests_unless_turned_on(api, kpay_app):
    assert kpay_app.settings.limits.enabled is False
    assert LimitSettings().enabled is True  # but on by default
    token = await api.login("alice")
    statuses = {(await call(api, "POST", "/api/v1/test/notes", token))[0] for _ in range(80)}
    assert statuses == {200}


# -- sockets per user -----------------------------------------------------------------------


@limits(realtime={"max_sockets_per_user": 2})
@pytest.mark.gen_test
async def test_the_socket_over_the_cap_is_closed(api, kpay_app):
    alice, bob = await api.login("alice"), await api.login("bob")
    first, second = await api.socket(alice), await api.socket(alice)
    for ws in (first, second):
        assert (await ws.request("ping"))["ok"] is True
    third = await api.socket(alice)
    assert await third.closed() == 4429 and third.close_reason == "too_many_sockets"
    # Authenticating with the first frame is capped the same way.
    fourth = await api.socket()
    await fourth.send("auth", token=alice)
    assert await fourth.closed() == 4429 and fourth.close_reason == "too_many_sockets"
    # Another user is not affected, and the two sockets of alice live on.
    other = await api.socket(bob)
    assert (await other.request("ping"))["ok"] is True
    assert (await first.request("ping"))["ok"] is True
    # The count kept per user is the count of app.sockets.
    def counted() -> dict[str, int]:
        scan: dict[str, int] = {}
        for socket in kpay_app.sockets:
            if socket.user_id is not None:
                scan[socket.user_id] = scan.get(socket.user_id, 0) + 1
        assert kpay_app.sockets_per_user == scan
        return scan

    assert counted() == {"alice": 2, "bob": 1}
    # When one closes, a new one is accepted.
    second.close()
    await second.closed()
    for _ in range(500):
        if counted().get("alice") == 1:
            break
        await asyncio.sleep(0.01)
    again = await api.socket(alice)
    assert (await again.request("ping"))["ok"] is True
    assert counted() == {"alice": 2, "bob": 1}
    for ws in (first, again, other):
        ws.close()
    for _ in range(500):
        if not counted():
            break
        await asyncio.sleep(0.01)
    assert kpay_app.sockets_per_user == {}


def test_ipv6_clients_share_a_bucket_per_64():
    from kpay.core.ratelimit import limit_key

    first = limit_key("login", None, "2001:db8:1:2::1", needs_user=False)
    other = limit_key("login", None, "2001:db8:1:2:ffff::9", needs_user=False)
    elsewhere = limit_key("login", None, "2001:db8:1:3::1", needs_user=False)
    assert first == other == "ip:2001:db8:1:2::/64" and elsewhere != first
    assert limit_key("login", None, "203.0.113.7", needs_user=False) == "ip:203.0.113.7"
