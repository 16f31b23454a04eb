"""The pages against the real wechat_pay plugin (dev mode: its local fake WeChat)."""

import pytest
from pagekit import PHONE_UA, STATIC, WECHAT_UA
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides():
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["wechat_pay"]}}


@pytest.fixture
def kpay_extra_plugins():
    return []


@pytest.mark.gen_test(timeout=60)
async def test_desktop_topup_shows_the_fake_wechat_qr_and_the_simulator_pays(pages, api):
    token = await api.login("alice", "student")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/wallet.html")
    await page.get_by_label("充值金额（元）").fill("12.34")
    await page.get_by_role("button", name="充值", exact=True).click()
    await expect(page.locator("#qr svg")).to_be_visible()
    await expect(page.locator("#code-url")).to_contain_text("weixin://wxpay/bizpayurl?pr=")
    await page.get_by_role("button", name="模拟支付（开发模式）").click()
    await expect(page.locator("#balance")).to_have_text("¥12.34")
    _, wallet = await api.get("/api/v1/wallet", token=token)
    assert wallet["balance"] == 1234


@pytest.mark.gen_test(timeout=60)
async def test_phone_browser_gets_h5_pay_link(pages, api):
    token = await api.login("alice", "student")
    page = await pages.new_page(token=token, user_agent=PHONE_UA)
    await pages.open(page, "/static/wallet.html")
    await page.get_by_label("充值金额（元）").fill("5")
    await page.get_by_role("button", name="充值", exact=True).click()
    link = page.get_by_role("link", name="前往微信支付")
    await expect(link).to_be_visible()
    href = await link.get_attribute("href")
    assert "redirect_url=" in href and "wallet.html%3Forder%3Do" in href
    _, orders = await api.get("/api/v1/orders", token=token)
    assert [o["channel"] for o in orders["orders"]] == ["mweb"]


@pytest.mark.gen_test(timeout=60)
async def test_wechat_without_openid_falls_back_to_the_qr(pages, api):
    token = await api.login("alice", "student")
    page = await pages.new_page(token=token, user_agent=WECHAT_UA)
    await pages.open(page, "/static/wallet.html")
    await page.get_by_label("充值金额（元）").fill("5")
    await page.get_by_role("button", name="充值", exact=True).click()
    await expect(page.locator("#qr svg")).to_be_visible()
    # The jsapi attempt was refused with openid_required (this user did not log in through
    # WeChat); the page fell back to a QR code, which WeChat users pay by long-press.
    _, orders = await api.get("/api/v1/orders", token=token)
    newest = orders["orders"][0]
    assert (newest["channel"], newest["amount"], newest["status"]) == ("native", 500, "pending")
    await page.get_by_role("button", name="模拟支付（开发模式）").click()
    await expect(page.locator("#balance")).to_have_text("¥5.00")


@pytest.mark.gen_test(timeout=60)
async def test_wechat_login_through_the_fake_oauth_comes_back_logged_in(pages, kpay_app):
    page = await pages.new_page(user_agent=WECHAT_UA)
    await pages.open(page, "/")
    await page.get_by_role("link", name="微信登录（开发模式下为模拟微信）").click()
    await expect(page.locator("#user-name")).to_have_text("微信用户")
    user_id = await page.locator("#user-id").text_content()
    assert user_id.startswith("wx_")
    # The token came in the URL fragment; the page kept it and cleaned the address.
    assert "token=" not in page.url
    assert await page.evaluate("localStorage.getItem('kpay.token')")
    user = await kpay_app.store["users"].find_one({"_id": user_id})
    assert user["openid"]
