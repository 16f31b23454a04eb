"""Rooms: creation, edits, states, listing, and the refusals around them."""

import pytest


@pytest.mark.gen_test
async def test_create_get_start_end(api, live):
    host = await live.host()
    room = await live.room(host, start=False, description="三个要点", capacity=30,
                           free_questions=False, chat=True)
    assert room["state"] == "scheduled" and room["host_id"] == "host"
    assert (room["ticket_price"], room["question_min_price"], room["capacity"]) == (990, 500, 30)
    assert room["free_questions"] is False and room["chat"] is True and room["sold"] == 0

    student = await api.login("s1")
    status, body = await api.get(f"/api/v1/rooms/{room['id']}", student)
    assert status == 200 and body["room"]["title"] == "如何准备面试"
    assert body["me"] == {"host": False, "ticket": None, "muted": False}

    status, started = await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    assert status == 200 and started["room"]["state"] == "live"
    status, again = await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    assert status == 409 and again["error"]["code"] == "room_already_live"

    status, ended = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert status == 200 and ended["room"]["state"] == "ended" and ended["refunded"] == 0
    status, twice = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert status == 409 and twice["error"]["code"] == "room_ended"
    status, restart = await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    assert status == 409 and restart["error"]["code"] == "room_ended"


@pytest.mark.gen_test
async def test_only_consultants_create_and_only_the_host_runs_the_room(api, live):
    student = await api.login("s1")
    status, body = await api.post("/api/v1/rooms", {"title": "x"}, student)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await api.post("/api/v1/rooms", {"title": "x"})
    assert status == 401

    host = await live.host()
    room = await live.room(host, start=False)
    other = await live.host("other")
    for path in ("start", "end"):
        status, body = await api.post(f"/api/v1/rooms/{room['id']}/{path}", token=other)
        assert status == 403 and body["error"]["code"] == "not_host"
    status, body = await api.request("PATCH", f"/api/v1/rooms/{room['id']}",
                                     {"title": "mine now"}, other)
    assert status == 403 and body["error"]["code"] == "not_host"
    status, body = await api.get(f"/api/v1/rooms/{room['id']}", other)
    assert body["room"]["title"] == "如何准备面试" and body["room"]["state"] == "scheduled"


@pytest.mark.gen_test
async def test_ending_a_room_that_never_started_is_refused(api, live):
    host = await live.host()
    room = await live.room(host, start=False)
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert status == 409 and body["error"]["code"] == "room_not_live"


@pytest.mark.gen_test
async def test_bad_room_input(api, live):
    host = await live.host()
    cases = [
        ({"title": ""}, "title"),
        ({"title": "t" * 101}, "title"),
        ({"title": "ok", "ticket_price": -1}, "ticket_price"),
        ({"title": "ok", "ticket_price": 9.9}, "ticket_price"),
        ({"title": "ok", "ticket_price": "990"}, "ticket_price"),
        ({"title": "ok", "question_min_price": 2_000_000}, "question_min_price"),
        ({"title": "ok", "capacity": 0}, "capacity"),
        ({"title": "ok", "capacity": 1_000_000}, "capacity"),
        ({"title": "ok", "starts_at": "2026-12-01T20:00:00"}, "starts_at"),
    ]
    for body, field in cases:
        status, reply = await api.post("/api/v1/rooms", body, host)
        assert status == 400, (body, reply)
        assert reply["error"]["field"] == field, (body, reply)
    status, listed = await api.get("/api/v1/rooms?host_id=me", host)
    assert listed["rooms"] == []


@pytest.mark.gen_test
async def test_edit_room_and_refuse_edits_once_ended(api, live):
    host = await live.host()
    room = await live.room(host, start=False, capacity=10)
    path = f"/api/v1/rooms/{room['id']}"
    status, body = await api.request("PATCH", path, {
        "title": "面试三讲", "ticket_price": 1990, "capacity": 20,
        "starts_at": "2026-12-01T20:00:00+08:00"}, host)
    assert status == 200, body
    edited = body["room"]
    assert (edited["title"], edited["ticket_price"], edited["capacity"]) == ("面试三讲", 1990, 20)
    assert edited["starts_at"].startswith("2026-12-01T12:00:00")
    status, body = await api.request("PATCH", path, {"ticket_price": -5}, host)
    assert status == 400 and body["error"]["field"] == "ticket_price"

    await api.post(f"{path}/start", token=host)
    await api.post(f"{path}/end", token=host)
    status, body = await api.request("PATCH", path, {"title": "too late"}, host)
    assert status == 409 and body["error"]["code"] == "room_ended"
    status, body = await api.get(path, host)
    assert body["room"]["title"] == "面试三讲"


@pytest.mark.gen_test
async def test_capacity_cannot_drop_below_sold(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0, capacity=3)
    for n in range(2):
        await live.student(f"s{n}", room)
    path = f"/api/v1/rooms/{room['id']}"
    status, body = await api.request("PATCH", path, {"capacity": 1}, host)
    assert status == 409 and body["error"]["code"] == "capacity_below_sold"
    status, body = await api.request("PATCH", path, {"capacity": 2}, host)
    assert status == 200 and body["room"]["capacity"] == 2
    status, body = await live.order(await api.login("s9"),
                                    {"kind": "live_ticket", "room_id": room["id"]})
    assert status == 409 and body["error"]["code"] == "sold_out"


@pytest.mark.gen_test
async def test_listing(api, live):
    host = await live.host()
    other = await live.host("other")
    first = await live.room(host, start=False, title="一", starts_at="2026-12-03T12:00:00Z")
    second = await live.room(other, start=False, title="二", starts_at="2026-12-02T12:00:00Z")
    done = await live.room(host, title="三")
    await api.post(f"/api/v1/rooms/{done['id']}/end", token=host)

    status, mine = await api.get("/api/v1/rooms?host_id=me", host)
    assert status == 200
    assert [r["id"] for r in mine["rooms"]] == [done["id"], first["id"]]
    status, theirs = await api.get("/api/v1/rooms?host_id=other", host)
    assert [r["id"] for r in theirs["rooms"]] == [second["id"]]

    student = await api.login("s1")
    status, upcoming = await api.get("/api/v1/rooms", student)
    assert [r["id"] for r in upcoming["rooms"]] == [second["id"], first["id"]]


@pytest.mark.gen_test
async def test_unknown_room(api, live):
    token = await api.login("s1")
    for method, path in [("GET", "/api/v1/rooms/nope"), ("POST", "/api/v1/rooms/nope/start"),
                         ("GET", "/api/v1/rooms/nope/questions"),
                         ("GET", "/api/v1/rooms/nope/messages")]:
        status, body = await api.request(method, path, {} if method == "POST" else None, token)
        assert status == 404 and body["error"]["code"] == "room_not_found", (path, body)


@pytest.mark.gen_test
async def test_routes_are_in_openapi(api):
    _status, doc = await api.get("/api/v1/openapi.json")
    paths = doc["paths"]
    assert "post" in paths["/api/v1/rooms"] and "get" in paths["/api/v1/rooms"]
    assert "patch" in paths["/api/v1/rooms/{room_id}"]
    for path in ("start", "end", "questions", "messages"):
        assert f"/api/v1/rooms/{{room_id}}/{path}" in paths
    assert "delete" in paths["/api/v1/rooms/{room_id}/members/{user_id}"]
    assert "post" in paths["/api/v1/rooms/{room_id}/questions/{question_id}/answer"]
    assert "delete" in paths["/api/v1/rooms/{room_id}/messages/{seq}"]
