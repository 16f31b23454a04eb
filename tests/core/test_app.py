"""App lifecycle: the dev clock, its jobs, and its survival across a restart."""

from __future__ import annotations

from datetime import datetime

import pytest

from kpay import hookimpl
from kpay.core.app import KPay
from kpay.core.scheduler import PeriodicJob


class ClockWatcher:
    """A throwaway plugin whose periodic job records the clock time it saw."""

    def __init__(self) -> None:
        self.seen: list[datetime] = []
        self.app: KPay | None = None

    @hookimpl
    def register_jobs(self, app):
        self.app = app
        return [PeriodicJob("clock_watcher", self.run, seconds=60)]

    async def run(self) -> None:
        assert self.app is not None
        self.seen.append(self.app.clock.now())


@pytest.fixture
def watcher() -> ClockWatcher:
    return ClockWatcher()


@pytest.fixture
def kpay_extra_plugins(watcher):
    return [("clock_watcher", watcher)]


@pytest.mark.gen_test
async def test_dev_clock_moves_time_and_runs_jobs(api, kpay_app, watcher):
    token = await api.login("alice")
    before, pinned = kpay_app.clock.now(), kpay_app.clock.offset
    status, body = await api.post("/api/v1/dev/clock", {"advance": 3 * 86400}, token)
    assert status == 200, body
    assert len(watcher.seen) == 1
    moved = (watcher.seen[0] - before).total_seconds()
    assert 3 * 86400 <= moved < 3 * 86400 + 60
    assert datetime.fromisoformat(body["now"]) >= watcher.seen[0]
    assert body["offset"] == pinned + 3 * 86400

    status, body = await api.get("/api/v1/dev/clock", token)
    assert status == 200 and body["offset"] == pinned + 3 * 86400
    # A token issued before a 3-day jump is still inside its 7-day lifetime.
    status, _ = await api.get("/api/v1/me", token)
    assert status == 200


@pytest.mark.gen_test
async def test_dev_clock_refuses_bad_input(api, kpay_app, watcher):
    token = await api.login("alice")
    pinned = kpay_app.clock.offset
    for sent in ({"advance": -5}, {"advance": 0}, {"advance": "soon"}, {},
                 {"advance": 10 ** 9}):
        status, body = await api.post("/api/v1/dev/clock", sent, token)
        assert status == 400 and body["error"]["field"] == "advance", (sent, body)
    status, body = await api.post("/api/v1/dev/clock", {"advance": 60})
    assert status == 401
    assert kpay_app.clock.offset == pinned and watcher.seen == []


@pytest.mark.gen_test
async def test_dev_clock_survives_a_restart(api, kpay_app, kpay_settings):
    token = await api.login("alice")
    status, _ = await api.post("/api/v1/dev/clock", {"advance": 7200}, token)
    assert status == 200
    restarted = kpay_settings.new_app()
    assert restarted.clock.offset == kpay_settings.clock_offset
    await restarted.start()
    try:
        assert restarted.clock.offset == kpay_settings.clock_offset + 7200
    finally:
        await restarted.stop()
