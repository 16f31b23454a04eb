"""The console's 数据 tab at phone size: revenue, orders by kind, students, top products
and the growth model's chart with its projection band, from orders made through the API
over 25 days; and the refusal text when the data do not fit (docs/pages.md "数据")."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pagekit import STATIC, StandInPlugin
from playwright.async_api import expect

from kpay.core.hookspecs import hookimpl
from kpay.core.money.kinds import OrderKind, Priced

DAY = 86_400
TEACHER = "teacher"


class Lesson(OrderKind):
    """A lesson for 9.90 yuan sold by TEACHER (a stand-in for a plugin's kind)."""

    name = "course"

    async def price(self, app: Any, user: Any, item: dict[str, Any]) -> Priced:
        title = "《职场沟通 30 讲》" if item.get("sku") == "a" else "《一小时读懂财报》"
        return Priced(990, title, app.money.earnings_credits(990, TEACHER),
                      {"kind": self.name, "sku": item.get("sku", "a")})

    async def fulfil(self, app: Any, order: dict[str, Any]) -> None:
        """Nothing to grant."""


class LessonPlugin:
    @hookimpl
    def register_collections(self, app: Any) -> list[str]:
        return []

    @hookimpl
    def register_order_kinds(self, app: Any) -> list[OrderKind]:
        return [Lesson()]


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": []}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("standin_wechat_pay", StandInPlugin()), ("lesson", LessonPlugin())]


async def buy(api, token, sku="a"):
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "course", "sku": sku}, "channel": "wallet"}, token)
    assert status == 201, body


@pytest.mark.gen_test(timeout=240)
async def test_the_dashboard_and_its_growth_chart_at_phone_size(pages, api, kpay_app):
    # Students arrive 4% more each day for 25 days; some come back for a second course.
    made = 0
    for day in range(25):
        target = round(10 * math.exp(0.04 * day))
        while made < target:
            token = await api.login(f"s{made}", name=f"学员{made}")
            await api.topup(token, 3000)
            await buy(api, token)
            if made % 3 == 0:
                await buy(api, token, "b")
            made += 1
        if day < 24:
            kpay_app.clock.advance(DAY)
    teacher = await api.login(TEACHER, "consultant", name="王老师")
    page = await pages.new_page(token=teacher)
    await pages.open(page, "/static/console.html#analytics")
    await expect(page.get_by_role("tab", name="数据")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#an-revenue svg.chart")).to_be_visible()
    await expect(page.locator("#an-kinds")).to_contain_text("课程")
    await expect(page.locator("#an-products")).to_contain_text("《职场沟通 30 讲》")
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
