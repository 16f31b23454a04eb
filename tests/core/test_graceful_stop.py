"""A stopping app (SIGTERM, a worker replaced on SIGHUP) lets the requests under way
finish, up to ``[server] shutdown_timeout_seconds`` (docs/operations.md, "Workers")."""

from __future__ import annotations

import asyncio
import logging

import pytest
import tornado.httpclient

from kpay import hookimpl
from kpay.core.web import BaseHandler, Route, api


class SlowHandler(BaseHandler):
    @api("Test plugin: answers once released", auth=False)
    async def get(self) -> None:
        self.kpay.plugin_state("slow.started", asyncio.Event).set()
        await self.kpay.plugin_state("slow", asyncio.Event).wait()
        # Still has its database after the app began stopping.
        self.write_json({"ok": await self.kpay.store.ping()})


class SlowPlugin:
    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/slow", SlowHandler, tags=("slow",))]

    @hookimpl
    def register_collections(self, app):
        return []


@pytest.fixture
def slow():
    return SlowPlugin()


@pytest.fixture
def kpay_extra_plugins(slow):
    return [("slow", slow)]


@pytest.fixture
def kpay_overrides():
    return {"plugins": {"enabled": []}, "server": {"shutdown_timeout_seconds": 1.5}}


def release(kpay_app) -> None:
    kpay_app.plugin_state("slow", asyncio.Event).set()


async def start_slow_request(kpay_app):
    client = tornado.httpclient.AsyncHTTPClient()
    fetch = asyncio.ensure_future(client.fetch(
        f"http://127.0.0.1:{kpay_app.port}/api/v1/slow", raise_error=False, request_timeout=10))
    await asyncio.wait_for(kpay_app.plugin_state("slow.started", asyncio.Event).wait(), 10)
    assert kpay_app.requests_in_flight == 1
    return fetch


@pytest.mark.gen_test
async def test_stop_waits_for_a_request_under_way(kpay_app, slow):
    fetch = await start_slow_request(kpay_app)
    stopping = asyncio.ensure_future(kpay_app.stop())
    await asyncio.sleep(0.3)
    assert not stopping.done()
    release(kpay_app)
    response = await fetch
    assert response.code == 200 and b'"ok": true' in response.body
    await stopping
    assert kpay_app.requests_in_flight == 0


@pytest.mark.gen_test
async def test_stop_gives_up_after_the_shutdown_timeout(kpay_app, slow, caplog):
    await start_slow_request(kpay_app)
    started = asyncio.get_running_loop().time()
    with caplog.at_level(logging.WARNING, logger="kpay"):
        await kpay_app.stop()
    assert 1.4 < asyncio.get_running_loop().time() - started < 5
    assert "shutdown_timeout_seconds" in caplog.text
    release(kpay_app)
