"""The load test's clients (bench/loadtest.py): one user's REST calls and socket.

Both raise :class:`Refused` for an answer that is not a success, named as the report
counts it (bench/loadtest_report.py): ``rate_limited`` for an HTTP 429 or a socket
``rate_limited`` reply, else ``<status> <error code>`` (docs/api.md, the error
envelope) or ``ws <code>`` for a socket reply.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any
from urllib.parse import urlsplit

import tornado.websocket
from loadtest_report import Stats
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient

REQUEST_TIMEOUT = 30.0  # seconds; a slower answer is an error, "599 timeout"
REPLY_TIMEOUT = 30.0


class Refused(Exception):
    def __init__(self, status: int | str, code: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{status} {code}")
        self.status, self.code, self.retry_after = status, code, retry_after
        self.outcome = "rate_limited" if code == "rate_limited" else f"{status} {code}"


def http_client(users: int) -> AsyncHTTPClient:
    """Its own client, with room for every user's requests at once (the default of 10
    in flight would queue them here and time the queue instead of the server)."""
    return SimpleAsyncHTTPClient(force_instance=True, max_clients=max(10, users * 6 + 50))


class Api:
    """One user's REST calls (``Authorization: Bearer``); returns the JSON answer."""

    def __init__(self, http: AsyncHTTPClient, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = HTTPRequest(self.base + path, method=method, headers=headers,
                              body=None if body is None else json.dumps(body),
                              request_timeout=REQUEST_TIMEOUT)
        try:
            response = await self.http.fetch(request, raise_error=False)
        except HTTPTimeoutError:
            raise Refused(599, "timeout") from None
        except (HTTPClientError, OSError, StreamClosedError) as error:  # no answer at all
            raise Refused(599, type(error).__name__.lower()) from None
        if response.code == 599:
            raise Refused(599, type(response.error).__name__.lower())
        try:
            answer = json.loads(response.body or b"{}")
        except ValueError:
            answer = {}
        if response.code >= 400:
            error = answer.get("error") if isinstance(answer, dict) else None
            code = error.get("code", "?") if isinstance(error, dict) else "not_json"
            retry = float(response.headers.get("Retry-After") or 1)
            raise Refused(response.code, code, retry)
        return answer

    async def get(self, path: str) -> dict[str, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        return await self.call("POST", path, body)

    async def put(self, path: str, body: Any) -> dict[str, Any]:
        return await self.call("PUT", path, body)


class Socket:
    """One user's socket (docs/websocket.md): replies are matched by ``ref``; every
    event is counted in ``stats`` as it arrives."""

    def __init__(self, connection: Any, stats: Stats) -> None:
        self.connection, self.stats = connection, stats
        self.refs = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, base: str, token: str, stats: Stats) -> Socket:
        parts = urlsplit(base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        try:
            connection = await tornado.websocket.websocket_connect(
                f"{scheme}://{parts.netloc}/ws?token={token}", connect_timeout=REQUEST_TIMEOUT)
        except HTTPClientError as error:  # refused at the handshake, or timed out
            raise Refused(error.code, "handshake") from None
        except (OSError, StreamClosedError) as error:
            raise Refused(599, type(error).__name__.lower()) from None
        return cls(connection, stats)

    @property
    def closed(self) -> bool:
        return self.reader.done()

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        ref = next(self.refs)
        future = self.waiting[ref] = asyncio.get_running_loop().create_future()
        try:
            await self.connection.write_message(json.dumps({**frame, "ref": ref}))
            reply = await asyncio.wait_for(future, REPLY_TIMEOUT)
        except tornado.websocket.WebSocketClosedError:
            raise Refused("ws", "closed") from None
        finally:
            self.waiting.pop(ref, None)
        if not reply.get("ok"):
            raise Refused("ws", (reply.get("error") or {}).get("code", "?"), 1.0)
        return reply

    async def _read(self) -> None:
        while (message := await self.connection.read_message()) is not None:
            frame = json.loads(message)
            if frame.get("op") == "event":
                self.stats.event(frame, time.time())
            elif frame.get("op") == "reply":
                future = self.waiting.get(frame.get("ref"))
                if future is not None and not future.done():
                    future.set_result(frame)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(tornado.websocket.WebSocketClosedError())

    def close(self) -> None:
        self.connection.close()
        self.reader.cancel()
