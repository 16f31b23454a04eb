"""The console's 学员 tab (docs/pages.md "学员"): a consultant tags a student who bought
their course, builds a segment of that tag, sends it a message, and the message arrives
live on the student's open notifications page."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["course_drip"]}}


@pytest.mark.gen_test(timeout=120)
async def test_a_consultant_tags_builds_a_segment_and_messages_it_live(pages, api):
    teacher = await api.login("teacher", "consultant", name="李老师")
    status, body = await api.post("/api/v1/courses", {
        "title": "Python 入门", "price": 1990,
        "lessons": [{"title": "安装与环境", "body": "先装好 Python。"}]}, teacher)
    assert status == 201, body
    course = body["course"]
    assert (await api.post(f"/api/v1/courses/{course['id']}/publish", token=teacher))[0] == 200
    student = await api.login("sam", "student", name="小明")
    await api.login("lily", "student", name="丽丽")
    for token in (student, await api.login("lily", "student")):
        await api.topup(token, 1990)
        status, body = await api.post("/api/v1/orders", {
            "item": {"kind": "course", "course_id": course["id"]}, "channel": "wallet"}, token)
        assert status == 201, body

    inbox = await pages.new_page(token=student)
    await pages.open(inbox, "/static/notifications.html")
    await expect(inbox.locator("#connection")).to_have_text("已连接")
    rows = inbox.locator("#notice-list li")
    before = await rows.count()

    console = await pages.new_page(token=teacher)
    await pages.open(console, "/static/console.html#audience")
    people = console.locator("#au-students li")
    await expect(people).to_have_count(2)
    await expect(console.locator("#au-students-count")).to_have_text("共 2 人")
    sam = console.locator('#au-students li[data-user="sam"]')
    await expect(sam.locator(".name")).to_have_text("小明")
    await sam.locator("input").fill("VIP")
    await sam.get_by_role("button", name="加标签").click()
    sam = console.locator('#au-students li[data-user="sam"]')
    await expect(sam.locator(".au-chip")).to_have_text("VIP ×")
    await expect(console.locator("#au-tag-choices")).to_contain_text("VIP（1）")

    # The course rule names the consultant's courses, not their ids.
    course_rule = console.locator(".au-rule", has_text="购买过课程")
    await expect(course_rule.locator("select option")).to_have_text(["Python 入门"])
    await console.locator("#au-seg-name").fill("VIP 学员")
    await console.locator('#au-tag-choices input[value="VIP"]').check()
    await console.locator("#au-seg-save").click()
    segment = console.locator("#au-segments li").first
    await expect(segment.locator(".au-count")).to_have_text("1 人")
    await expect(segment).to_contain_text("同时满足：标签：VIP")
    await pages.screenshot(console, "console-audience")
    async with console.expect_download() as downloading:
        await segment.get_by_role("button", name="导出 CSV").click()
    download = await downloading.value
    assert download.suggested_filename == "VIP 学员.csv"
    text = await asyncio.to_thread(Path(await download.path()).read_text, encoding="utf-8-sig")
    assert text.splitlines() == ["用户ID,昵称,标签", "sam,小明,VIP"]

    await segment.get_by_role("button", name="发消息").click()
    await expect(console.locator("#au-cap")).to_have_text(
        "今天已发 0 / 3 条，每条最多发给 2000 人")
    await console.locator("#au-msg-title").fill("周六晚八点直播答疑")
    await console.locator("#au-msg-body").fill("带着问题来，现场解答。")
    await expect(console.locator("#au-preview-title")).to_have_text("周六晚八点直播答疑")
    await pages.screenshot(console, "console-audience-message")
    await console.locator("#au-msg-send").click()
    await expect(console.locator("#au-message-done")).to_have_text("已发送给 1 人")

    await expect(rows).to_have_count(before + 1)
    await expect(rows.first).to_contain_text("周六晚八点直播答疑")
    await pages.screenshot(inbox, "notifications-audience-message")
    await pages.check_accessibility(console)
