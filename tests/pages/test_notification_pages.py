"""Saved notifications in the pages: a lesson unlocked by moving the dev clock appears live
on notifications.html and in the bell's count on the home page, and tapping it opens that
lesson; the console's 我的收入 follows a sale without a reload; the wallet page shows a
consultant's earnings beside the wallet (docs/pages.md "Notifications")."""

from __future__ import annotations

from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect

DAY = 24 * 3600


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["course_drip", "live_qa"]}}


async def published_course(api: Any, token: str) -> dict[str, Any]:
    status, body = await api.post("/api/v1/courses", {
        "title": "Python 入门", "price": 1990, "lessons": [
            {"title": "安装与环境", "body": "先装好 Python。"},
            {"title": "函数", "body": "# 函数\n\n用 `def` 定义。",
             "release": {"after_days": 1, "at": "08:00"}}]}, token)
    assert status == 201, body
    course = body["course"]
    status, body = await api.post(f"/api/v1/courses/{course['id']}/publish", token=token)
    assert status == 200, body
    return body["course"]


async def buy(api: Any, token: str, course: dict[str, Any]) -> None:
    await api.topup(token, course["price"])
    status, body = await api.post("/api/v1/orders", {
        "item": {"kind": "course", "course_id": course["id"]}, "channel": "wallet"}, token)
    assert status == 201 and body["order"]["status"] == "fulfilled", body


@pytest.mark.gen_test(timeout=120)
async def test_an_unlocked_lesson_arrives_live_and_opens_its_lesson(pages, api, kpay_app):
    teacher = await api.login("teacher", "consultant", name="李老师")
    course = await published_course(api, teacher)
    student = await api.login("sam", "student", name="小明")
    await buy(api, student, course)
    await kpay_app.notifications.add("sam", "欢迎来到 kpay", "先看看课程和直播间吧。",
                                     "/static/course.html")
    await api.post("/api/v1/notifications/read", {"all": True}, student)

    home = await pages.new_page(token=student)
    await pages.open(home, "/")
    bell = home.locator("#bell")
    await expect(bell).to_be_visible()
    await expect(bell.locator(".bell-count")).to_be_hidden()
    await expect(home.locator("#notices")).to_have_count(0)  # the old card is gone

    inbox = await pages.new_page(token=student)
    await pages.open(inbox, "/static/notifications.html")
    rows = inbox.locator("#notice-list li")
    # The welcome, and the purchase (course_drip tells the buyer 购买成功), both read.
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1).locator(".notice-title")).to_have_text("购买成功：《Python 入门》")
    await expect(inbox.locator("#read-all")).to_be_disabled()
    await expect(home.locator("#connection")).to_have_text("已连接")
    await expect(inbox.locator("#connection")).to_have_text("已连接")

    # A day later at 08:00 the second lesson unlocks: both pages learn it without a reload.
    keeper = await api.login("clock-keeper", "admin")
    status, body = await api.post("/api/v1/dev/clock", {"advance": DAY + 3600}, keeper)
    assert status == 200, body
    title = "《Python 入门》第 2 课《函数》已解锁"
    await expect(rows).to_have_count(3)
    first = rows.first
    await expect(first.locator(".notice-title")).to_have_text(title)
    await expect(first.locator(".notice-row")).to_have_attribute("data-read", "false")
    await expect(inbox.locator("#unread-text")).to_have_text("1 条未读")
    await expect(bell.locator(".bell-count")).to_have_text("1")
    await expect(bell).to_have_attribute("aria-label", "消息通知，1 条未读")
    await pages.check_accessibility(inbox)
    await pages.screenshot(inbox, "notifications")
    await pages.check_accessibility(home)
    await pages.screenshot(home, "notifications-bell")

    # Tapping it marks it read and opens that lesson.
    await first.locator(".notice-row").click()
    await expect(inbox).to_have_url(f"{pages.base}/static/course.html?id={course['id']}"
                                    f"&lesson={course['lessons'][1]['id']}")
    await expect(inbox.locator("#reader-title")).to_have_text("函数")
    assert (await api.get("/api/v1/notifications/unread-count", student))[1] == {"unread": 0}
    # The home page's bell reads the count again when it is shown again.
    await home.reload()
    await expect(home.locator("#bell")).to_be_visible()
    await expect(home.locator("#bell .bell-count")).to_be_hidden()


@pytest.mark.gen_test(timeout=120)
async def test_read_all_and_the_empty_state(pages, api, kpay_app):
    student = await api.login("sam", "student", name="小明")
    page = await pages.new_page(token=student)
    await pages.open(page, "/static/notifications.html")
    await expect(page.locator("#notice-empty")).to_be_visible()
    await expect(page.locator("#notice-empty")).to_contain_text("暂无消息")
    await pages.screenshot(page, "notifications-empty")
    await expect(page.locator("#connection")).to_have_text("已连接")
    # Two arrive live (tell_user, as a plugin would; a kind nobody describes is neutral).
    await kpay_app.tell_user("sam", "mystery_event", {"x": 1})
    await kpay_app.notifications.add("sam", "系统维护通知", "今晚 23:00 维护 10 分钟。", None)
    rows = page.locator("#notice-list li")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".notice-title")).to_have_text("新消息")
    await page.reload()
    await expect(rows).to_have_count(2)
    await expect(page.locator("#unread-text")).to_have_text("2 条未读")
    await page.get_by_role("button", name="全部已读").click()
    await expect(page.locator("#unread-text")).to_have_text("")
    await expect(page.locator('.notice-row[data-read="false"]')).to_have_count(0)
    assert (await api.get("/api/v1/notifications/unread-count", student))[1] == {"unread": 0}


@pytest.mark.gen_test(timeout=120)
async def test_console_earnings_follow_a_sale_without_reload(pages, api, kpay_app):
    teacher = await api.login("teacher", "consultant", name="李老师")
    course = await published_course(api, teacher)
    console = await pages.new_page(token=teacher)
    await pages.open(console, "/static/console.html")
    balance = console.locator("#console-earnings-balance")
    await expect(balance).to_have_text("¥0.00")
    await expect(console.locator("#console-wallet")).to_contain_text("钱包余额 ¥0.00")
    await expect(console.locator("#connection")).to_have_text("已连接")

    student = await api.login("sam", "student", name="小明")
    await buy(api, student, course)
    _, earnings = await api.get("/api/v1/earnings?limit=1", teacher)
    assert earnings["balance"] > 0
    shown = f"¥{earnings['balance'] // 100}.{earnings['balance'] % 100:02d}"
    await expect(balance).to_have_text(shown)
    await pages.check_accessibility(console)
    await pages.screenshot(console, "console-earnings-live")

    # 我的钱包 for a consultant: the wallet and, beside it, the earnings with 去提现.
    wallet = await pages.new_page(token=teacher)
    await pages.open(wallet, "/static/wallet.html")
    card = wallet.locator("#earnings-card")
    await expect(card.locator("#earnings-balance")).to_have_text(shown)
    await expect(card.get_by_role("link", name="去提现")).to_have_attribute(
        "href", "/static/console.html#payouts")
    await pages.check_accessibility(wallet)
    await pages.screenshot(wallet, "wallet-consultant-earnings")
