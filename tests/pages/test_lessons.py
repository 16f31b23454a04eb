"""Lessons with media, end to end in chromium at 390x844 (Chinese locale): the consultant
uploads a cover and an audio lesson in the console's course editor (toolbar, server
preview, upload progress, reorder, withdraw); a student (enrolled by the API) sees 已购,
plays the audio, stops, reloads, and the player resumes within 2 s of the same point,
with the watermark over the lesson; 继续学习 goes back to that lesson. And issue 16's whole
journey as a student: found from the home page by a Chinese search, bought from the
wallet, played, stopped and resumed after a reload."""

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


async def current_time(page) -> float:
    return await page.locator("#reader-player audio").evaluate("a => a.currentTime")


@pytest.mark.gen_test(timeout=180)
async def test_author_uploads_cover_and_audio_student_resumes_after_reload(pages, api, tmp_path):
    teacher = await api.login("teacher", "consultant", name="李老师")
    status, created = await api.post("/api/v1/courses", {
        "title": "声音的力量", "price": 1990, "description": "每天 10 分钟，练好发声。",
        "lessons": [{"title": "开篇：为什么要练声", "body": "先读一读。"}]}, teacher)
    assert status == 201, created
    course_id = created["course"]["id"]
    cover = tmp_path / "cover.png"
    cover.write_bytes(png_bytes(640, 360, (11, 92, 173)))
    audio = tmp_path / "lesson.wav"
    audio.write_bytes(wav_bytes(8))

    console = await pages.new_page(token=teacher)
    await pages.open(console, "/static/console.html#courses")
    await console.get_by_role("button", name="编辑：声音的力量").click()
    await expect(console.locator("#editor-title")).to_have_text("声音的力量")
    await console.locator("#edit-cover-file").set_input_files(str(cover))
    await expect(console.locator("#edit-saved")).to_have_text("封面已更新")
    await expect(console.locator("#edit-cover-img")).to_be_visible()

    # A lesson added later: toolbar over Markdown, server preview, audio with progress.
    await console.get_by_role("button", name="添加课时").click()
    form = console.locator("#lesson-form")
    await form.get_by_label("课时标题").fill("第一课：腹式呼吸")
    body = form.get_by_label("正文（Markdown）")
    await body.fill("跟着音频练习。")
    await body.press("End")
    await console.get_by_role("button", name="加粗").click()
    await console.locator("#lf-media").set_input_files(str(audio))
    await expect(console.locator("#lf-media-text")).to_have_text("已上传音频 00:08")
    await console.get_by_role("tab", name="预览").click()
    await expect(console.locator("#lf-preview-body strong")).to_have_text("加粗文字")
    await pages.check_accessibility(console)
    await pages.screenshot(console, "console-lesson-editor-preview")
    await console.get_by_role("button", name="保存课时").click()
    rows = console.locator("#editor-lessons li")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("音频 00:08")
    # Reorder: the audio lesson first (the keyboard stays on the moved lesson).
    await rows.nth(1).get_by_role("button", name="上移：第一课：腹式呼吸").click()
    await expect(rows.nth(0)).to_contain_text("第一课：腹式呼吸")
    await console.get_by_role("button", name="发布课程").click()
    await expect(console.locator("#editor-status")).to_contain_text("已发布")
    await pages.check_accessibility(console)
    await pages.screenshot(console, "console-course-editor")

    _, course = await api.get(f"/api/v1/courses/{course_id}", teacher)
    lesson_ids = [item["id"] for item in course["course"]["lessons"]]
    assert course["course"]["lessons"][0]["media"]["kind"] == "audio"
    assert course["course"]["cover"].endswith("/card")

    # The student got the course (buying is the storefront's test).
    status, _ = await api.post(f"/api/v1/courses/{course_id}/enrollments",
                               {"user_id": "sam"}, teacher)
    assert status == 201
    student = await api.login("sam", "student", name="小山")
    page = await pages.new_page(token=student)
    await pages.open(page, f"/static/course.html?id={course_id}")
    await expect(page.locator("#course-price")).to_have_text("已购")
    await expect(page.locator("#course-cover")).to_be_visible()
    lessons = page.locator("#lessons li")
    await expect(lessons.nth(0).locator(".media-tag")).to_have_text("音频 00:08")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-bought")

    await lessons.nth(0).get_by_role("button", name="阅读：第一课：腹式呼吸").click()
    player = page.locator("#reader-player audio")
    await expect(player).to_be_visible()
    await expect(page.locator("#reader .watermark span").first).to_have_text("小山 · ID sam")
    await player.evaluate("a => a.play()")
    await page.wait_for_function(
        "() => document.querySelector('#reader-player audio').currentTime > 3")
    await player.evaluate("a => a.pause()")
    stopped = await current_time(page)
    # Saved on pause, on the server.
    path = f"/api/v1/courses/{course_id}/lessons/{lesson_ids[0]}"
    for _ in range(50):
        _, read = await api.get(path, student)
        if read["lesson"]["progress"] and abs(
                read["lesson"]["progress"]["position_seconds"] - stopped) < 0.5:
            break
        await page.wait_for_timeout(100)
    else:
        raise AssertionError(f"position not saved: {read['lesson']['progress']}, {stopped}")

    # Reload: the same lesson opens and resumes within 2 s of where it stopped.
    await page.reload()
    await expect(page.locator("#reader-title")).to_have_text("第一课：腹式呼吸")
    await expect(page.locator(".resume-hint")).to_have_text(
        f"从 00:{int(stopped):02d} 继续播放")
    await page.wait_for_function(
        "() => document.querySelector('#reader-player audio').readyState >= 1")
    resumed = await current_time(page)
    assert abs(resumed - stopped) <= 2, (resumed, stopped)
    await expect(page.locator("#reader-next")).to_be_enabled()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "lesson-player-watermark")

    # 继续学习 on the course page goes to the last lesson touched.
    await page.get_by_role("button", name="返回课时列表").click()
    await lessons.nth(1).get_by_role("button", name="阅读：开篇：为什么要练声").click()
    await expect(page.locator("#reader-title")).to_have_text("开篇：为什么要练声")
    await pages.open(page, f"/static/course.html?id={course_id}")
    await page.get_by_role("button", name="继续学习：开篇：为什么要练声").click()
    await expect(page.locator("#reader-title")).to_have_text("开篇：为什么要练声")

    # The list: the cover beside the title, and 已购 instead of the price.
    await pages.open(page, "/static/course.html")
    item = page.locator("#catalog-list li").filter(has_text="声音的力量")
    await expect(item.locator(".owned")).to_have_text("已购")
    await expect(item.locator("img.course-thumb")).to_be_visible()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-list-bought")


@pytest.mark.gen_test(timeout=120)
async def test_an_expired_media_url_is_refetched_by_the_player(pages, api, kpay_app):
    teacher = await api.login("teacher", "consultant", name="李老师")
    audio = await upload(api, teacher, "audio", "lesson", wav_bytes(6), "a.wav")
    status, created = await api.post("/api/v1/courses", {
        "title": "晨读", "price": 0,
        "lessons": [{"title": "第一天", "body": "", "audio_media_id": audio["id"]}]}, teacher)
    assert status == 201, created
    course_id, lesson_id = created["course"]["id"], created["course"]["lessons"][0]["id"]
    await api.post(f"/api/v1/courses/{course_id}/publish", token=teacher)
    await api.post(f"/api/v1/courses/{course_id}/enrollments", {"user_id": "sam"}, teacher)
    student = await api.login("sam", "student", name="小山")
    page = await pages.new_page(token=student)
    await pages.open(page, f"/static/course.html?id={course_id}&lesson={lesson_id}")
    player = page.locator("#reader-player audio")
    await page.wait_for_function(
        "() => document.querySelector('#reader-player audio')?.readyState >= 1")
    first = await player.evaluate("a => a.src")

    # Ten minutes on: the URL is refused; the player asks for the lesson again.
    await kpay_app.advance_clock(11 * 60)
    response = await api.http.fetch(first, raise_error=False)
    assert response.code == 403 and b"url_expired" in response.body
    # The element has the whole file buffered; a phone meets the refusal on its next
    # range request. Here: ask for the same (expired) URL again, bypassing the cache.
    await player.evaluate(
        "a => { a.src = a.src + (a.src.includes('?') ? '&' : '?') + 'again=1'; a.load(); }")
    await page.wait_for_function(
        "() => !document.querySelector('#reader-player audio').src.includes('again=1')")
    await page.wait_for_function(
        "() => document.querySelector('#reader-player audio').readyState >= 1")
    fresh = await player.evaluate("a => a.src")
    assert fresh != first
    assert (await api.http.fetch(fresh, raise_error=False)).code == 200
    # A link to a lesson that is gone (an old notification) says so in words.
    await pages.open(page, f"/static/course.html?id={course_id}&lesson=lgone0000")
    await expect(page.locator("#lessons-error")).to_have_text("该课时已下架或不存在")
    await expect(page.locator("#lessons li")).to_have_count(1)
    # The refused load is the point of this test, not a page error.
    pages.problems[:] = [p for p in pages.problems if "status of 403" not in p]


@pytest.mark.gen_test(timeout=90)
async def test_the_watermark_lies_over_a_paid_video(pages, api):
    teacher = await api.login("teacher", "consultant", name="李老师")
    # The start of an MP4: the media service keeps videos as uploaded (sniffed type).
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 2048
    video = await upload(api, teacher, "video", "lesson", head, "v.mp4")
    status, created = await api.post("/api/v1/courses", {
        "title": "镜头前的表达", "price": 0,
        "lessons": [{"title": "站姿", "body": "对着镜头练习。", "video_media_id": video["id"]}]},
        teacher)
    assert status == 201, created
    course_id, lesson_id = created["course"]["id"], created["course"]["lessons"][0]["id"]
    await api.post(f"/api/v1/courses/{course_id}/publish", token=teacher)
    await api.post(f"/api/v1/courses/{course_id}/enrollments", {"user_id": "sam"}, teacher)
    page = await pages.new_page(token=await api.login("sam", "student", name="小山"))
    await pages.open(page, f"/static/course.html?id={course_id}&lesson={lesson_id}")
    frame = page.locator("#reader-player .player.video")
    await expect(frame.locator("video")).to_be_visible()
    mark = frame.locator(".watermark")
    await expect(mark.locator("span").first).to_have_text("小山 · ID sam")
    await expect(page.locator("#course-price")).to_have_text("已报名")  # free: not bought
    # Over the picture, and never in the way of a tap.
    assert await mark.evaluate("m => getComputedStyle(m).pointerEvents") == "none"
    box, picture = await mark.bounding_box(), await frame.locator("video").bounding_box()
    assert box["width"] >= picture["width"] - 1 and box["height"] >= picture["height"] - 1
    await pages.check_accessibility(page)
    await pages.screenshot(page, "lesson-video-watermark")


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
    stopped = await current_time(page)
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
    resumed = await current_time(page)
    assert abs(resumed - stopped) <= 2, (resumed, stopped)
    await pages.screenshot(page, "journey-resumed")
