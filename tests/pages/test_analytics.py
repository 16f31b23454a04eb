"""The console's 数据 tab at phone size: revenue, orders by kind, students, top products
and the growth model's chart with its projection band, from orders made through the API
over 25 days; and the refusal text when the data do not fit (docs/pages.md "数据")."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pagekit import STATIC, StandInPlugin
from playwright.async_api import expect

DAY = 86_400
TEACHER = "teacher"


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["course_drip"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("standin_wechat_pay", StandInPlugin())]


async def publish(api, token, title, price):
    lessons = [{"title": f"第 {n + 1} 讲", "body": "正文",
                "release": {"after_days": n, "at": "00:00"}} for n in range(3)]
    status, body = await api.post("/api/v1/courses", {
        "title": title, "price": price, "lessons": lessons}, token)
    assert status == 201, body
    status, body = await api.post(f"/api/v1/courses/{body['course']['id']}/publish", token=token)
    assert status == 200, body
    return body["course"]


async def buy(api, token, course):
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "course", "course_id": course["id"]}, "channel": "wallet"}, token)
    assert status == 201, body


@pytest.mark.gen_test(timeout=240)
async def test_the_dashboard_and_its_growth_chart_at_phone_size(pages, api, kpay_app):
    # Students arrive 4% more each day for 25 days; some come back for a second course,
    # and some finish the first lesson.
    teacher = await api.login(TEACHER, "consultant", name="王老师")
    talk = await publish(api, teacher, "职场沟通 30 讲", 990)
    finance = await publish(api, teacher, "一小时读懂财报", 1990)
    made = 0
    for day in range(25):
        target = round(10 * math.exp(0.04 * day))
        while made < target:
            token = await api.login(f"s{made}", name=f"学员{made}")
            await api.topup(token, 3000)
            await buy(api, token, talk)
            if made % 3 == 0:
                await buy(api, token, finance)
            if made % 2 == 0:
                status, lessons = await api.get(f"/api/v1/courses/{talk['id']}/lessons", token)
                status, body = await api.post(
                    f"/api/v1/courses/{talk['id']}/lessons/{lessons[0]['id']}/complete",
                    token=token)
                assert status == 200, body
            made += 1
        if day < 24:
            kpay_app.clock.advance(DAY)
    teacher = await api.login(TEACHER, "consultant", name="王老师")
    page = await pages.new_page(token=teacher)
    await pages.open(page, "/static/console.html#analytics")
    await expect(page.get_by_role("tab", name="数据")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#an-revenue svg.chart")).to_be_visible()
    await expect(page.locator("#an-kinds")).to_contain_text("课程")
    await expect(page.locator("#an-products")).to_contain_text("职场沟通 30 讲")
    await expect(page.locator("#an-section-course_funnel")).to_contain_text("学完第 1 课")
    await expect(page.locator("#an-students")).to_contain_text("新学员")
    growth = page.locator("#an-growth")
    await expect(growth).to_contain_text("翻倍时间")
    await expect(growth).to_contain_text("95% 置信区间")
    await expect(page.locator("#an-growth-projection")).to_contain_text("90 天后约")
    await expect(growth.locator("polygon.chart-band")).to_have_count(1)
    # No raw English kinds or ids on the page.
    text = await page.locator("main").inner_text()
    assert "course" not in text and "teacher" not in text
    await pages.screenshot(page, "console-analytics")
    await pages.check_accessibility(page)

    # A week is too short for the model: the card says so instead of projecting.
    await page.get_by_role("button", name="近 7 天").click()
    await expect(page.locator("#an-revenue")).to_contain_text("销售额")
    async with page.expect_download() as waiting:
        await page.locator("#an-revenue").get_by_role("link", name="下载每日 CSV").click()
    download = await waiting.value
    assert download.suggested_filename == "kpay-revenue_daily.csv"


@pytest.mark.gen_test(timeout=120)
async def test_the_growth_card_refuses_without_enough_days(pages, api):
    teacher = await api.login(TEACHER, "consultant", name="王老师")
    page = await pages.new_page(token=teacher)
    await pages.open(page, "/static/console.html#analytics")
    await expect(page.locator("#an-growth-refused")).to_contain_text("数据不足")
    await expect(page.locator("#an-kinds")).to_contain_text("这段时间还没有订单")
    await pages.screenshot(page, "console-analytics-empty")
