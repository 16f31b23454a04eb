"""The console's "下载月度账单": the chosen month's earnings statement downloads as CSV."""

from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["course_drip"]}}


@pytest.mark.gen_test(timeout=90)
async def test_the_month_statement_downloads_as_csv(pages, api, tmp_path):
    author = await api.login("teacher", "consultant")
    page = await pages.new_page(token=author)
    await pages.open(page, "/static/console.html#courses")
    await expect(page.locator("#console-earnings-balance")).to_have_text("¥0.00")
    # No income yet: 提现与月度账单 is folded, the tabs are on the first screen.
    assert not await page.locator("#console-money").evaluate("(d) => d.open")
    await expect(page.get_by_role("tab", name="课程")).to_be_in_viewport()
    await page.get_by_text("提现与月度账单").click()
    await page.get_by_label("账单月份").fill("2026-03")
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="下载月度账单").click()
    download = await waiting.value
    assert download.suggested_filename == "kpay-statement-2026-03.csv"
    saved = tmp_path / "statement.csv"
    await download.save_as(saved)
    text = saved.read_bytes().decode("utf-8")
    assert text.startswith("\ufeff时间,类别,说明") and "期初余额" in text and "期末余额" in text
    # A month out of bounds: said in Chinese on the page (the server refuses it too).
    await page.get_by_label("账单月份").fill("1969-12")
    await page.get_by_role("link", name="下载月度账单").click()
    await expect(page.locator("#error")).to_have_text(
        "账单月份须在 1970 年 1 月到 2200 年 12 月之间")
    await pages.screenshot(page, "console-statement")
    await pages.check_accessibility(page)
