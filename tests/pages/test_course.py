"""The course page (course.html) against the real course_drip plugin: the consultant builds
a course in the console (a lesson opening at once, one a day after buying, one after the
previous), publishes it; the student finds it in the list, buys it from the wallet (after a
402 with the shortfall), sees the locked lessons with countdowns, the dev clock moves a day
and the page unlocks the lesson live (lesson_unlocked on user:<id>), the student reads it
(the server's sanitised HTML) and completes it, and the after_previous lesson opens."""

from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect

DAY = 24 * 3600


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["course_drip", "consult_billing"]}}


async def fill_lesson(page, n, title, body, release=None, days=None, at=None):
    editor = page.locator("#lesson-editors fieldset").nth(n)
    await editor.get_by_label("课时标题").fill(title)
    await editor.get_by_label("正文（Markdown）").fill(body)
    if release:
        await editor.get_by_label("开放规则").select_option(label=release)
    if days is not None:
        await editor.get_by_label("第几天").fill(str(days))
    if at is not None:
        await editor.get_by_label("几点（可选）").fill(at)


async def author_builds_course(pages, api):
    token = await api.login("teacher", "consultant", name="李老师")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/console.html#courses")
    await expect(page.locator("#courses-empty")).to_be_visible()
    await page.get_by_label("课程名称").fill("21 天写作训练")
    await page.get_by_label("课程价格（元）").fill("9.90")
    await fill_lesson(page, 0, "第一课：开始写",
                      "# 欢迎\n\n每天写 **300 字**。<script>alert(1)</script>")
    await page.get_by_role("button", name="添加课时").click()
    # A day after buying, at the time of day of the purchase (no HH:MM).
    await fill_lesson(page, 1, "第二课：找题目", "从生活里找题目。", release="购买后第 N 天开放",
                      days=1, at="")
    await page.get_by_role("button", name="添加课时").click()
    await fill_lesson(page, 2, "第三课：修改", "删掉一半。", release="完成上一课后开放")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "console-course-create")
    await page.get_by_role("button", name="创建课程（草稿）").click()
    item = page.locator("#course-list li[data-id]")
    await expect(item).to_contain_text("草稿 · 3 课时")
    await expect(item).to_contain_text("第二课：找题目：购买后第 1 天 开放")
    await expect(item).to_contain_text("第三课：修改：完成上一课后开放")
    await item.get_by_role("button", name="发布：21 天写作训练").click()
    await expect(page.locator("#course-list li[data-id]")).to_contain_text("已发布 · 3 课时")
    _, mine = await api.get("/api/v1/courses?mine=1", token=token)
    course = mine["courses"][0]
    assert (course["price"], course["status"]) == (990, "published")
    assert [lesson["release"] for lesson in course["lessons"]] == [
        {"after_days": 0}, {"after_days": 1}, {"after_previous": True}]
    return page, token, course["id"]


@pytest.mark.gen_test(timeout=120)
async def test_buy_wait_a_day_read_and_complete(pages, api, kpay_app):
    console, _, course_id = await author_builds_course(pages, api)

    student = await api.login("sam", "student")
    await api.topup(student, 500)
    page = await pages.new_page(token=student)
    await pages.open(page, "/static/course.html")
    await page.get_by_role("link", name="21 天写作训练").click()
    await expect(page.locator("#course-title")).to_have_text("21 天写作训练")
    await expect(page.locator("#course-price")).to_have_text("¥9.90")
    await expect(page.locator("#syllabus-list li")).to_have_count(3)
    await page.get_by_role("button", name="余额支付 ¥9.90").click()
    await expect(page.locator("#buy-error-text")).to_have_text(
        "余额不足：需要 ¥9.90，当前余额 ¥5.00，还差 ¥4.90")
    await expect(page.locator("#buy-topup")).to_be_visible()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-buy-no-funds")

    await api.topup(student, 500)
    await page.get_by_role("button", name="余额支付 ¥9.90").click()
    await expect(page.locator("#unlock-note")).to_have_text("购买成功，开始学习吧！")
    await expect(page.locator("#buy")).to_be_hidden()
    lessons = page.locator("#lessons li")
    await expect(lessons).to_have_count(3)
    await expect(lessons.nth(0).locator(".lock")).to_have_text("已解锁")
    await expect(lessons.nth(1).locator(".lock")).to_have_text("未解锁")
    await expect(lessons.nth(1).locator(".countdown")).to_contain_text("还有 23小时59分")
    await expect(lessons.nth(1).get_by_role("button")).to_be_hidden()
    await expect(lessons.nth(2).locator(".countdown")).to_have_text("完成上一课后解锁")
    await expect(page.locator("#progress-text")).to_have_text("学习进度：已完成 0/3 课（0%）")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-locked")

    # The lock is the server's: the locked lesson is refused.
    _, listed = await api.get(f"/api/v1/courses/{course_id}/lessons", token=student)
    status, locked = await api.get(f"/api/v1/courses/{course_id}/lessons/{listed[1]['id']}",
                                   token=student)
    assert (status, locked["error"]["code"]) == (403, "lesson_locked")

    # A day later the sweep announces the lesson; the page unlocks it live.
    await kpay_app.advance_clock(DAY)
    await expect(page.locator("#unlock-note")).to_have_text("新课时已解锁：第二课：找题目")
    await expect(lessons.nth(1).locator(".lock")).to_have_text("已解锁")
    await expect(lessons.nth(1).locator(".countdown")).to_have_text("")
    await pages.screenshot(page, "course-unlocked-live")

    # Read the first lesson: the server's sanitised HTML, no script survives.
    await lessons.nth(0).get_by_role("button", name="阅读：第一课：开始写").click()
    await expect(page.locator("#reader-title")).to_have_text("第一课：开始写")
    await expect(page.locator("#reader-body h1")).to_have_text("欢迎")
    await expect(page.locator("#reader-body strong")).to_have_text("300 字")
    assert await page.locator("#reader-body script").count() == 0
    await page.get_by_role("button", name="标记为已完成").click()
    await expect(page.locator("#reader-done")).to_have_text("本课已完成")
    await expect(page.locator("#progress-text")).to_have_text("学习进度：已完成 1/3 课（33%）")
    await expect(lessons.nth(0).locator(".lock")).to_have_text("已完成")

    await page.get_by_role("button", name="返回课时列表").click()
    await lessons.nth(1).get_by_role("button", name="阅读：第二课：找题目").click()
    await expect(page.locator("#reader-body")).to_have_text("从生活里找题目。")
    await page.get_by_role("button", name="标记为已完成").click()
    await expect(page.locator("#progress-text")).to_have_text("学习进度：已完成 2/3 课（66%）")
    # Completing lesson 2 opens lesson 3 (after_previous), announced at once.
    await expect(lessons.nth(2).locator(".lock")).to_have_text("已解锁")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-reading")

    _, progress = await api.get(f"/api/v1/courses/{course_id}/progress", token=student)
    assert (progress["progress"]["completed"], progress["progress"]["total"]) == (2, 3)

    # The author's stats see the student and the completions.
    item = console.locator("#course-list li[data-id]")
    await item.get_by_role("button", name="统计：21 天写作训练").click()
    await expect(item.locator(".stat-enrollments")).to_have_text("1")
    await expect(item.locator(".course-stats .entries li").nth(0)).to_contain_text(
        "完成 1 人（100%）")
    await pages.screenshot(console, "console-course-stats")

    # The list page shows the course under 我的课程 with its progress.
    await pages.open(page, "/static/course.html")
    await expect(page.locator("#mine-list li")).to_contain_text("已完成 2/3")
    await expect(page.locator("#connection")).to_have_text("已连接")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-list")
    # A course that is not there (a stale link): said what it is, in Chinese.
    await pages.open(page, "/static/course.html?id=nope")
    await expect(page.locator("#error")).to_have_text("这门课程不存在或已下架")


@pytest.mark.gen_test(timeout=90)
async def test_buy_with_the_wechat_qr_and_the_dev_simulator(pages, api):
    teacher = await api.login("teacher", "consultant")
    status, created = await api.post("/api/v1/courses", {
        "title": "时间管理", "price": 1990,
        "lessons": [{"title": "第一课", "body": "列清单", "release": {"after_days": 0}},
                    {"title": "第二课", "body": "排优先级",
                     "release": {"after_days": 2, "at": "08:00"}}]}, teacher)
    assert status == 201, created
    course_id = created["course"]["id"]
    status, _ = await api.post(f"/api/v1/courses/{course_id}/publish", token=teacher)
    assert status == 200

    student = await api.login("wen", "student")
    page = await pages.new_page(token=student)
    await pages.open(page, f"/static/course.html?id={course_id}")
    await expect(page.locator("#syllabus-list li").nth(1)).to_contain_text(
        "购买后第 2 天 08:00 开放")
    await page.get_by_role("button", name="微信支付").click()
    await expect(page.locator("#qr svg")).to_be_visible()
    await expect(page.locator("#order-amount")).to_have_text("¥19.90")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-buy-qr")
    await page.get_by_role("button", name="模拟支付（开发模式）").click()
    await expect(page.locator("#unlock-note")).to_have_text("购买成功，开始学习吧！")
    await expect(page.locator("#payment")).to_be_hidden()
    await expect(page.locator("#lessons li")).to_have_count(2)
    await expect(page.locator("#lessons li").nth(1).locator(".countdown")).to_contain_text(
        "08:00 解锁")
    _, wallet = await api.get("/api/v1/wallet", token=student)
    assert wallet["balance"] == 0  # paid by WeChat, not from the wallet
    _, course = await api.get(f"/api/v1/courses/{course_id}", token=student)
    assert course["enrolled"] is True
