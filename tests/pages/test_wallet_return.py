"""Topping up from a course and coming back: the course sends the user to the wallet with
?return=, the phone's H5 pay goes through the fake WeChat cashier, which returns to the
wallet, which offers 返回继续购买; the course is then bought from the balance."""

from __future__ import annotations

from typing import Any

import pytest
from pagekit import PHONE_UA, STATIC
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["course_drip", "wechat_pay"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return []  # the real wechat_pay plugin on its local fake (mweb, the cashier)


async def published_course(api: Any) -> str:
    author = await api.login("carol", "consultant", name="卡萝")
    status, reply = await api.post("/api/v1/courses", {
        "title": "手冲咖啡入门", "price": 1990,
        "lessons": [{"title": "第一课", "body": "选豆"}]}, author)
    assert status == 201, reply
    course_id = reply["course"]["id"]
    assert (await api.post(f"/api/v1/courses/{course_id}/publish", {}, author))[0] == 200
    return course_id


@pytest.mark.gen_test(timeout=120)
async def test_top_up_through_the_fake_cashier_and_return_to_the_course(pages, api):
    course_id = await published_course(api)
    token = await api.login("alice", "student", name="爱丽丝")
    page = await pages.new_page(token=token, user_agent=PHONE_UA)
    await pages.open(page, f"/static/course.html?id={course_id}")
    await page.get_by_role("button", name="余额支付 ¥19.90").click()
    topup = page.get_by_role("link", name="去充值")
    await expect(topup).to_be_visible()
    await topup.click()
    await page.wait_for_url("**/static/wallet.html?return=*")
    await expect(page.locator("#return-hint")).to_be_visible()

    await page.get_by_role("button", name="¥50").click()
    await page.get_by_role("button", name="充值", exact=True).click()
    # The panel opens in view (it used to open below the fold).
    status_line = page.locator("#order-status")
    await expect(status_line).to_have_text("待支付")
    await expect(status_line).to_be_in_viewport()

    # A phone browser: H5 pay. The fake cashier looks like WeChat's and comes back.
    await page.get_by_role("link", name="前往微信支付").click()
    await expect(page.locator("#amount")).to_have_text("¥50.00")
    await expect(page.locator("#description")).to_contain_text("钱包充值")
    await pages.screenshot(page, "fake-cashier")
    await page.get_by_role("button", name="确认支付").click()
    await page.wait_for_url("**/static/wallet.html?order=*")
    await expect(page.locator("#order-status")).to_have_text("支付成功")
    await expect(page.locator("#balance")).to_have_text("¥50.00")
    back = page.get_by_role("link", name="返回继续购买")
    await expect(back).to_be_visible()
    await expect(back).to_be_in_viewport()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "wallet-return")

    await back.click()
    await page.wait_for_url(f"**/static/course.html?id={course_id}")
    await page.get_by_role("button", name="余额支付 ¥19.90").click()
    await expect(page.locator("#unlock-note")).to_have_text("购买成功，开始学习吧！")
    _, wallet = await api.get("/api/v1/wallet", token=token)
    assert wallet["balance"] == 5000 - 1990


@pytest.mark.gen_test(timeout=60)
async def test_a_return_to_another_site_is_ignored(pages, api):
    token = await api.login("alice", "student")
    page = await pages.new_page(token=token)
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        await pages.open(page, "/static/wallet.html?return=" + bad)
        await expect(page.locator("#balance")).to_have_text("¥0.00")
        await expect(page.locator("#return-hint")).to_be_hidden()
    ok = await page.evaluate(
        "import('/static/js/pay.js').then((m) => [m.safeReturnPath('/static/course.html?id=c1'),"
        " m.safeReturnPath('//evil.example'), m.safeReturnPath('https://evil.example/')])")
    assert ok == ["/static/course.html?id=c1", None, None]


@pytest.mark.gen_test(timeout=60)
async def test_a_dot_segment_cannot_make_another_host(pages, api):
    # "/.//evil.example" starts with one slash, but the browser's URL drops "." and keeps
    # "//evil.example" as the path: set as a link's href, that is another site.
    token = await api.login("alice", "student")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/wallet.html")
    got = await page.evaluate(
        "import('/static/js/pay.js').then((m) => ['/.//evil.example/x', '/a/..//evil.example',"
        " '/static/./course.html?id=c1'].map((v) => m.safeReturnPath(v)))")
    assert got == [None, None, "/static/course.html?id=c1"]
