"""Rooms on the storefront: categories, live/upcoming filters with host names, search
kept in step with create/edit/start/end, and GET /me/rooms."""

from __future__ import annotations

from urllib.parse import quote

import pytest


async def search(api, query: str) -> list[str]:
    status, body = await api.get(f"/api/v1/search?kind=room&q={quote(query)}")
    assert status == 200, body
    return [item["title"] for item in body["items"]]


@pytest.mark.gen_test
async def test_rooms_by_status_and_category_with_host_names(api, live, kpay_app):
    host = await api.login("host", "consultant", name="周老师")
    live_room = await live.room(host, title="产品经理的一天", category="职场")
    upcoming = await live.room(host, start=False, title="亲子沟通", category="亲子")
    student = await live.student("stu")

    status, body = await api.get("/api/v1/rooms?status=live", student)
    assert status == 200
    assert [(r["id"], r["host_name"]) for r in body["rooms"]] == [(live_room["id"], "周老师")]
    status, body = await api.get("/api/v1/rooms?status=upcoming", student)
    assert [r["id"] for r in body["rooms"]] == [upcoming["id"]]
    status, body = await api.get(f"/api/v1/rooms?category={quote('亲子')}", student)
    assert [r["category"] for r in body["rooms"]] == ["亲子"]
    for bad in ("status=ended", f"category={quote('赌博')}"):
        status, body = await api.get("/api/v1/rooms?" + bad, student)
        assert status == 400 and body["error"]["field"] in ("status", "category"), bad
    status, body = await api.post("/api/v1/rooms", {"title": "x", "category": "赌博"}, host)
    assert status == 400 and body["error"]["field"] == "category"


@pytest.mark.gen_test
async def test_search_follows_the_room(api, live):
    host = await api.login("host", "consultant", name="周老师")
    room = await live.room(host, start=False, title="如何成为产品经理")
    assert await search(api, "产品经理") == ["如何成为产品经理"]
    assert await search(api, "周老师") == ["如何成为产品经理"]
    status, _ = await api.request("PATCH", f"/api/v1/rooms/{room['id']}",
                                  {"title": "面试技巧", "category": "职场"}, token=host)
    assert status == 200
    assert await search(api, "产品经理") == []
    status, body = await api.get("/api/v1/search?q=" + quote("面试"))
    item = body["items"][0]
    assert (item["category"], item["extra"]["state"], item["extra"]["price"]) == (
        "职场", "scheduled", 990)
    await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    status, body = await api.get("/api/v1/search?q=" + quote("面试"))
    assert body["items"][0]["extra"]["state"] == "live"
    await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert await search(api, "面试") == []  # an ended room is not sold any more


@pytest.mark.gen_test
async def test_my_rooms_lists_the_rooms_i_bought(api, live):
    host = await api.login("host", "consultant", name="周老师")
    first = await live.room(host, title="第一场")
    second = await live.room(host, title="第二场", ticket_price=0)
    await live.room(host, title="没买的")
    student = await live.student("stu", first, funds=990)
    await live.buy_ticket(student, second)
    status, body = await api.get("/api/v1/me/rooms", student)
    assert status == 200
    assert [(r["title"], r["host_name"]) for r in body["rooms"]] == [
        ("第二场", "周老师"), ("第一场", "周老师")]
    status, body = await api.get("/api/v1/me/rooms", host)
    assert body["rooms"] == []
