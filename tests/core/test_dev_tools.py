"""The dev panel's routes: put the clock back to real time, wipe the data; absent
(404) when dev mode is off."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": ["live_qa"]}}


@pytest.mark.gen_test
async def test_clock_reset_goes_back_to_real_time(api, kpay_app):
    token = await api.login("alice", "student")
    pinned = kpay_app.clock.offset
    status, moved = await api.post("/api/v1/dev/clock", {"advance": 86400}, token)
    assert status == 200 and moved["offset"] == pytest.approx(pinned + 86400)
    status, reset = await api.post("/api/v1/dev/clock/reset", {}, token)
    assert status == 200 and reset["offset"] == 0
    assert kpay_app.clock.offset == 0
    state = await kpay_app.store["dev_state"].find_one({"name": "clock"})
    assert state["offset"] == 0  # remembered, as a restart reads it
    status, _ = await api.post("/api/v1/dev/clock/reset", {})
    assert status == 401


@pytest.mark.gen_test
async def test_data_reset_wipes_documents_and_keeps_indexes(api, kpay_app):
    host = await api.login("carol", "consultant")
    status, _ = await api.post("/api/v1/rooms", {"title": "答疑"}, host)
    assert status == 201
    status, body = await api.post("/api/v1/dev/reset", {}, host)
    assert status == 400 and body["error"]["field"] == "confirm"  # must be spelled out
    assert await kpay_app.store["live_rooms"].count_documents({}) == 1
    indexes = await kpay_app.store["live_rooms"].index_information()
    status, body = await api.post("/api/v1/dev/reset", {"confirm": "reset"}, host)
    assert status == 200 and body["documents"] >= 2  # the room and the users at least
    assert await kpay_app.store["live_rooms"].count_documents({}) == 0
    assert await kpay_app.store["users"].count_documents({}) == 0
    assert await kpay_app.store["live_rooms"].index_information() == indexes
    state = await kpay_app.store["dev_state"].find_one({"name": "clock"})
    assert state["offset"] == kpay_app.clock.offset  # the clock stays where it was


class TestDevModeOff:
    @pytest.fixture
    def kpay_overrides(self, dev_off_overrides):
        return dev_off_overrides

    @pytest.mark.gen_test
    async def test_dev_tools_are_404(self, api, kpay_app):
        await kpay_app.users.ensure("root", "admin")
        token = kpay_app.tokens.issue("root", "admin")
        for path, body in (("/api/v1/dev/clock/reset", {}),
                           ("/api/v1/dev/reset", {"confirm": "reset"})):
            status, reply = await api.post(path, body, token)
            assert status == 404 and reply["error"]["code"] == "not_found", path
        assert await kpay_app.store["users"].count_documents({}) == 1
