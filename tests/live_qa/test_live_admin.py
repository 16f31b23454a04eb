"""live_qa's part of the operators' console: a student's chat messages and questions
leave the room's kept history on anonymisation; the export holds them first."""

from __future__ import annotations

import pytest

from kpay.testing import assert_books_balanced

ADMIN = "/api/v1/admin/users"


@pytest.mark.gen_test
async def test_chat_and_questions_are_exported_then_removed(api, live, kpay_app):
    admin = await api.login("root", "admin")
    host = await live.host()
    room = await live.room(host, ticket_price=0, chat=True, free_questions=True)
    student = await live.student("s1", room)
    ws = await api.socket(student)
    assert (await ws.request("sub", ch=f"room:{room['id']}"))["ok"]
    said = await ws.request("pub", ch=f"room:{room['id']}", type="message",
                            data={"text": "我住在朝阳区"})
    assert said["ok"], said
    status, asked = await api.post(f"/api/v1/rooms/{room['id']}/questions",
                                   {"text": "我的私事"}, student)
    assert status == 201, asked

    data = (await api.get(f"{ADMIN}/s1/export", admin))[1]["plugins"]["live_qa"]
    assert [m["data"]["text"] for m in data["messages"]] == ["我住在朝阳区"]
    assert [q["text"] for q in data["questions"]] == ["我的私事"]
    assert len(data["tickets"]) == 1

    status, done = await api.post(f"{ADMIN}/s1/anonymise", {"confirm": "s1"}, admin)
    assert status == 200, done
    assert done["plugins"]["live_qa"] == {"questions": 1, "messages": 1}
    status, replay = await api.get(f"/api/v1/rooms/{room['id']}/messages?since=0", host)
    assert status == 200, replay
    texts = [m["data"].get("text") for m in replay["messages"]]
    assert "我住在朝阳区" not in texts and "我的私事" not in texts, replay
    status, queue = await api.get(f"/api/v1/rooms/{room['id']}/questions", host)
    assert [q["text"] for q in queue["questions"]] == ["（已删除）"]
    await assert_books_balanced(kpay_app)
