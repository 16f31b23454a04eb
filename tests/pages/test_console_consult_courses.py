"""The console's 咨询 and 课程 sections beyond the happy paths of test_consult.py and
test_course.py: bad input in the rate form, a request declined live, a cohort date rule,
a gift enrollment with the course's stats, and the earnings block of the whole console
following a course sale."""

from datetime import datetime
from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["consult_billing", "course_drip"]}}


@pytest.mark.gen_test(timeout=90)
async def test_rate_form_checks_input_and_a_request_is_declined_live(pages, api):
    coach = await api.login("coach", "consultant", name="周老师")
    page = await pages.new_page(token=coach)
    await pages.open(page, "/static/console.html#consult")
    await expect(page.get_by_role("tab", name="咨询")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_role("tab", name="课程")).to_be_visible()
    # 资料, drawn before these settings exist, asks for them first (no 头衔 yet).
    await page.get_by_role("tab", name="资料").click()
    await expect(page.locator("#pf-consult-note")).to_be_visible()
    await page.get_by_role("tab", name="咨询").click()

    # Bad input is caught on the page and nothing is saved.
    await page.get_by_label("每分钟价格（元）").fill("1.234")
    await page.get_by_role("button", name="保存设置").click()
    await expect(page.locator("#profile-error")).to_have_text(
        "每分钟价格不正确（大于 0，最多两位小数）")
    await page.get_by_label("每分钟价格（元）").fill("2.50")
    await page.get_by_label("最少分钟").fill("10")
    await page.get_by_label("最长分钟").fill("5")
    await page.get_by_role("button", name="保存设置").click()
    await expect(page.locator("#profile-error")).to_have_text("最长分钟须为正整数且不少于最少分钟")
    status, _ = await api.get("/api/v1/consultants/me", token=coach)
    assert status == 404
    # A rate over the server's cap: the server's 400, shown in Chinese.
    await page.get_by_label("每分钟价格（元）").fill("5000")
    await page.get_by_label("最少分钟").fill("1")
    await page.get_by_label("最长分钟").fill("30")
    await page.get_by_role("button", name="保存设置").click()
    await expect(page.locator("#profile-error")).to_have_text("输入有误（每分钟价格）")
    await page.get_by_label("每分钟价格（元）").fill("2.50")
    await page.get_by_label("头衔（可选）").fill("职业规划")
    await page.get_by_role("button", name="保存设置").click()
    await expect(page.locator("#profile-saved")).to_have_text(
        "已保存：¥2.50/分钟，1–30 分钟，接受咨询")
    # ... and once they are saved, 资料 shows 头衔 and 简介 without a reload.
    await page.get_by_role("tab", name="资料").click()
    await expect(page.locator("#pf-title")).to_have_value("职业规划")
    await expect(page.locator("#pf-consult-note")).to_be_hidden()
    await page.get_by_role("tab", name="咨询").click()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "console-consult-profile")

    # The settings survive a reload.
    await page.reload()
    await expect(page.get_by_label("每分钟价格（元）")).to_have_value("2.50")
    await expect(page.get_by_label("最长分钟")).to_have_value("30")

    student = await api.login("kim", "student")
    await api.topup(student, 1000)
    status, created = await api.post("/api/v1/consultations", {"consultant_id": "coach"}, student)
    assert status == 201, created
    request = page.locator("#request-list li", has_text="学生 kim")
    await expect(request).to_contain_text("¥2.50/分钟，最少 1 分钟")
    await request.get_by_role("button", name="婉拒 kim 的咨询请求").click()
    await expect(page.locator("#request-list li")).to_have_count(0)
    await expect(page.locator("#requests-empty")).to_be_visible()
    _, declined = await api.get(f"/api/v1/consultations/{created['consultation']['id']}",
                                token=student)
    assert (declined["status"], declined["end_reason"], declined["charged"]) == (
        "ended", "declined", 0)
    await expect(page.locator("#consult-past-list li")).to_contain_text("咨询师婉拒了请求")

    # A request the student cancels leaves the list; nothing to sum up, no session card.
    status, again = await api.post("/api/v1/consultations", {"consultant_id": "coach"}, student)
    assert status == 201, again
    await expect(page.locator("#request-list li")).to_have_count(1)
    status, _ = await api.post(f"/api/v1/consultations/{again['consultation']['id']}/end",
                               token=student)
    assert status == 200
    await expect(page.locator("#request-list li")).to_have_count(0)
    await expect(page.locator("#consult-past-list li").first).to_contain_text("请求已取消")
    await expect(page.locator("#consult-session")).to_be_hidden()
    await pages.check_accessibility(page)

    # consult.html is for students; a consultant is sent to the console.
    student_page = await pages.new_page(token=coach)
    await pages.open(student_page, "/static/consult.html")
    await expect(student_page.locator("#consultant-note")).to_contain_text("你是咨询师")
    await expect(student_page.locator("#consultants")).to_be_hidden()


@pytest.mark.gen_test(timeout=90)
async def test_course_with_a_cohort_date_a_gift_and_the_earnings_block(pages, api):
    author = await api.login("teacher", "consultant")
    page = await pages.new_page(token=author)
    await pages.open(page, "/static/console.html#courses")
    await expect(page.locator("#console-earnings-balance")).to_have_text("¥0.00")
    await page.get_by_label("课程名称").fill("面试表达")
    await page.get_by_label("课程价格（元）").fill("20")
    editor = page.locator("#lesson-editors fieldset").nth(0)
    await editor.get_by_label("课时标题").fill("开营直播回顾")
    await editor.get_by_label("正文（Markdown）").fill("回顾内容")
    await editor.get_by_label("开放规则").select_option(label="指定日期开放")
    await editor.get_by_label("开放时间").fill("2030-01-02T20:00")
    # An empty lesson title is caught before anything is sent.
    await page.get_by_role("button", name="添加课时").click()
    await page.get_by_role("button", name="创建课程（草稿）").click()
    await expect(page.locator("#course-form-error")).to_have_text("请填写第 2 课的标题")
    await page.locator("#lesson-editors fieldset").nth(1).get_by_role(
        "button", name="删除此课时").click()
    await page.get_by_role("button", name="创建课程（草稿）").click()
    item = page.locator("#course-list li[data-id]")
    await expect(item).to_contain_text("开营直播回顾：1月2日 20:00 开放")
    _, mine = await api.get("/api/v1/courses?mine=1", token=author)
    course = mine["courses"][0]
    # The author's local time (the browser is in Asia/Shanghai), sent as an instant.
    opens = datetime.fromisoformat(course["lessons"][0]["release"]["at_date"])
    assert opens == datetime.fromisoformat("2030-01-02T20:00:00+08:00")
    # The students' page is linked by name, never shown as a raw address with the id.
    await expect(item.get_by_role("link", name="查看学生看到的课程页")).to_have_attribute(
        "href", f"/static/course.html?id={course['id']}")
    await expect(item).not_to_contain_text(course["id"])

    await item.get_by_role("button", name="发布：面试表达").click()
    await expect(item).to_contain_text("已发布")
    await item.get_by_label("赠送课程给学生").fill("lucy")
    await item.get_by_role("button", name="赠送").click()
    await expect(item.locator(".notice")).to_have_text("已赠送给 lucy")
    await item.get_by_label("赠送课程给学生").fill("lucy")
    await item.get_by_role("button", name="赠送").click()
    await expect(item.locator(".alert")).to_have_text("lucy 已拥有此课程")

    buyer = await api.login("max", "student")
    await api.topup(buyer, 2000)
    status, order = await api.post("/api/v1/orders", {
        "item": {"kind": "course", "course_id": course["id"]}, "channel": "wallet"}, buyer)
    assert status == 201, order
    await item.get_by_role("button", name="统计：面试表达").click()
    await expect(item.locator(".stat-enrollments")).to_have_text("2")
    await expect(item.locator(".course-stats")).to_contain_text("赠送1")
    await expect(item.locator(".course-stats")).to_contain_text("购买1")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "console-courses-stats")

    # The console's earnings block follows the earnings account (the sale, after the fee).
    _, earnings = await api.get("/api/v1/earnings", token=author)
    assert earnings["balance"] > 0
    await page.reload()
    await expect(page.locator("#console-earnings-balance")).to_have_text(
        f"¥{earnings['balance'] // 100}.{earnings['balance'] % 100:02d}")

    # The gifted student sees the course locked until the cohort date.
    lucy = await api.login("lucy", "student")
    student_page = await pages.new_page(token=lucy)
    await pages.open(student_page, f"/static/course.html?id={course['id']}")
    lesson = student_page.locator("#lessons li")
    await expect(lesson.locator(".lock")).to_have_text("未解锁")
    await expect(lesson.locator(".countdown")).to_contain_text("1月2日 20:00 解锁 · 还有")
    await expect(student_page.locator("#buy")).to_be_hidden()
