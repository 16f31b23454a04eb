"""The console's 提现 when a withdrawal needs the receiver's real name (docs/pages.md,
docs/api.md "Payouts"): the 409 ``real_name_required`` brings the name form with its
reason in Chinese, a bad name is refused on the page, the saved name is shown masked and
the same withdrawal is sent again; inside WeChat (stubbed bridge) it is then confirmed."""

from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect

from kpay.testing import FakePayoutProvider, FakeProviderPlugin, assert_books_balanced

DAY = 24 * 3600
WX_STUB = """
window.wx = { requestMerchantTransfer(options) {
  window.__transfer = { package: options.package };
  setTimeout(() => options.success({ errMsg: "requestMerchantTransfer:ok" }), 0);
} };
"""


class RealNameProvider(FakePayoutProvider):
    """A payout provider that, like WeChat's 商家转账, needs a real name from 2,000 yuan."""

    def payout_requirements(self, amount: int) -> set[str]:
        return {"real_name"} if amount >= 200_000 else set()


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["course_drip"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return [("fakes", FakeProviderPlugin(RealNameProvider("fakepay", ("native",))))]


@pytest.mark.gen_test(timeout=90)
async def test_a_large_withdrawal_asks_for_the_real_name_and_retries(pages, api, kpay_app,
                                                                     clock):
    credits = kpay_app.money.earnings_credits(500_000, "coach")
    await kpay_app.money.ledger.post("test:earn", [("external:test", -500_000), *credits])
    await clock.advance(8 * DAY)
    coach = await api.login("coach", "consultant", name="周老师")
    await kpay_app.store["users"].update_one({"_id": "coach"}, {"$set": {"openid": "o-coach"}})

    page = await pages.new_page(token=coach, init_script=WX_STUB)
    await pages.open(page, "/static/console.html")
    await expect(page.locator("#real-name-shown")).to_be_hidden()
    await page.get_by_label("提现金额（元）").fill("2500")
    await page.get_by_role("button", name="提现").click()
    await expect(page.locator("#payout-error")).to_have_text(
        "微信要求 2000 元以上的转账核验收款人实名，请先填写真实姓名")
    form = page.locator("#real-name-form")
    await expect(form).to_be_visible()
    await expect(form).to_contain_text("微信要求 2000 元以上的转账核验收款人实名")
    assert await kpay_app.money.payouts.collection.count_documents({}) == 0
    await pages.check_accessibility(page)
    await pages.screenshot(page, "console-payouts-real-name")

    name = page.get_by_label("真实姓名")
    await name.fill("张三1")
    await page.get_by_role("button", name="保存并提现").click()
    await expect(page.locator("#payout-error")).to_have_text(
        "请填写 2-30 个汉字或字母的真实姓名（可含间隔号 ·）")
    await name.fill(" 张三丰 ")
    await page.get_by_role("button", name="保存并提现").click()
    await expect(page.locator("#payout-notice")).to_have_text("提现已发起")
    await expect(form).to_be_hidden()
    await expect(page.locator("#real-name-masked")).to_have_text("收款人实名：张*丰")
    assert await kpay_app.users.real_name("coach") == "张三丰"
    row = page.locator("#payout-history li").first
    await expect(row).to_contain_text("¥2,500.00")
    await expect(row).to_contain_text("待确认收款")
    await row.get_by_role("button", name="确认收款").click()
    await expect(page.locator("#payout-notice")).to_have_text("已提交确认，到账后记录会更新")
    await pages.screenshot(page, "console-payouts-real-name-saved")
    assert "张三丰" not in await page.content()  # only the masked name is on the page
    await assert_books_balanced(kpay_app)
