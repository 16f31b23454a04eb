"""A request refused with 429 in the pages: the wait in Chinese, the button held meanwhile,
and the caps' too_many_open in words."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    # One order request at once, then one every 2 seconds.
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": []},
            "limits": {"enabled": True, "orders_per_second": 0.5, "orders_burst": 1}}


LIMITED = """
async () => {
  const { KPay, errorFromEnvelope } = await import('/static/js/kpay.js');
  const { errorText, whileBusy } = await import('/static/js/ui.js');
  const kpay = new KPay();
  await kpay.devLogin('rita', 'student');
  const bad = { item: { kind: 'wallet_topup', amount: 0 }, channel: 'native' };
  let first = null;
  try { await kpay.post('/api/v1/orders', bad); } catch (e) { first = e.code; }
  const button = document.createElement('button');
  button.textContent = '下单';
  document.body.append(button);
  let limited = null;
  try { await whileBusy(button, () => kpay.post('/api/v1/orders', bad)); }
  catch (e) { limited = e; }
  const heldAfter = button.disabled;
  await new Promise((resolve) => setTimeout(resolve, limited.retryAfter * 1000 + 300));
  const texts = [
    errorFromEnvelope(429, { error: { code: 'rate_limited', message: 'x', retry_after: 7 } }),
    errorFromEnvelope(429, { error: { code: 'rate_limited', message: 'x' } }),
    errorFromEnvelope(409, { error: { code: 'too_many_open', message: 'x',
                                      what: 'pending_orders', limit: 20 } }),
    errorFromEnvelope(409, { error: { code: 'too_many_open', message: 'x',
                                      what: 'open_rooms', limit: 50 } }),
    errorFromEnvelope(409, { error: { code: 'too_many_open', message: 'x',
                                      what: 'constructor', limit: 1 } }),
  ].map((error) => errorText(error));
  return { first, status: limited.status, code: limited.code, retryAfter: limited.retryAfter,
           text: errorText(limited), heldAfter, releasedLater: !button.disabled, texts };
}
"""


@pytest.mark.gen_test(timeout=60)
async def test_a_429_shows_the_wait_and_holds_the_button(pages):
    page = await pages.new_page()
    await pages.open(page, "/")
    result = await page.evaluate(LIMITED)
    assert result["first"] == "invalid_amount"
    assert (result["status"], result["code"], result["retryAfter"]) == (429, "rate_limited", 2)
    assert result["text"] == "操作太频繁，请 2 秒后再试"
    assert result["heldAfter"] is True and result["releasedLater"] is True
    assert result["texts"] == [
        "操作太频繁，请 7 秒后再试",
        "操作太频繁，请稍后再试",
        "未支付的订单太多（最多 20 个），请先支付或等订单过期",
        "未结束的直播间太多（最多 50 个），请先结束一个",
        "未完成的事项太多，请先处理已有的",
    ]


@pytest.mark.gen_test(timeout=60)
async def test_the_wallet_page_says_how_long_to_wait(pages, api):
    token = await api.login("rita", "student", "丽塔")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/wallet.html")
    await page.get_by_role("button", name="¥50").click()
    await page.get_by_role("button", name="充值", exact=True).click()
    await expect(page.locator("#order-status")).to_have_text("待支付")
    await page.get_by_role("button", name="¥50").click()
    await page.get_by_role("button", name="充值", exact=True).click()
    await expect(page.get_by_role("alert").filter(has_text="操作太频繁")).to_have_text(
        re.compile(r"操作太频繁，请 \d 秒后再试"))
    await pages.screenshot(page, "wallet-rate-limited")
