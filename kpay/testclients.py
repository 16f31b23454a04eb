"""The clients kpay's test fixtures hand out (``kpay.testing``): a JSON API client, a
logged-in user, the dev clock and a WebSocket client speaking kpay's frames. Plugin
authors get them through the fixtures; importing them from ``kpay.testing`` works too."""

from __future__ import annotations

import asyncio
import json
import types
import uuid
from typing import TYPE_CHECKING, Any

import tornado.httpclient
import tornado.websocket

if TYPE_CHECKING:
    from kpay.core.app import KPay


class ApiClient:
    """A small JSON client for the running app."""

    def __init__(self, app: KPay) -> None:
        self.app = app
        self.base = f"http://127.0.0.1:{app.port}"
        self.http = tornado.httpclient.AsyncHTTPClient()

    @classmethod
    def at_port(cls, port: int) -> ApiClient:
        """A client of a server in another process (no app object here: no ``topup``)."""
        return cls(types.SimpleNamespace(port=port))  # type: ignore[arg-type]

    async def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                      raw: bytes | str | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, parsed, _ = await self.exchange(method, path, body, token, raw, headers)
        return status, parsed

    async def exchange(self, method: str, path: str, body: Any = None,
                       token: str | None = None, raw: bytes | str | None = None,
                       headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """:meth:`request`, with the response headers too: ``(status, json, headers)``."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        response = await self.http.fetch(self.base + path, method=method, body=data,
                                         headers=sent, raise_error=False,
                                         allow_nonstandard_methods=True)
        text = response.body.decode() if response.body else ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return response.code, parsed, response.headers

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return await self.request("GET", path, token=token)

    async def post(self, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return await self.request("POST", path, body if body is not None else {}, token=token)

    async def put(self, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return await self.request("PUT", path, body if body is not None else {}, token=token)

    async def login(self, user_id: str, role: str = "student", name: str | None = None) -> str:
        """Dev login; returns the token."""
        body = {"user_id": user_id, "role": role, **({"name": name} if name else {})}
        status, reply = await self.post("/api/v1/dev/login", body)
        assert status == 200, reply
        return reply["token"]

    async def topup(self, token: str, amount: int, channel: str = "native") -> dict[str, Any]:
        """Put ``amount`` fen in the wallet through a top-up order on ``channel`` (default
        ``native``: it needs nothing from the payer), paid by the dev payer."""
        if not any(c != "wallet" for c in self.app.money.orders.channels):
            # No payment provider loaded: book it as money from outside, as a payment would.
            user = self.app.tokens.verify(token)
            await self.app.money.ledger.post(
                f"test-topup:{uuid.uuid4().hex}",
                [("external:test", -amount), (f"wallet:{user.id}", amount)], "test top-up")
            return {}
        status, created = await self.post("/api/v1/orders", {
            "item": {"kind": "wallet_topup", "amount": amount}, "channel": channel}, token)
        assert status == 201, created
        status, paid = await self.post(f"/api/v1/dev/orders/{created['order']['id']}/pay",
                                       token=token)
        assert status == 200, paid
        return paid["order"]

    async def as_user(self, user_id: str, role: str = "student",
                      name: str | None = None) -> UserClient:
        """Dev login, returning a client that sends that user's token on every call."""
        return UserClient(self, user_id, role, await self.login(user_id, role, name))

    async def socket(self, token: str | None = None, query: str = "",
                     headers: dict[str, str] | None = None) -> SocketClient:
        url = f"ws://127.0.0.1:{self.app.port}/ws"
        params = [p for p in (f"token={token}" if token else "", query) if p]
        if params:
            url += "?" + "&".join(params)
        request = tornado.httpclient.HTTPRequest(url, headers=headers or {})
        connection = await tornado.websocket.websocket_connect(request)
        return SocketClient(connection)


class UserClient:
    """A logged-in user: the ``ApiClient`` calls with the user's token filled in."""

    def __init__(self, api: ApiClient, user_id: str, role: str, token: str) -> None:
        self.api = api
        self.id = user_id
        self.role = role
        self.token = token

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.api.get(path, self.token)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.api.post(path, body, self.token)

    async def put(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.api.put(path, body, self.token)

    async def topup(self, amount: int, channel: str = "native") -> dict[str, Any]:
        return await self.api.topup(self.token, amount, channel)

    async def wallet(self) -> dict[str, Any]:
        status, wallet = await self.get("/api/v1/wallet")
        assert status == 200, wallet
        return wallet

    async def socket(self, query: str = "") -> SocketClient:
        return await self.api.socket(self.token, query)


class DevClock:
    """The app's dev clock: ``now()``, and ``await advance(seconds)``, which moves it and
    runs every periodic job once (the scheduler is off in tests)."""

    def __init__(self, app: KPay) -> None:
        self.app = app

    def now(self) -> Any:
        return self.app.clock.now()

    async def advance(self, seconds: float) -> None:
        await self.app.advance_clock(seconds)


class SocketClient:
    """A real WebSocket client speaking kpay's frames."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self.connection = connection
        self.ref = 0
        self.events: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []

    async def send(self, op: str, **fields: Any) -> int:
        self.ref += 1
        await self.connection.write_message(json.dumps({"op": op, "ref": self.ref, **fields}))
        return self.ref

    async def send_raw(self, message: str | bytes) -> None:
        await self.connection.write_message(message, binary=isinstance(message, bytes))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next frame, or None when the server closed the socket."""
        message = await asyncio.wait_for(self.connection.read_message(), timeout)
        if message is None:
            return None
        frame = json.loads(message)
        self.frames.append(frame)
        return frame

    async def request(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a frame and return its reply; events that come first are kept."""
        ref = await self.send(op, **fields)
        while True:
            frame = await self.receive(timeout)
            if frame is None:
                raise ConnectionError(f"socket closed: {self.close_code} {self.close_reason}")
            if frame.get("op") == "reply" and frame.get("ref") == ref:
                return frame
            if frame.get("op") == "event":
                self.events.append(frame)

    async def event(self, type: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next event (of ``type``), from those kept or from the socket."""
        for i, frame in enumerate(self.events):
            if type is None or frame["type"] == type:
                return self.events.pop(i)
        while True:
            frame = await self.receive(timeout)
            if frame is None:
                raise ConnectionError(f"socket closed: {self.close_code} {self.close_reason}")
            if frame.get("op") == "event" and (type is None or frame["type"] == type):
                return frame
            if frame.get("op") == "event":
                self.events.append(frame)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close the socket; return the close code."""
        while await self.receive(timeout) is not None:
            pass
        return self.close_code

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self.connection.close_reason

    def close(self) -> None:
        self.connection.close()


async def wait_until(condition: Any, timeout: float = 5.0, interval: float = 0.02,
                     message: str = "the condition never held") -> Any:
    """Poll ``condition()`` until it returns something truthy (it may return an
    awaitable, such as an ``async def`` reading the database); return that value.

    For effects that arrive asynchronously (a socket's presence, a background task).
    Fails the test with ``message`` and the last value after ``timeout`` seconds; the
    wait is judged on the event loop's monotonic clock, not the app's clock.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"{message} (last: {value!r})")
        await asyncio.sleep(interval)
