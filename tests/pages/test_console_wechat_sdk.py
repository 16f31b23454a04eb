"""确认收款 inside WeChat: the console loads WeChat's JS-SDK (static/js/wechat.js),
configures it with the server's signature for ``requestMerchantTransfer`` and hands the
payout's ``package_info`` to it (the SDK's host is routed to a stub that records what
it was given; wechat_pay runs on its local fake in dev mode)."""

from typing import Any

import pytest
from pagekit import STATIC, WECHAT_UA
from playwright.async_api import expect

from kpay.testing import FakePayoutProvider, FakeProviderPlugin

DAY = 24 * 3600
SDK_STUB = """
window.wx = {
  config(options) { window.__config = options; },
  ready(callback) { setTimeout(callback, 0); },
  error() {},
  requestMerchantTransfer(options) {
    window.__transfer = { mchId: options.mchId, package: options.package };
    setTimeout(() => options.success({ errMsg: "requestMerchantTransfer:ok" }), 0);
  },
};
"""


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["course_drip", "wechat_pay"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("fakes", FakeProviderPlugin(FakePayoutProvider("fakepay", ("fake_qr",))))]


@pytest.mark.gen_test(timeout=90)
async def test_confirming_inside_wechat_configures_the_sdk_first(pages, api, kpay_app, clock):
    credits = kpay_app.money.earnings_credits(10_000, "coach")
    await kpay_app.money.ledger.post("test:earn", [("external:test", -10_000), *credits])
    await clock.advance(8 * DAY)
    coach = await api.login("coach", "consultant", name="周老师")
    await kpay_app.store["users"].update_one({"_id": "coach"}, {"$set": {"openid": "o-coach"}})
    page = await pages.new_page(token=coach, user_agent=WECHAT_UA)
    sdk_loads = []

    async def sdk(route: Any) -> None:
        sdk_loads.append(route.request.url)
        await route.fulfill(content_type="application/javascript", body=SDK_STUB)

    await page.route("https://res.wx.qq.com/**", sdk)
    await pages.open(page, "/static/console.html")
    await page.get_by_label("提现金额（元）").fill("5.50")
    await page.get_by_role("button", name="提现").click()
    row = page.locator("#payout-history li").first
    await expect(row).to_contain_text("待确认收款")
    await row.get_by_role("button", name="确认收款").click()
    await expect(page.locator("#payout-notice")).to_have_text("已提交确认，到账后记录会更新")
    assert sdk_loads == ["https://res.wx.qq.com/open/js/jweixin-1.6.0.js"]
    config = await page.evaluate("window.__config")
    assert config["jsApiList"] == ["requestMerchantTransfer"] and config["debug"] is False
    assert config["appId"] and len(config["signature"]) == 40 and config["nonceStr"]
    payout = await kpay_app.money.payouts.collection.find_one({"amount": 550})
    assert (await page.evaluate("window.__transfer"))["package"] == payout["package_info"]
