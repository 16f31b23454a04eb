"""The wallet page: balance, top-up on each WeChat channel, the dev simulator, the ledger."""

import pytest
from pagekit import PHONE_UA, WECHAT_UA
from playwright.async_api import expect

# Inside WeChat the page calls WeixinJSBridge.invoke; this stand-in records the call and
# answers as WeChat does after the payer confirms.
FAKE_BRIDGE = """
window.__bridgeCalls = [];
window.WeixinJSBridge = { invoke(name, params, done) {
  window.__bridgeCalls.push({ name, params });
  setTimeout(() => done({ err_msg: 'get_brand_wcpay_request:ok' }), 10);
} };
"""


async def open_wallet(pages, api, user="alice", **options):
    token = await api.login(user, "student")
    page = await pages.new_page(token=token, **options)
    await pages.open(page, "/static/wallet.html")
    await expect(page.locator("#balance")).to_have_text("¥0.00")
    return page, token


@pytest.mark.gen_test(timeout=60)
async def test_topup_through_the_dev_simulator_updates_balance_and_ledger(pages, api):
    page, token = await open_wallet(pages, api)
    await expect(page.locator("#entries-empty")).to_have_text("暂无记录")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "wallet-empty")

    await page.get_by_role("button", name="¥50").click()
    await expect(page.get_by_label("充值金额（元）")).to_have_value("50")
    await page.get_by_role("button", name="充值", exact=True).click()

    # Desktop: a QR code of the code_url to scan with WeChat.
    await expect(page.locator("#order-status")).to_have_text("待支付")
    await expect(page.locator("#order-amount")).to_have_text("¥50.00")
    await expect(page.locator("#qr svg")).to_be_visible()
    code_url = await page.locator("#code-url").text_content()
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=o")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "wallet-qr")

    await page.get_by_role("button", name="模拟支付（开发模式）").click()
    await expect(page.locator("#order-status")).to_have_text("支付成功")
    await expect(page.locator("#balance")).to_have_text("¥50.00")
    await expect(page.locator("#available")).to_have_text("¥50.00")
    line = page.locator("#entries li").first
    await expect(line).to_contain_text("钱包充值 50.00 元")
    await expect(line).to_contain_text("+¥50.00")
    await expect(page.locator("#qr svg")).to_be_hidden()
    await pages.screenshot(page, "wallet-paid")

    status, wallet = await api.get("/api/v1/wallet", token=token)
    assert status == 200 and wallet["balance"] == 5000
    status, orders = await api.get("/api/v1/orders", token=token)
    assert [(o["amount"], o["status"], o["channel"]) for o in orders["orders"]] == [
        (5000, "fulfilled", "native")]


@pytest.mark.gen_test(timeout=60)
async def test_bad_topup_amounts_show_chinese_errors_and_create_nothing(pages, api):
    page, token = await open_wallet(pages, api)
    amount = page.get_by_label("充值金额（元）")
    submit = page.get_by_role("button", name="充值", exact=True)
    error = page.locator("#topup-error")

    for typed in ("abc", "-5", "1.234", "0"):
        await amount.fill(typed)
        await submit.click()
        await expect(error).to_have_text("请输入正确的金额（大于 0，最多两位小数）")

    # Over the server's limit (money.topup_max = 500000 fen): the server refuses, the page
    # says why with the limits from the error.
    await amount.fill("99999")
    await submit.click()
    await expect(error).to_have_text("金额须在 ¥0.01 到 ¥5,000.00 之间")
    await expect(page.locator("#payment")).to_be_hidden()
    await pages.screenshot(page, "wallet-error")

    status, orders = await api.get("/api/v1/orders", token=token)
    assert status == 200 and orders["orders"] == []
    await expect(page.locator("#balance")).to_have_text("¥0.00")


@pytest.mark.gen_test(timeout=60)
async def test_inside_wechat_the_page_pays_through_the_js_bridge(pages, api):
    page, token = await open_wallet(pages, api, user_agent=WECHAT_UA, init_script=FAKE_BRIDGE)
    await page.get_by_label("充值金额（元）").fill("9.9")
    await page.get_by_role("button", name="充值", exact=True).click()
    await expect(page.locator("#order-status")).to_have_text("待支付")
    calls = await page.evaluate("window.__bridgeCalls")
    assert len(calls) == 1 and calls[0]["name"] == "getBrandWCPayRequest"
    assert calls[0]["params"]["package"].startswith("prepay_id=wx")
    await expect(page.locator("#qr svg")).to_have_count(0)

    # WeChat's notify arrives at the server; the page's polling sees the order paid.
    status, orders = await api.get("/api/v1/orders", token=token)
    order = orders["orders"][0]
    assert (order["amount"], order["channel"]) == (990, "jsapi")
    status, _ = await api.post(f"/api/v1/dev/orders/{order['id']}/pay", token=token)
    assert status == 200
    await expect(page.locator("#balance")).to_have_text("¥9.90")
    await expect(page.locator("#order-status")).to_have_text("支付成功")


@pytest.mark.gen_test(timeout=60)
async def test_phone_browser_falls_back_to_qr_when_h5_pay_is_not_offered(pages, api):
    # The stand-in provider has no mweb channel: the order call answers 400 unknown_channel
    # and the page falls back to the next channel the server has.
    page, token = await open_wallet(pages, api, user_agent=PHONE_UA)
    await page.get_by_label("充值金额（元）").fill("20")
    await page.get_by_role("button", name="充值", exact=True).click()
    await expect(page.locator("#qr svg")).to_be_visible()
    await expect(page.locator("#topup-error")).to_be_hidden()
    _, orders = await api.get("/api/v1/orders", token=token)
    assert [o["channel"] for o in orders["orders"]] == ["native"]
    await pages.screenshot(page, "wallet-phone-qr")


@pytest.mark.gen_test(timeout=60)
async def test_ledger_pages_with_load_more(pages, api, kpay_app):
    token = await api.login("alice", "student")
    for n in range(1, 26):
        await kpay_app.money.ledger.post(
            f"test-paging:{n}", [("external:test", -n), ("wallet:alice", n)], f"入账 {n}")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/wallet.html")
    await expect(page.locator("#balance")).to_have_text("¥3.25")  # 1 + 2 + ... + 25 fen
    entries = page.locator("#entries li")
    await expect(entries).to_have_count(20)
    await expect(entries.first).to_contain_text("入账 25")
    more = page.get_by_role("button", name="加载更多")
    await more.click()
    await expect(entries).to_have_count(25)
    await expect(entries.last).to_contain_text("入账 1")
    await expect(more).to_be_hidden()
    keys = await entries.evaluate_all("(items) => items.map((li) => li.dataset.key)")
    assert len(set(keys)) == 25


@pytest.mark.gen_test(timeout=60)
async def test_wallet_without_login_asks_to_log_in(pages):
    page = await pages.new_page()
    await pages.open(page, "/static/wallet.html")
    await expect(page.get_by_role("link", name="去登录")).to_be_visible()
    await expect(page.locator("#wallet")).to_be_hidden()


@pytest.mark.gen_test(timeout=60)
async def test_returning_from_h5_pay_keeps_watching_the_order(pages, api):
    # WeChat sends the payer back to wallet.html?order=<id> (the mweb redirect_url).
    token = await api.login("alice", "student")
    status, created = await api.post("/api/v1/orders", {
        "item": {"kind": "wallet_topup", "amount": 888}, "channel": "native"}, token)
    assert status == 201
    order_id = created["order"]["id"]
    page = await pages.new_page(token=token, user_agent=PHONE_UA)
    await pages.open(page, f"/static/wallet.html?order={order_id}")
    await expect(page.locator("#order-status")).to_have_text("待支付")
    await expect(page.locator("#order-amount")).to_have_text("¥8.88")
    status, _ = await api.post(f"/api/v1/dev/orders/{order_id}/pay", token=token)
    assert status == 200
    await expect(page.locator("#order-status")).to_have_text("支付成功")
    await expect(page.locator("#balance")).to_have_text("¥8.88")

    # Someone else's order id in the address shows nothing of it.
    other = await api.login("bob", "student")
    page = await pages.new_page(token=other)
    await pages.open(page, f"/static/wallet.html?order={order_id}")
    await expect(page.locator("#error")).to_have_text("订单不存在")
    await expect(page.locator("#payment")).to_be_hidden()


# A later page paying from the wallet with the shared PaymentPanel.
PAY_FROM_WALLET = """
async () => {
  const { KPay } = await import('/static/js/kpay.js');
  const { PaymentPanel } = await import('/static/js/pay.js');
  const root = document.createElement('section');
  document.querySelector('main').append(root);
  const paid = [];
  const panel = new PaymentPanel(root, { kpay: new KPay(), onPaid: (o) => paid.push(o.status) });
  let refused = null;
  try { await panel.start({ kind: 'page_test_item' }, ['wallet']); }
  catch (e) { refused = { status: e.status, code: e.code, needed: e.needed }; }
  window.__retry = async () => {
    const order = await panel.start({ kind: 'page_test_item' }, ['wallet']);
    return { status: order.status, paid, shown: root.querySelector('#order-status').textContent };
  };
  return refused;
}
"""


@pytest.mark.gen_test(timeout=60)
async def test_payment_panel_pays_from_the_wallet(pages, api):
    page, token = await open_wallet(pages, api)
    refused = await page.evaluate(PAY_FROM_WALLET)
    assert refused == {"status": 402, "code": "insufficient_balance", "needed": 300}
    await api.topup(token, 500)
    result = await page.evaluate("window.__retry()")
    assert result == {"status": "fulfilled", "paid": ["fulfilled"], "shown": "支付成功"}
    _, wallet = await api.get("/api/v1/wallet", token=token)
    assert wallet["balance"] == 200
