"""live_qa's notifications are saved in Chinese and link to the room: a paid question
answered, and one refunded when the room ends (docs/api.md "Notifications")."""

from __future__ import annotations

import pytest


async def saved(api, token):
    status, body = await api.get("/api/v1/notifications", token)
    assert status == 200, body
    return {n["kind"]: n for n in body["notifications"]}


@pytest.mark.gen_test
async def test_answered_and_refunded_questions_are_told_in_chinese(api, live):
    host = await live.host()
    room = await live.room(host, ticket_price=0, question_min_price=300)
    alice = await live.student("alice", room, funds=5000)
    await live.ask_paid(alice, room, "怎么写简历", 400)
    await live.ask_paid(alice, room, "面试穿什么", 700)
    _, listed = await api.get(f"/api/v1/rooms/{room['id']}/questions?status=all", alice)
    asked = {q["text"]: q["id"] for q in listed["questions"]}
    status, body = await api.post(
        f"/api/v1/rooms/{room['id']}/questions/{asked['怎么写简历']}/answer",
        {"text": "一页就够"}, host)
    assert status == 200, body
    status, body = await api.post(f"/api/v1/rooms/{room['id']}/end", token=host)
    assert status == 200, body

    told = await saved(api, alice)
    link = f"/static/room.html?id={room['id']}"
    assert told["question_answered"]["title"] == "你的提问收到了回答"
    assert "「如何准备面试」" in told["question_answered"]["body"]
    assert "怎么写简历" in told["question_answered"]["body"]
    assert told["question_answered"]["link"] == link
    refunded = told["question_refunded"]
    assert refunded["title"] == "提问已退款 ¥7.00"
    assert refunded["body"] == (
        "你在直播间「如何准备面试」中的提问「面试穿什么」未获回答，悬赏已退回钱包。")
    assert refunded["link"] == link
    # The host was told nothing of it.
    assert await saved(api, host) == {}
