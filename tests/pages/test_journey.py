"""Issue 16's whole journey in one browser, as a student on a 390 px phone: the author's
course (a cover and an audio lesson, uploaded through the media API) is found from the
home page by a Chinese search, bought from the wallet, its audio played, stopped, and
after a reload resumed within 2 s of the same point."""

from __future__ import annotations

from typing import Any

import pytest
from pagekit import CHROMIUM_ARGS, STATIC
from playwright.async_api import expect

from kpay.testmedia import png_bytes, upload, wav_bytes


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["course_drip"]}}


@pytest.fixture
def browser_args() -> list[str]:
    """Audio that plays without a tap (a test has no finger)."""
    return [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]


async def audio_time(page) -> float:
    return await page.locator("#reader-player audio").evaluate("a => a.currentTime")


@pytest.mark.gen_test(timeout=180)
async def test_find_by_chinese_search_buy_play_and_resume(pages, api):
    author = await api.login("mei", "consultant", name="梅老师")
    cover = await upload(api, author, "image", "cover", png_bytes(640, 360), "cover.png")
    audio = await upload(api, author, "audio", "lesson", wav_bytes(8), "lesson.wav")
    status, created = await api.post("/api/v1/courses", {
        "title": "零基础学写作：从日记开始", "price": 1990, "cover_media_id": cover["id"],
        "lessons": [{"title": "第一课：每天三句话", "body": "听完音频再动笔。",
                     "audio_media_id": audio["id"]}]}, author)
    assert status == 201, created
    course_id = created["course"]["id"]
    status, _ = await api.post(f"/api/v1/courses/{course_id}/publish", {}, author)
    assert status == 200

    student = await api.login("xiaoyu", "student", name="小雨")
    await api.topup(student, 5000)
    page = await pages.new_page(token=student)
    await pages.open(page, "/")
    await page.get_by_label("搜索", exact=True).fill("写作")
    await page.get_by_role("button", name="搜索", exact=True).click()
    results = page.locator("#result-list li")
    await expect(results).to_have_count(1)
    await expect(results).to_contain_text("梅老师")
    await results.get_by_role("link").click()
    await page.wait_for_url(f"**/static/course.html?id={course_id}")

    await page.get_by_role("button", name="余额支付 ¥19.90").click()
    await expect(page.locator("#unlock-note")).to_have_text("购买成功，开始学习吧！")
    await expect(page.locator("#course-price")).to_have_text("已购")

    lessons = page.locator("#lessons li")
    await lessons.nth(0).get_by_role("button", name="阅读：第一课：每天三句话").click()
    player = page.locator("#reader-player audio")
    await expect(player).to_be_visible()
    await player.evaluate("a => a.play()")
    await page.wait_for_function(
        "() => document.querySelector('#reader-player audio').currentTime > 4")
    await player.evaluate("a => a.pause()")
    stopped = await audio_time(page)
    await expect(page.locator("#reader")).to_be_visible()
    # The pause is saved on the server before the reload.
    lesson_id = created["course"]["lessons"][0]["id"]
    for _ in range(50):
        _, read = await api.get(f"/api/v1/courses/{course_id}/lessons/{lesson_id}", student)
        saved = (read["lesson"].get("progress") or {}).get("position_seconds")
        if saved is not None and abs(saved - stopped) < 0.5:
            break
        await page.wait_for_timeout(100)
    else:
        raise AssertionError(f"the position was never saved: {read['lesson']}")

    await page.reload()
    await expect(page.locator("#reader-title")).to_have_text("第一课：每天三句话")
    await expect(page.locator(".resume-hint")).to_have_text(f"从 00:{int(stopped):02d} 继续播放")
    await page.wait_for_function(
        "() => document.querySelector('#reader-player audio').readyState >= 1")
    resumed = await audio_time(page)
    assert abs(resumed - stopped) <= 2, (resumed, stopped)
    await pages.screenshot(page, "journey-resumed")
