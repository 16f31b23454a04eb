"""Voice answers in a live room: the host records an answer in the console (chromium's fake
microphone), and a student in room.html plays it through its signed URL; the asker is
told (docs/live_qa.md "Voice answers", docs/pages.md "Live rooms")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pagekit import CHROMIUM, CHROMIUM_ARGS, STATIC, PageKit
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides(tmp_path: Any) -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["live_qa"]},
            "media": {"path": str(tmp_path / "media")}}


@pytest.fixture
def mic_browser(io_loop: Any) -> Any:
    """Chromium with a fake microphone that needs no permission prompt."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    playwright = io_loop.run_sync(lambda: async_playwright().start())
    launched = io_loop.run_sync(lambda: playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream",
                                        "--use-fake-ui-for-media-stream",
                                        "--autoplay-policy=no-user-gesture-required"]))
    yield launched
    io_loop.run_sync(launched.close)
    io_loop.run_sync(playwright.stop)


@pytest.mark.gen_test(timeout=120)
async def test_a_recorded_voice_answer_plays_for_a_student(mic_browser, kpay_app, api):
    pages = PageKit(mic_browser, f"http://127.0.0.1:{kpay_app.port}")
    try:
        host_token = await api.login("host", "consultant", name="王老师")
        status, body = await api.post("/api/v1/rooms", {
            "title": "如何准备面试", "ticket_price": 990, "question_min_price": 500}, host_token)
        assert status == 201, body
        room_id = body["room"]["id"]
        assert (await api.post(f"/api/v1/rooms/{room_id}/start", token=host_token))[0] == 200
        student = await api.login("sam", "student", name="小明")
        await api.topup(student, 5000)
        for item in ({"kind": "live_ticket", "room_id": room_id},
                     {"kind": "live_question", "room_id": room_id, "text": "群面怎么发言？",
                      "bounty": 800}):
            status, body = await api.post("/api/v1/orders",
                                          {"item": item, "channel": "wallet"}, student)
            assert status == 201 and body["order"]["status"] == "fulfilled", body

        room = await pages.new_page(token=student)
        await pages.open(room, f"/static/room.html?id={room_id}")
        await expect(room.locator("#connection")).to_have_text("已连接")
        await expect(room.locator("#questions li")).to_have_count(1)

        host = await pages.new_page(token=host_token)
        await pages.open(host, "/static/console.html")
        await host.locator("#room-list li", has_text="如何准备面试").get_by_role(
            "button", name="管理").click()
        queue = host.locator("#queue li")
        await expect(queue).to_have_count(1)
        await queue.first.get_by_role("button", name="🎙 录音回答").click()
        await expect(queue.first.locator(".voice-status")).to_contain_text("录音中")
        await pages.screenshot(host, "console-room-recording")
        await host.wait_for_timeout(2500)  # a recording of some length (real time)
        await queue.first.get_by_role("button", name="停止并发送").click()
        await expect(queue).to_have_count(0)

        answered = room.locator('#questions li[data-status="answered"]')
        play = answered.locator(".voice-play")
        await expect(play).to_be_visible()
        await pages.screenshot(room, "room-voice-answer")
        await play.click()
        audio = answered.locator("audio")
        await expect(audio).to_have_attribute("src", re.compile(r"^/media/s\?token=\S+$"))
        # It loads and plays: the signed URL was served (ranges and all) to this student.
        await room.wait_for_function(
            "() => { const a = document.querySelector('#questions audio');"
            " return a && a.readyState >= 2 && a.currentTime > 0; }", timeout=15_000)
        await room.evaluate("document.querySelector('#questions audio').pause()")
        await pages.check_accessibility(room)
        await pages.screenshot(room, "room-voice-answer-playing")

        _, listed = await api.get(f"/api/v1/rooms/{room_id}/questions?status=all", student)
        answer = listed["questions"][0]["answer"]
        assert answer["audio_media_id"] and answer["text"] is None
        _, page = await api.get("/api/v1/notifications", student)
        assert page["notifications"][0]["title"] == "你的提问收到了语音回答"
    finally:
        await pages.close()
    assert pages.problems == [], "\n".join(pages.problems)
