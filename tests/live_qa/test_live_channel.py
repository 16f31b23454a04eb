"""The room:<id> channel: access, messages, chat, presence, moderation, replay."""

import pytest


async def joined(api, token, room):
    ws = await api.socket(token)
    reply = await ws.request("sub", ch=f"room:{room['id']}")
    assert reply["ok"] is True, reply
    return ws


async def say(ws, room, **data):
    return await ws.request("pub", ch=f"room:{room['id']}", type="message", data=data)


@pytest.mark.gen_test
async def test_only_ticket_holders_and_the_host_subscribe(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    holder = await live.student("s1", room)
    stranger = await live.student("stranger")
    await joined(api, host, room)
    await joined(api, holder, room)
    ws = await api.socket(stranger)
    denied = await ws.request("sub", ch=f"room:{room['id']}")
    assert denied["ok"] is False and denied["error"]["code"] == "forbidden"
    denied = await ws.request("sub", ch="room:nope")
    assert denied["ok"] is False
    other_host = await live.host("other")
    ws = await api.socket(other_host)
    assert (await ws.request("sub", ch=f"room:{room['id']}"))["ok"] is False


@pytest.mark.gen_test
async def test_host_messages_are_broadcast_and_kept(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    student = await live.student("s1", room)
    host_ws = await joined(api, host, room)
    student_ws = await joined(api, student, room)
    assert (await say(host_ws, room, text="大家好"))["ok"] is True
    assert (await say(host_ws, room, image_url="https://cdn.example.com/slide1.png"))["ok"]
    assert (await say(host_ws, room, audio_url="https://cdn.example.com/a.mp3",
                      duration=42))["ok"]
    first = await student_ws.event("message")
    assert first["data"]["text"] == "大家好" and first["data"]["from"] == "host"
    assert first["data"]["role"] == "host"
    second = await student_ws.event("message")
    third = await student_ws.event("message")
    assert second["data"]["image_url"].endswith("slide1.png")
    assert third["data"]["duration"] == 42 and third["seq"] == second["seq"] + 1

    _status, replay = await api.get(f"/api/v1/rooms/{room['id']}/messages", student)
    kept = [m for m in replay["messages"] if m["type"] == "message"]
    assert [m["seq"] for m in kept] == [first["seq"], second["seq"], third["seq"]]
    assert kept[0]["data"]["text"] == "大家好"


@pytest.mark.gen_test
async def test_bad_messages_are_refused(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    ws = await joined(api, host, room)
    cases = [
        ({}, "invalid_field"),
        ({"text": ""}, "invalid_field"),
        ({"text": "长" * 2001}, "text_too_long"),
        ({"image_url": "ftp://x/y.png"}, "invalid_field"),
        ({"text": "hi", "html": "<b>"}, "invalid_field"),
    ]
    for data, code in cases:
        reply = await say(ws, room, **data)
        assert reply["ok"] is False and reply["error"]["code"] == code, (data, reply)
    reply = await ws.request("pub", ch=f"room:{room['id']}", type="question", data={"text": "x"})
    assert reply["ok"] is False and reply["error"]["code"] == "bad_type"
    _status, replay = await api.get(f"/api/v1/rooms/{room['id']}/messages", host)
    assert [m["type"] for m in replay["messages"]] == ["room_state"]


@pytest.mark.gen_test
async def test_messages_need_a_live_room(api, live):
    host = await live.host()
    room = await live.room(host, start=False, ticket_price=0)
    ws = await joined(api, host, room)
    reply = await say(ws, room, text="too early")
    assert reply["ok"] is False and reply["error"]["code"] == "room_not_live"
    await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    assert (await ws.event("room_state"))["data"]["state"] == "live"
    assert (await say(ws, room, text="now"))["ok"] is True
    await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert (await ws.event("room_state"))["data"]["state"] == "ended"
    reply = await say(ws, room, text="too late")
    assert reply["ok"] is False and reply["error"]["code"] == "room_ended"


@pytest.mark.gen_test
async def test_student_chat_only_where_allowed(api, live):
    host = await live.host()
    quiet = await live.room(host, ticket_price=0)
    student = await live.student("s1", quiet)
    ws = await joined(api, student, quiet)
    reply = await say(ws, quiet, text="hello?")
    assert reply["ok"] is False and reply["error"]["code"] == "chat_disabled"

    chatty = await live.room(host, ticket_price=0, chat=True)
    await live.buy_ticket(student, chatty)
    host_ws = await joined(api, host, chatty)
    ws = await joined(api, student, chatty)
    assert (await say(ws, chatty, text="老师好"))["ok"] is True
    event = await host_ws.event("message")
    assert event["data"] == {"text": "老师好", "from": "s1", "role": "student",
                             "at": event["data"]["at"]}
    reply = await say(ws, chatty, image_url="https://cdn.example.com/meme.gif")
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_field"


@pytest.mark.gen_test
async def test_mute_and_unmute(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0, chat=True)
    student = await live.student("s1", room)
    ws = await joined(api, student, room)
    base = f"/api/v1/rooms/{room['id']}/members/s1"
    status, body = await api.post(f"{base}/mute", token=student)
    assert status == 403 and body["error"]["code"] == "not_host"
    status, body = await api.post(f"{base}/mute", token=host)
    assert status == 200 and body == {"user_id": "s1", "muted": True}
    assert (await ws.event("user_muted"))["data"] == {"user_id": "s1", "muted": True}

    reply = await say(ws, room, text="let me speak")
    assert reply["ok"] is False and reply["error"]["code"] == "muted"
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/questions", {"text": "q"},
                                  student)
    assert status == 403 and body["error"]["code"] == "muted"
    await api.topup(student, 1000)
    status, body = await live.ask_paid(student, room, "paid q", 800)
    assert status == 403 and body["error"]["code"] == "muted"
    assert (await live.wallet(student))["balance"] == 1000

    status, body = await api.post(f"{base}/unmute", token=host)
    assert status == 200 and body["muted"] is False
    assert (await say(ws, room, text="thanks"))["ok"] is True
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/members/nobody/mute",
                                  token=host)
    assert status == 404 and body["error"]["code"] == "not_a_member"


@pytest.mark.gen_test
async def test_remove_a_message(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0, chat=True)
    student = await live.student("s1", room)
    host_ws = await joined(api, host, room)
    ws = await joined(api, student, room)
    await say(ws, room, text="spam spam")
    spam = await host_ws.event("message")
    path = f"/api/v1/rooms/{room['id']}/messages/{spam['seq']}"
    status, body = await api.request("DELETE", path, token=student)
    assert status == 403 and body["error"]["code"] == "not_host"
    status, body = await api.request("DELETE", path, token=host)
    assert status == 200 and body == {"removed": spam["seq"]}
    assert (await ws.event("message_removed"))["data"] == {"seq": spam["seq"]}
    status, body = await api.request("DELETE", path, token=host)
    assert status == 409 and body["error"]["code"] == "already_removed"
    status, body = await api.request("DELETE", f"/api/v1/rooms/{room['id']}/messages/1",
                                     token=host)
    assert status == 404 and body["error"]["code"] == "message_not_found"
    # Digits int() or BSON cannot take: "²" (%C2%B2) and 19 digits are refused, not a 500.
    for seq in ("%C2%B2", "9" * 19):
        status, body = await api.request(
            "DELETE", f"/api/v1/rooms/{room['id']}/messages/{seq}", token=host)
        assert status == 400 and body["error"]["code"] == "invalid_field", (seq, body)

    status, replay = await api.get(f"/api/v1/rooms/{room['id']}/messages", student)
    [kept] = [m for m in replay["messages"] if m["seq"] == spam["seq"]]
    assert kept["data"] == {"removed": True, "from": "s1"}
    assert "spam" not in str(replay)


@pytest.mark.gen_test
async def test_remove_a_user(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=990)
    student = await live.student("s1", room, funds=990)
    ws = await joined(api, student, room)
    second = await joined(api, student, room)
    path = f"/api/v1/rooms/{room['id']}/members/s1"
    status, body = await api.request("DELETE", path, token=student)
    assert status == 403
    status, body = await api.request("DELETE", path, token=host)
    assert status == 200 and body["subscriptions_ended"] == 2
    for socket in (ws, second):
        while True:
            frame = await socket.receive()
            if frame.get("op") == "unsubscribed":
                break
        assert frame == {"op": "unsubscribed", "ch": f"room:{room['id']}",
                         "reason": "removed_by_host"}
    again = await ws.request("sub", ch=f"room:{room['id']}")
    assert again["ok"] is False and again["error"]["code"] == "forbidden"
    status, body = await api.get(f"/api/v1/rooms/{room['id']}/messages", student)
    assert status == 403 and body["error"]["code"] == "no_ticket"
    await api.topup(student, 990)
    status, body = await live.order(student, {"kind": "live_ticket", "room_id": room["id"]})
    assert status == 409 and body["error"]["code"] == "already_has_ticket"
    assert (await live.wallet(student))["balance"] == 990


@pytest.mark.gen_test
async def test_presence_counts(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    host_ws = await joined(api, host, room)
    first = await host_ws.event("presence")
    assert first["data"] == {"count": 1}
    students = [await live.student(f"s{n}", room) for n in range(3)]
    sockets = [await joined(api, token, room) for token in students]
    # Joins within the throttle window fold into one later event with the final count.
    counts = [1]
    while counts[-1] != 4:
        counts.append((await host_ws.event("presence"))["data"]["count"])
    assert counts[-1] == 4
    sockets[0].close()
    while (await host_ws.event("presence"))["data"]["count"] != 3:
        pass


@pytest.mark.gen_test
async def test_replay_pages_and_socket_resume(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0)
    student = await live.student("s1", room)
    host_ws = await joined(api, host, room)
    for n in range(7):
        assert (await say(host_ws, room, text=f"m{n}"))["ok"]
    path = f"/api/v1/rooms/{room['id']}/messages"
    seen, since = [], 0
    while True:
        status, page = await api.get(f"{path}?since={since}&limit=3", student)
        assert status == 200 and len(page["messages"]) <= 3
        seen += page["messages"]
        since = page["next_since"]
        if not page["more"]:
            break
    texts = [m["data"].get("text") for m in seen if m["type"] == "message"]
    assert texts == [f"m{n}" for n in range(7)]
    seqs = [m["seq"] for m in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # A socket resuming from the 3rd message gets the rest, recovered from memory.
    third = next(m for m in seen if m["data"].get("text") == "m2")["seq"]
    ws = await api.socket(student)
    reply = await ws.request("sub", ch=f"room:{room['id']}", since=third)
    assert reply["ok"] and reply["recovered"] is True
    resumed = [(await ws.event("message"))["data"]["text"] for _ in range(4)]
    assert resumed == ["m3", "m4", "m5", "m6"]

    await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    status, after = await api.get(f"{path}?since={third}&limit=100", student)
    assert [m["data"].get("text") or m["data"].get("state") for m in after["messages"]] == [
        "m3", "m4", "m5", "m6", "ended"]
    for bad in ("since=-1", "since=abc", "limit=0", "limit=501"):
        status, _body = await api.get(f"{path}?{bad}", student)
        assert status == 400, bad
