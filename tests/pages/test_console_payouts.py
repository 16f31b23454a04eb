"""The console's 提现 under 我的收入 (docs/pages.md): what can be withdrawn and when the
rest frees up, the form with its limits and Chinese errors, the history with its states,
and 确认收款: the dev confirm route in dev mode, ``wx.requestMerchantTransfer`` with the
payout's ``package_info`` when the page has WeChat's bridge (stubbed here)."""

from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect

from kpay.core.money import accounts
from kpay.testing import FakePayoutProvider, FakeProviderPlugin

DAY = 24 * 3600
# WeChat's JS-SDK bridge as the page meets it inside WeChat: it records what it was given
# and answers as if the consultant confirmed.
WX_STUB = """
window.wx = { requestMerchantTransfer(options) {
  window.__transfer = { mchId: options.mchId, appId: options.appId, package: options.package };
  setTimeout(() => options.success({ errMsg: "requestMerchantTransfer:ok" }), 0);
} };
"""


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["course_drip"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("fakes", FakeProviderPlugin(FakePayoutProvider("fakepay", ("native",))))]


@pytest.mark.gen_test(timeout=90)
async def test_a_consultant_withdraws_and_confirms(pages, api, kpay_app, clock):
    credits = kpay_app.money.earnings_credits(10_000, "coach")
    await kpay_app.money.ledger.post("test:earn:old", [("external:test", -10_000), *credits])
    await clock.advance(8 * DAY)
    await kpay_app.money.ledger.post("test:earn:new", [("external:test", -5_000),
                                                       *kpay_app.money.earnings_credits(
                                                           5_000, "coach")])
    coach = await api.login("coach", "consultant", name="周老师")
    await kpay_app.store["users"].update_one({"_id": "coach"}, {"$set": {"openid": "o-coach"}})
    earned = dict(credits)[accounts.earnings("coach")]

    page = await pages.new_page(token=coach)
    await pages.open(page, "/static/console.html")
    await expect(page.locator("#payout-withdrawable")).to_have_text(f"¥{earned // 100}.00")
    await expect(page.locator("#payout-pending")).to_have_text("¥40.00")
    await expect(page.locator("#payout-frees")).to_have_text("3月17日可提现 ¥40.00")
    await expect(page.locator("#payout-limits")).to_contain_text("单笔最低 ¥0.10")
    await expect(page.locator("#payout-empty")).to_be_visible()

    # Bad input is caught on the page; the server's refusals come back in Chinese.
    amount = page.get_by_label("提现金额（元）")
    await amount.fill("0.05")
    await page.get_by_role("button", name="提现").click()
    await expect(page.locator("#payout-error")).to_have_text("单笔至少提现 ¥0.10")
    await amount.fill("abc")
    await page.get_by_role("button", name="提现").click()
    await expect(page.locator("#payout-error")).to_have_text("请输入正确的金额（最多两位小数）")
    await amount.fill("1000")
    await page.get_by_role("button", name="提现").click()
    await expect(page.locator("#payout-error")).to_have_text(
        f"可提现金额不足，当前可提现 ¥{earned // 100}.00")

    await amount.fill("10")
    await page.get_by_role("button", name="提现").click()
    await expect(page.locator("#payout-notice")).to_have_text("提现已发起")
    waiting = page.locator("#payout-history li").first
    await expect(waiting).to_contain_text("待确认收款")
    await expect(page.locator("#console-earnings-balance")).to_have_text(
        f"¥{(earned + 4000 - 1000) // 100}.00")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "console-payouts-waiting")

    # Dev mode without WeChat's bridge: the dev confirm route.
    await waiting.get_by_role("button", name="确认收款").click()
    await expect(page.locator("#payout-notice")).to_have_text("已确认收款（开发模式）")
    await expect(waiting).to_contain_text("已到账")
    await expect(waiting.get_by_role("button", name="确认收款")).to_have_count(0)

    # Inside WeChat: the bridge gets the payout's package_info.
    wechat = await pages.new_page(token=coach, init_script=WX_STUB)
    await pages.open(wechat, "/static/console.html")
    await wechat.get_by_label("提现金额（元）").fill("5.50")
    await wechat.get_by_role("button", name="提现").click()
    row = wechat.locator("#payout-history li").first
    await expect(row).to_contain_text("待确认收款")
    await row.get_by_role("button", name="确认收款").click()
    await expect(wechat.locator("#payout-notice")).to_have_text("已提交确认，到账后记录会更新")
    payout = await kpay_app.money.payouts.collection.find_one({"amount": 550})
    assert await wechat.evaluate("window.__transfer") == {
        "mchId": "1900000109", "appId": "wx0000000000000000", "package": payout["package_info"]}
    await pages.screenshot(wechat, "console-payouts-wechat")
