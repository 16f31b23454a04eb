"""The cap on rooms not yet ended per host ([live_qa] max_open_rooms_per_host)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["live_qa"]}, "live_qa": {"max_open_rooms_per_host": 3}}


@pytest.mark.gen_test
async def test_the_room_over_the_cap_is_refused_until_one_ends(api, live):
    host = await live.host()
    scheduled = [await live.room(host, start=False) for _ in range(2)]
    running = await live.room(host, start=True)  # live rooms count too
    status, body = await api.post("/api/v1/rooms", {"title": "第四场"}, host)
    assert status == 409, body
    assert body["error"]["code"] == "too_many_open"
    assert (body["error"]["what"], body["error"]["limit"]) == ("open_rooms", 3)
    assert len((await api.get("/api/v1/rooms?host_id=me", host))[1]["rooms"]) == 3

    # Another host is not affected.
    await live.room(await live.host("other"), start=False)

    # Starting a scheduled room does not free a place; ending one does.
    status, body = await api.post(f"/api/v1/rooms/{scheduled[0]['id']}/start", token=host)
    assert status == 200, body
    status, body = await api.post("/api/v1/rooms", {"title": "第四场"}, host)
    assert status == 409 and body["error"]["code"] == "too_many_open"
    status, body = await api.post(f"/api/v1/rooms/{running['id']}/end", token=host)
    assert status == 200, body
    room = await live.room(host, start=False, title="第四场")
    assert room["state"] == "scheduled"
    status, body = await api.post("/api/v1/rooms", {"title": "第五场"}, host)
    assert status == 409 and body["error"]["code"] == "too_many_open"
