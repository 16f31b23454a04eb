"""The entry page: dev login as student or consultant, who is logged in, log out."""

import pytest
from pagekit import STATIC
from playwright.async_api import expect

from kpay.testing import wait_until


@pytest.mark.gen_test(timeout=60)
async def test_dev_login_as_student_shows_the_user(pages, api, kpay_app):
    page = await pages.new_page()
    await pages.open(page, "/")
    await expect(page.locator("#dev-login")).to_be_visible()
    await expect(page.locator("#account")).to_be_hidden()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "index-login")

    await page.get_by_label("用户 ID").fill("alice")
    await page.get_by_label("昵称（可选）").fill("小爱")
    await page.get_by_role("button", name="以学生身份体验").click()

    await expect(page.locator("#user-name")).to_have_text("小爱")
    await expect(page.locator("#user-role")).to_have_text("学生")
    await expect(page.locator("#user-id")).to_have_text("alice")
    await expect(page.get_by_role("link", name="我的主页（昵称、头像）")).to_have_attribute(
        "href", "/static/profile.html?id=alice")
    await expect(page.locator("#dev-login")).to_be_hidden()
    await expect(page.get_by_role("link", name="我的钱包")).to_have_attribute(
        "href", "/static/wallet.html")
    # Feature links show only when their plugin's routes exist (none are loaded here).
    await expect(page.locator("#link-consult")).to_be_hidden()
    await expect(page.locator("#live-now")).to_be_hidden()
    await expect(page.locator("#connection")).to_have_text("已连接")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "index-student")

    # The token the page keeps is a real one: the server knows this user.
    token = await page.evaluate("localStorage.getItem('kpay.token')")
    status, me = await api.get("/api/v1/me", token=token)
    assert status == 200 and me == {"id": "alice", "role": "student", "name": "小爱",
                                    "avatar_url": None}

    # The session survives a reload; log out forgets it.
    await page.reload()
    await expect(page.locator("#user-id")).to_have_text("alice")
    await page.get_by_role("button", name="退出登录").click()
    await expect(page.locator("#dev-login")).to_be_visible()
    await expect(page.locator("#account")).to_be_hidden()
    await expect(page.locator("#connection")).to_be_hidden()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    await wait_until(lambda: not kpay_app.sockets)  # the page closed its socket
    assert await page.evaluate("localStorage.getItem('kpay.token')") is None


@pytest.mark.gen_test(timeout=60)
async def test_dev_login_as_consultant_with_the_default_id(pages):
    page = await pages.new_page()
    await pages.open(page, "/")
    await page.get_by_role("button", name="以咨询师身份体验").click()
    await expect(page.locator("#user-id")).to_have_text("demo-consultant")
    await expect(page.locator("#user-role")).to_have_text("咨询师")
    await pages.screenshot(page, "index-consultant")


@pytest.mark.gen_test(timeout=60)
async def test_bad_user_id_is_refused_in_chinese_and_nobody_is_logged_in(pages, kpay_app):
    page = await pages.new_page()
    await pages.open(page, "/")
    await page.get_by_label("用户 ID").fill("不合法 id")
    await page.get_by_role("button", name="以学生身份体验").click()
    await expect(page.get_by_role("alert")).to_contain_text("输入有误")
    await expect(page.locator("#account")).to_be_hidden()
    assert await kpay_app.store["users"].count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_stale_token_shows_the_login_again(pages):
    page = await pages.new_page(token="not-a-real-token")
    await pages.open(page, "/")
    await expect(page.locator("#dev-login")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('kpay.token')") is None


ALL_PLUGINS = {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["*"]}}


@pytest.mark.parametrize(("kpay_overrides", "kpay_extra_plugins"), [(ALL_PLUGINS, [])])
@pytest.mark.gen_test(timeout=60)
async def test_feature_links_follow_the_loaded_plugins_and_the_role(pages, api):
    page = await pages.new_page(token=await api.login("carol", "consultant"))
    await pages.open(page, "/")
    await expect(page.locator("#user-id")).to_have_text("carol")
    for link in ("#link-consult", "#link-console", "#categories"):
        await expect(page.locator(link)).to_be_visible()
    # Nothing is sold yet: the storefront says so instead of typed-id forms (gone).
    await expect(page.locator("#browse-empty")).to_be_visible()
    await expect(page.locator("#browse-empty").get_by_role("link")).to_have_attribute(
        "href", "/static/console.html")  # a consultant is told how to fill it
    await expect(page.locator("#room-form")).to_have_count(0)
    await pages.check_accessibility(page)
    await pages.screenshot(page, "index-consultant-all-plugins")

    page = await pages.new_page(token=await api.login("dave", "student"))
    await pages.open(page, "/")
    await expect(page.locator("#user-id")).to_have_text("dave")
    await expect(page.locator("#link-consult")).to_be_visible()
    await expect(page.locator("#link-console")).to_be_hidden()
    await expect(page.locator("#browse-empty")).to_have_text("还没有上架的内容，稍后再来看看")


@pytest.mark.gen_test(timeout=60)
async def test_a_blocked_user_is_sent_to_the_login_with_the_reason(pages, api, kpay_app):
    token = await api.login("alice", "student", "小爱")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/wallet.html")
    await expect(page.locator("#wallet")).to_be_visible()
    await wait_until(lambda: bool(kpay_app.sockets))
    admin = await api.login("root", "admin")
    status, _ = await api.post("/api/v1/admin/users/alice/block", {"reason": "测试"}, admin)
    assert status == 200
    # The open socket is closed as blocked: the page goes home, which says why in Chinese.
    await expect(page.locator("#dev-login")).to_be_visible()
    await expect(page.get_by_role("alert")).to_have_text("账号已被停用，如有疑问请联系客服")
    assert await page.evaluate("localStorage.getItem('kpay.token')") is None
    await pages.screenshot(page, "index-blocked")
    # Logging in again as the blocked user says the same, and keeps no session.
    await page.get_by_label("用户 ID").fill("alice")
    await page.get_by_role("button", name="以学生身份体验").click()
    await expect(page.get_by_role("alert")).to_have_text("账号已被停用，如有疑问请联系客服")


@pytest.mark.gen_test(timeout=60)
async def test_a_session_ended_elsewhere_returns_to_the_login(pages, api):
    token = await api.login("bob", "student")
    page = await pages.new_page(token=token)
    await pages.open(page, "/")
    await expect(page.locator("#user-id")).to_have_text("bob")
    status, _ = await api.post("/api/v1/auth/logout-everywhere", {}, token)
    assert status == 200
    await expect(page.locator("#dev-login")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("请重新登录")
