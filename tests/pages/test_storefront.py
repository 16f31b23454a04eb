"""The storefront (index.html) and 已购 (mine.html) against the real plugins: rooms live
and upcoming with their hosts' nicknames and Beijing start times, courses and
consultants, categories, a Chinese search that opens the course, and 已购 with the
bought course, room and the order history in Chinese."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pagekit import SCREENSHOTS, STATIC
from playwright.async_api import expect

BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["live_qa", "course_drip", "consult_billing"]}}


async def first_screen(page, name: str) -> None:
    """What the phone shows first (390x844): a full-page shot draws the sticky tab bar
    where the first screen ends, not at the bottom."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


async def seed(api, kpay_app) -> dict[str, Any]:
    """Two hosts' rooms (one live, one tomorrow 20:00 Beijing), two courses, a consultant."""
    host = await api.login("zhou", "consultant", name="周老师")
    status, body = await api.post("/api/v1/rooms", {
        "title": "产品经理的一天", "ticket_price": 990, "category": "职场"}, host)
    assert status == 201, body
    live = body["room"]
    status, _ = await api.post(f"/api/v1/rooms/{live['id']}/start", token=host)
    assert status == 200
    tomorrow = (kpay_app.clock.now().astimezone(BEIJING) + timedelta(days=1)).replace(
        hour=20, minute=0, second=0, microsecond=0)
    status, body = await api.post("/api/v1/rooms", {
        "title": "亲子沟通的三个习惯", "ticket_price": 0, "category": "亲子",
        "starts_at": tomorrow.isoformat()}, host)
    assert status == 201, body
    upcoming = body["room"]

    author = await api.login("lin", "consultant", name="林老师")
    courses = {}
    for title, price, category in (("如何成为产品经理", 1990, "职场"), ("心理学入门", 0, "心理")):
        status, body = await api.post("/api/v1/courses", {
            "title": title, "price": price, "category": category,
            "lessons": [{"title": "第一课", "body": "开始"}, {"title": "第二课", "body": "继续"}]},
            author)
        assert status == 201, body
        course_id = body["course"]["id"]
        status, _ = await api.post(f"/api/v1/courses/{course_id}/publish", token=author)
        assert status == 200
        courses[title] = course_id

    coach = await api.login("chen", "consultant", name="陈教练")
    status, _ = await api.put("/api/v1/consultants/me", {
        "rate_per_minute": 200, "title": "职业规划师", "category": "职场"}, coach)
    assert status == 200
    return {"live": live, "upcoming": upcoming, "courses": courses}


@pytest.mark.gen_test(timeout=120)
async def test_a_student_finds_a_course_by_a_chinese_search_and_opens_it(pages, api, kpay_app):
    seeded = await seed(api, kpay_app)
    page = await pages.new_page(token=await api.login("stu", "student", name="小王"))
    await pages.open(page, "/")

    live = page.locator("#live-list li")
    await expect(live).to_have_count(1)
    await expect(live).to_contain_text("产品经理的一天")
    await expect(live).to_contain_text("周老师")
    await expect(live).to_contain_text("直播中")
    await expect(live).to_contain_text("¥9.90")
    upcoming = page.locator("#upcoming-list li")
    await expect(upcoming).to_contain_text("亲子沟通的三个习惯")
    await expect(upcoming).to_contain_text("明天 20:00")
    await expect(upcoming).to_contain_text("免费")
    await expect(upcoming).to_contain_text("周老师")
    await expect(page.locator("#course-list li")).to_have_count(2)
    await expect(page.locator("#course-list")).to_contain_text("林老师")
    await expect(page.locator("#course-list")).to_contain_text("2 讲")
    consultant = page.locator("#consultant-list li")
    await expect(consultant).to_contain_text("陈教练")
    await expect(consultant).to_contain_text("¥2.00/分钟")
    await expect(consultant.get_by_role("link")).to_have_attribute(
        "href", "/static/profile.html?id=chen")
    # No ids anywhere a person is shown.
    for raw in ("zhou", "lin", "chen"):
        await expect(page.locator("#browse")).not_to_contain_text(raw)
    await pages.check_accessibility(page)
    await pages.screenshot(page, "store-home")
    await first_screen(page, "store-home-screen")

    # A category chip narrows every shelf.
    await page.get_by_role("button", name="亲子", exact=True).click()
    await expect(page.locator("#live-now")).to_be_hidden()
    await expect(page.locator("#courses")).to_be_hidden()
    await expect(page.locator("#upcoming-list li")).to_have_count(1)
    await page.get_by_role("button", name="全部", exact=True).click()
    await expect(page.locator("#live-list li")).to_have_count(1)

    await page.get_by_label("搜索", exact=True).fill("产品经理")
    await page.get_by_role("button", name="搜索", exact=True).click()
    results = page.locator("#result-list li")
    await expect(results).to_have_count(2)  # the course and the live room
    await expect(page.locator("#results-title")).to_have_text("“产品经理”的搜索结果")
    await expect(page.locator("#browse")).to_be_hidden()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "store-search")

    await page.get_by_label("搜索", exact=True).fill("没有这种课")
    await page.get_by_role("button", name="搜索", exact=True).click()
    await expect(page.locator("#result-empty")).to_be_visible()

    await page.get_by_label("搜索", exact=True).fill("如何 成为")
    await page.get_by_role("button", name="搜索", exact=True).click()
    await expect(results).to_have_count(1)
    await results.get_by_role("link").click()
    await page.wait_for_url(f"**/static/course.html?id={seeded['courses']['如何成为产品经理']}")
    await expect(page.get_by_role("heading", name="如何成为产品经理")).to_be_visible()


@pytest.mark.gen_test(timeout=120)
async def test_mine_shows_what_was_bought_and_the_orders_in_chinese(pages, api, kpay_app):
    seeded = await seed(api, kpay_app)
    token = await api.login("stu", "student", name="小王")
    await api.topup(token, 5000)
    course_id = seeded["courses"]["如何成为产品经理"]
    for item in ({"kind": "course", "course_id": course_id},
                 {"kind": "live_ticket", "room_id": seeded["live"]["id"]}):
        status, body = await api.post("/api/v1/orders", {"item": item, "channel": "wallet"},
                                      token)
        assert status == 201 and body["order"]["status"] == "fulfilled", body

    page = await pages.new_page(token=token)
    await pages.open(page, "/")
    # The bought course says 已购 on the home page, not its price.
    bought = page.locator(f"#course-list li[data-id='{course_id}']")
    await expect(bought).to_contain_text("已购")
    await expect(bought).not_to_contain_text("¥19.90")
    await page.get_by_role("link", name="已购", exact=True).click()
    await page.wait_for_url("**/static/mine.html*")

    await expect(page.locator("#room-list li")).to_contain_text("产品经理的一天")
    await expect(page.locator("#room-list li")).to_contain_text("周老师")
    await page.get_by_role("tab", name="我的课程").click()
    course = page.locator("#course-list li")
    await expect(course).to_have_count(1)
    await expect(course).to_contain_text("如何成为产品经理")
    await expect(course).to_contain_text("已学 0/2")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "mine-courses")

    await page.get_by_role("tab", name="订单").click()
    orders = page.locator("#order-list li")
    await expect(orders).to_have_count(3)  # the ticket, the course, the top-up
    course_order = orders.filter(has_text="如何成为产品经理")
    await expect(course_order).to_contain_text("课程")
    await expect(course_order).to_contain_text("¥19.90")
    await expect(course_order).to_contain_text("已完成")
    await expect(orders.filter(has_text="直播门票")).to_contain_text("¥9.90")
    await expect(orders.filter(has_text="钱包充值")).to_contain_text("¥50.00")
    await course_order.locator("summary").click()
    _, listed = await api.get("/api/v1/orders", token)
    number = next(o["out_trade_no"] for o in listed["orders"] if o["kind"] == "course")
    await expect(course_order.locator(".receipt")).to_contain_text(number)
    await expect(course_order.locator(".receipt")).to_contain_text("余额支付")
    await expect(course_order.get_by_role("link", name="去学习")).to_have_attribute(
        "href", f"/static/course.html?id={course_id}")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "mine-orders")
    # Reopened with #orders, the page comes back to the same tab.
    await page.reload()
    await expect(page.get_by_role("tab", name="订单")).to_have_attribute("aria-selected", "true")


@pytest.mark.gen_test(timeout=120)
async def test_mine_opens_on_the_tab_that_has_something(pages, api, kpay_app):
    seeded = await seed(api, kpay_app)
    token = await api.login("stu", "student", name="小王")
    await api.topup(token, 5000)
    status, body = await api.post("/api/v1/orders", {"item": {
        "kind": "course", "course_id": seeded["courses"]["如何成为产品经理"]},
        "channel": "wallet"}, token)
    assert status == 201, body
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/mine.html")
    # Only a course was bought: 已购 opens on 我的课程, not on an empty 我的直播.
    await expect(page.get_by_role("tab", name="我的课程")).to_have_attribute(
        "aria-selected", "true")
    await expect(page.locator("#course-list li")).to_contain_text("如何成为产品经理")
    await expect(page.locator("#rooms-empty")).to_be_hidden()


@pytest.mark.gen_test(timeout=120)
async def test_authors_pick_a_category_in_the_console(pages, api):
    token = await api.login("zhou", "consultant", name="周老师")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/console.html")
    await expect(page.get_by_role("tab", name="直播间")).to_have_attribute("aria-selected", "true")
    if not await page.locator("#create").evaluate("(d) => d.open"):
        await page.locator("#create-title").click()
    await page.get_by_label("标题").fill("理财入门直播")
    await page.locator("#room-category").select_option("财经")
    await page.get_by_role("button", name="创建", exact=True).click()
    await expect(page.locator("#room-list")).to_contain_text("理财入门直播")
    _, body = await api.get("/api/v1/rooms?host_id=me", token)
    assert [r["category"] for r in body["rooms"]] == ["财经"]

    await page.get_by_role("tab", name="课程").click()
    if not await page.locator("#course-create").evaluate("(d) => d.open"):
        await page.locator("#course-create summary").click()
    await expect(page.locator("#course-category option")).to_have_count(9)  # 不选择 + 8
    await page.get_by_label("课程名称").fill("基金定投")
    await page.locator("#course-category").select_option("财经")
    editor = page.locator("#lesson-editors fieldset").first
    await editor.get_by_label("课时标题").fill("第一课")
    await editor.get_by_label("正文（Markdown）").fill("内容")
    await page.get_by_role("button", name="创建课程（草稿）").click()
    await expect(page.locator("#course-list")).to_contain_text("基金定投")
    _, body = await api.get("/api/v1/courses?mine=1", token)
    assert [c["category"] for c in body["courses"]] == ["财经"]


@pytest.mark.gen_test(timeout=120)
async def test_a_visitor_searches_and_browses_a_category_before_logging_in(pages, api, kpay_app):
    await seed(api, kpay_app)
    page = await pages.new_page()
    await pages.open(page, "/")
    await expect(page.locator("#dev-login")).to_be_visible()
    await expect(page.locator("#browse")).to_be_hidden()
    await page.get_by_label("搜索", exact=True).fill("林老师")
    await page.get_by_role("button", name="搜索", exact=True).click()
    await expect(page.locator("#result-list li")).to_have_count(2)  # both of 林老师's courses
    await page.get_by_role("button", name="返回首页").click()
    await expect(page.locator("#results")).to_be_hidden()

    await page.get_by_role("button", name="亲子", exact=True).click()
    await expect(page.locator("#results-title")).to_have_text("亲子")
    await expect(page.locator("#result-list li")).to_contain_text("明天 20:00")
    await page.get_by_role("button", name="返回首页").click()
    await expect(page.locator("#results")).to_be_hidden()
    await expect(page.get_by_role("button", name="全部", exact=True)).to_have_attribute(
        "aria-pressed", "true")
