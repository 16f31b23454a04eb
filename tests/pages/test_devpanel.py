"""The dev panel (static/js/devpanel.js): the 开发 chip opens the app clock; +1 天 and
跳到 move it, 重置时钟 puts it back, 重置体验数据 wipes the data and logs out."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect

# Automated browsers get the panel only when asked (it must not cover other tests' taps).
PANEL_ON = "localStorage.setItem('kpay.devpanel', 'on');"


@pytest.mark.gen_test(timeout=90)
async def test_clock_moves_and_resets_from_the_panel(pages, api, kpay_app):
    token = await api.login("alice", "student", name="爱丽丝")
    page = await pages.new_page(token=token, init_script=PANEL_ON)
    await pages.open(page, "/static/wallet.html")
    chip = page.locator("#devpanel-chip")
    await expect(chip).to_contain_text("开发")  # and the clock when it is not real time
    await chip.click()
    panel = page.locator("#devpanel")
    await expect(panel).to_be_visible()
    pinned = kpay_app.clock.offset

    await page.get_by_role("button", name="+1 天").click()
    await expect(page.locator("#devpanel-message")).to_have_text("时钟已前进 1 天")
    assert kpay_app.clock.offset == pytest.approx(pinned + 86400)
    await page.get_by_role("button", name="+1 小时").click()
    await expect(page.locator("#devpanel-message")).to_have_text("时钟已前进 1 小时")
    assert kpay_app.clock.offset == pytest.approx(pinned + 90000)
    await expect(page.locator("#devpanel-clock")).to_contain_text("年")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "devpanel")

    # 跳到 a time two days ahead (typed in the page's zone, Asia/Shanghai).
    before = kpay_app.clock.offset
    target = (kpay_app.clock.now() + timedelta(days=2)).astimezone(ZoneInfo("Asia/Shanghai"))
    await page.locator("#devpanel-jump").fill(target.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_role("button", name="跳转").click()
    await expect(page.locator("#devpanel-message")).to_contain_text("已跳到")
    assert kpay_app.clock.offset - before == pytest.approx(2 * 86400, abs=120)
    await page.locator("#devpanel-jump").fill("2001-01-01T00:00")
    await page.get_by_role("button", name="跳转").click()
    await expect(page.locator("#devpanel-message")).to_contain_text("时钟只能往后跳")

    await page.get_by_role("button", name="重置时钟").click()
    await expect(page.locator("#devpanel-message")).to_have_text("时钟已回到真实时间")
    await expect(page.locator("#devpanel-offset")).to_have_text("真实时间")
    assert kpay_app.clock.offset == 0


@pytest.mark.gen_test(timeout=90)
async def test_reset_data_asks_first_then_wipes_and_logs_out(pages, api, kpay_app):
    token = await api.login("alice", "student", name="爱丽丝")
    page = await pages.new_page(token=token, init_script=PANEL_ON)
    await pages.open(page, "/static/wallet.html")
    await page.locator("#devpanel-chip").click()
    await page.get_by_role("button", name="重置体验数据").click()
    await expect(page.locator("#devpanel-confirm")).to_be_visible()
    await page.get_by_role("button", name="取消").click()
    await expect(page.locator("#devpanel-confirm")).to_be_hidden()
    assert await kpay_app.store["users"].count_documents({}) == 1  # nothing happened yet

    await page.get_by_role("button", name="重置体验数据").click()
    await page.get_by_role("button", name="确认清空").click()
    await page.wait_for_url(pages.base + "/")
    assert await kpay_app.store["users"].count_documents({}) == 0
    assert await page.evaluate("localStorage.getItem('kpay.token')") is None


@pytest.mark.gen_test(timeout=60)
async def test_no_panel_for_automation_unless_asked(pages, api):
    token = await api.login("alice", "student")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/wallet.html")
    await expect(page.locator("#balance")).to_have_text("¥0.00")
    await expect(page.locator("#devpanel-chip")).to_have_count(0)
