"""The operators' console (admin.html, docs/pages.md "Admin console"): an admin finds a
student and makes them a consultant; an admin blocks a user whose open page then says
they are logged out; the audit log in Chinese; everyone else sees 无权限."""

from __future__ import annotations

from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["live_qa", "consult_billing", "course_drip"]}}


async def people(api: Any) -> dict[str, str]:
    """A host with a live room, a student with a ticket, an admin; their tokens."""
    host = await api.login("teacher", "consultant", name="李老师")
    status, created = await api.post("/api/v1/rooms", {
        "title": "如何准备面试", "ticket_price": 990, "question_min_price": 500}, host)
    assert status == 201, created
    room = created["room"]
    await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    student = await api.login("sam", "student", name="王小明")
    await api.topup(student, 5000)
    status, bought = await api.post("/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": room["id"]}, "channel": "wallet"}, student)
    assert status == 201, bought
    await api.login("amy", "student", name="陈静")
    admin = await api.login("boss", "admin", name="运营小周")
    return {"host": host, "student": student, "admin": admin}


@pytest.mark.gen_test(timeout=120)
async def test_an_admin_makes_a_student_a_consultant(pages, api, kpay_app):
    tokens = await people(api)
    page = await pages.new_page(token=tokens["admin"])
    await pages.open(page, "/")
    await page.locator("#link-admin").click()
    users = page.locator("#user-list")
    await expect(users).to_contain_text("王小明")
    await expect(users).to_contain_text("李老师")
    await expect(users).not_to_contain_text("sam")  # people by nickname, never by id
    await pages.check_accessibility(page)
    await pages.screenshot(page, "admin-users")

    await page.locator("#search-q").fill("小明")
    await page.locator("#search-form button[type=submit]").click()
    await expect(users.locator("li")).to_have_count(1)
    await users.get_by_text("王小明").click()
    detail = page.locator("#user-detail")
    await expect(page.locator("#detail-name")).to_have_text("王小明")
    await expect(page.locator("#detail-role")).to_have_text("学生")
    await expect(page.locator("#detail-wallet")).to_have_text("¥40.10")
    await expect(page.locator("#detail-orders")).to_contain_text("¥9.90")
    await expect(detail).to_contain_text("门票：如何准备面试")
    await expect(page.locator("#detail-online")).to_have_text("离线")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "admin-user-detail")

    await page.get_by_role("button", name="设为咨询师").click()
    await expect(page.locator("#confirm")).to_contain_text("王小明")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#done")).to_have_text("已设为咨询师")
    await expect(page.locator("#detail-role")).to_have_text("咨询师")
    assert (await kpay_app.users.get("sam"))["role"] == "consultant"

    await page.locator("#tab-audit").click()
    log = page.locator("#audit-list")
    change = log.locator('li[data-action="user.role"]')
    await expect(change).to_contain_text("修改身份")
    await expect(change).to_contain_text("学生 → 咨询师")
    await expect(change).to_contain_text("运营小周")
    await expect(change).to_contain_text("王小明")
    await expect(log).to_contain_text("查看用户资料")
    await expect(log).not_to_contain_text("user.")  # never the English action names
    await pages.check_accessibility(page)
    await pages.screenshot(page, "admin-audit")

    # Tags and messages for the whole platform: the consultants' 学员 panel, worded for
    # operators (docs/audience.md).
    await page.locator("#tab-audience").click()
    await expect(page.locator("#au-students-title")).to_have_text("购买过的用户")
    await expect(page.locator("#panel-audience")).to_contain_text("王小明")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "admin-audience")

    # The platform's dashboard and growth model (docs/analytics.md).
    await page.locator("#tab-analytics").click()
    await expect(page.locator("#panel-analytics")).to_contain_text("增长模型")
    await expect(page.locator("#an-revenue .stat")).to_have_count(4)  # the figures came
    await expect(page.locator("#an-growth-body")).not_to_be_empty()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "admin-analytics")


@pytest.mark.gen_test(timeout=120)
async def test_a_blocked_users_open_page_says_they_are_logged_out(pages, api, kpay_app):
    tokens = await people(api)
    theirs = await pages.new_page(token=tokens["student"])
    await pages.open(theirs, "/")
    await expect(theirs.locator("#connection")).to_have_text("已连接")

    page = await pages.new_page(token=tokens["admin"])
    await pages.open(page, "/static/admin.html")
    await page.locator("#user-list").get_by_text("王小明").click()
    await expect(page.locator("#detail-online")).to_have_text("在线")
    await page.locator("#block").click()
    await page.locator("#confirm-reason").fill("刷单")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#done")).to_have_text("已封禁")
    await expect(page.locator("#detail-blocked")).to_be_visible()
    await expect(page.locator("#unblock")).to_be_visible()

    await expect(theirs.locator("#error")).to_have_text("账号已被停用，如有疑问请联系客服")
    await expect(theirs.locator("#account")).to_be_hidden()
    records = await kpay_app.audit.list(target="user:sam", action="user.block")
    assert [r["reason"] for r in records] == ["刷单"]


@pytest.mark.gen_test(timeout=120)
async def test_others_see_no_admin_console(pages, api):
    consultant = await api.login("teacher", "consultant", name="李老师")
    page = await pages.new_page(token=consultant)
    await pages.open(page, "/")
    await expect(page.locator("#link-console")).to_be_visible()
    await expect(page.locator("#link-admin")).to_be_hidden()
    await pages.open(page, "/static/admin.html")
    await expect(page.locator("#denied")).to_contain_text("无权限")
    await expect(page.locator("#tabs")).to_be_hidden()


@pytest.mark.gen_test(timeout=120)
async def test_an_admin_refunds_an_order_then_anonymises_the_user(pages, api, kpay_app):
    tokens = await people(api)
    page = await pages.new_page(token=tokens["admin"])
    await pages.open(page, "/static/admin.html")
    await page.locator("#user-list").get_by_text("王小明").click()
    ticket = page.locator("#detail-orders li", has_text="如何准备面试")
    await ticket.get_by_role("button", name="退款").click()
    await expect(page.locator("#confirm-amount")).to_have_value("9.90")
    await page.locator("#confirm-reason").fill("直播临时取消")
    await pages.screenshot(page, "admin-refund-confirm")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#done")).to_have_text("已提交退款 ¥9.90")
    await expect(page.locator("#detail-wallet")).to_have_text("¥50.00")
    await expect(ticket).to_contain_text("已退 ¥9.90")
    await expect(ticket.get_by_role("button", name="退款")).to_have_count(0)

    await page.locator("#anonymise").click()
    await page.locator("#confirm-confirm").fill("someone")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#error")).to_have_text("输入的用户 ID 不一致，未执行")
    await page.locator("#anonymise").click()
    await page.locator("#confirm-confirm").fill("sam")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#done")).to_have_text("已注销该用户")
    await expect(page.locator("#detail-name")).to_have_text("已注销用户")
    await expect(page.locator("#detail-anonymised")).to_be_visible()
    assert "openid" not in await kpay_app.users.get("sam")
    await expect(page.locator("#user-list")).to_contain_text("已注销用户")
