"""The consultant console's 直播间 section with students in room.html: a whole live room
run end to end in real browsers (one context per person), and the console on its own."""

from typing import Any

import pytest
from pagekit import STATIC
from playwright.async_api import expect


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["live_qa"]},
            "live_qa": {"presence_interval_seconds": 0.05}}


# Nicknames: pages show people by these, never by their ids.
NAMES = {"host": "林老师", "bob": "鲍勃", "carol": "卡罗尔"}


async def open_console(pages, api, user="host"):
    token = await api.login(user, "consultant", name=NAMES.get(user))
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/console.html")
    await expect(page.get_by_role("tab", name="直播间")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#connection")).to_have_text("已连接")
    return page, token


async def create_room_in_console(page, title, ticket="9.9", least="5", free=True):
    # The page opens the form itself once it knows there are no rooms: wait for the list,
    # or a click here could close what the page just opened.
    await expect(page.locator("#rooms-empty, #room-list li").first).to_be_visible()
    details = page.locator("#create")
    if not await details.evaluate("(d) => d.open"):
        await page.locator("#create-title").click()
    await page.get_by_label("标题").fill(title)
    await page.get_by_label("简介（可选）").fill("面试前必看：常见问题与回答思路")
    await page.get_by_label("门票价格（元）").fill(ticket)
    await page.get_by_label("最低提问悬赏（元）").fill(least)
    free_box = page.get_by_label("允许免费提问")
    if await free_box.is_checked() != free:
        await free_box.click()
    await page.get_by_label("人数上限（可选）").fill("50")
    await page.get_by_role("button", name="创建", exact=True).click()
    await expect(page.locator("#manage-title")).to_have_text(title)
    href = await page.locator("#manage-link").get_attribute("href")
    # The students' page by name: no raw address or room id on the consultant's screen.
    await expect(page.locator("#manage-link")).to_have_text("打开学生看到的直播间")
    return href.split("id=", 1)[1]


async def open_room_as_student(pages, api, user, room_id, funds=0):
    token = await api.login(user, "student", name=NAMES.get(user))
    if funds:
        await api.topup(token, funds)
    page = await pages.new_page(token=token)
    await pages.open(page, f"/static/room.html?id={room_id}")
    return page, token


async def buy_ticket_with_wallet(page):
    await page.get_by_role("button", name="余额支付").click()
    await expect(page.locator("#feed-card")).to_be_visible()
    await expect(page.locator("#join")).to_be_hidden()


async def ask_paid(page, text, yuan):
    await page.get_by_label("你的问题").fill(text)
    await page.get_by_label("悬赏金额（元）").fill(yuan)
    await page.get_by_role("button", name="余额支付提问").click()
    await expect(page.locator("#ask-done")).to_have_text("提问已发布，等待主持人回答")


@pytest.mark.gen_test(timeout=120)
async def test_a_live_room_end_to_end(pages, api, kpay_app):
    # The consultant creates and starts a room in the console.
    host, host_token = await open_console(pages, api)
    await expect(host.locator("#rooms-empty")).to_be_visible()
    await pages.check_accessibility(host)
    await pages.screenshot(host, "console-rooms-empty")
    room_id = await create_room_in_console(host, "如何准备技术面试")
    status, created = await api.get(f"/api/v1/rooms/{room_id}", token=host_token)
    assert status == 200
    room = created["room"]
    assert (room["ticket_price"], room["question_min_price"], room["free_questions"],
            room["capacity"], room["state"]) == (990, 500, True, 50, "scheduled")
    await expect(host.locator("#manage-state")).to_have_text("未开始")
    await expect(host.locator("#room-list li")).to_have_count(1)
    await host.get_by_role("button", name="开始直播").click()
    await expect(host.locator("#manage-state")).to_have_text("直播中")
    await expect(host.get_by_role("button", name="开始直播")).to_be_hidden()

    # Two students top up and buy tickets from the wallet in room.html.
    bob, bob_token = await open_room_as_student(pages, api, "bob", room_id, funds=3000)
    await expect(bob.locator("#room-title")).to_have_text("如何准备技术面试")
    await expect(bob.locator("#ticket-price")).to_have_text("¥9.90")
    await expect(bob.locator("#room-state")).to_have_text("直播中")
    await pages.check_accessibility(bob)
    await pages.screenshot(bob, "room-join")
    await buy_ticket_with_wallet(bob)
    await expect(bob.locator("#connection")).to_have_text("已连接")
    carol, carol_token = await open_room_as_student(pages, api, "carol", room_id, funds=2000)
    await buy_ticket_with_wallet(carol)
    await expect(host.locator("#manage-presence")).to_have_text("在线 3 人")
    await expect(bob.locator("#presence")).to_have_text("在线 3 人")
    await expect(host.locator("#manage-sold")).to_have_text("2 / 50")

    # The host speaks; both students see it live.
    await host.get_by_label("发言内容").fill("大家好，今天聊聊技术面试。")
    await host.get_by_role("button", name="发送").click()
    for page in (bob, carol):
        message = page.locator("#feed li").last
        await expect(message).to_contain_text("大家好，今天聊聊技术面试。")
        await expect(message).to_contain_text("林老师")

    # carol asks first with a small bounty, bob second with a bigger one: bob's is on top.
    await ask_paid(carol, "简历上写什么项目最好？", "5")
    await ask_paid(bob, "算法题准备多久合适？", "12.5")
    queue = host.locator("#queue li")
    await expect(queue).to_have_count(2)
    await expect(queue.first).to_contain_text("算法题准备多久合适？")
    await expect(queue.first).to_contain_text("悬赏 ¥12.50")
    await expect(queue.nth(1)).to_contain_text("简历上写什么项目最好？")
    await expect(carol.locator("#questions li")).to_have_count(2)
    _, wallet = await api.get("/api/v1/wallet", token=bob_token)
    assert wallet["balance"] == 3000 - 990 - 1250

    # carol says 同问 to bob's question; the count moves on every page.
    vote = carol.get_by_role("button", name="同问：算法题准备多久合适？")
    await vote.click()
    await expect(vote).to_have_text("已同问")
    await expect(queue.first.locator(".q-upvotes")).to_have_text("1")
    await pages.check_accessibility(host)
    await pages.screenshot(host, "console-room-queue")
    await pages.check_accessibility(carol)
    await pages.screenshot(carol, "room-live-questions")

    # The host answers the top question; bob sees the answer.
    await host.get_by_label("回答 鲍勃 的提问").fill("每天一题，坚持两个月。")
    await queue.first.get_by_role("button", name="回答", exact=True).click()
    await expect(queue).to_have_count(1)
    answered = bob.locator('#questions li[data-status="answered"]')
    await expect(answered).to_contain_text("每天一题，坚持两个月。")
    await expect(answered).to_contain_text("已回答")
    await expect(host.locator("#answered li")).to_have_count(1)
    # Income: 2 tickets of 9.90 and the answered 12.50 bounty.
    await expect(host.locator("#earn-tickets")).to_have_text("¥19.80")
    await expect(host.locator("#earn-answers")).to_have_text("¥12.50")
    await pages.screenshot(bob, "room-answered")

    # The host ends the room: carol's unanswered paid question is refunded.
    await host.get_by_role("button", name="结束直播").click()
    await host.get_by_role("button", name="确认结束").click()
    await expect(host.locator("#manage-done")).to_have_text(
        "直播已结束，1 个未回答的付费提问已全额退款")
    await expect(host.locator("#manage-state")).to_have_text("已结束")
    await expect(host.locator("#post")).to_be_hidden()
    await pages.check_accessibility(host)
    await pages.screenshot(host, "console-room-ended")
    await expect(carol.locator("#refund-notices li")).to_have_text(
        "你的提问「简历上写什么项目最好？」未获回答，悬赏 ¥5.00 已退回钱包。")
    await expect(carol.locator("#room-state")).to_have_text("已结束")
    await expect(carol.locator("#ask")).to_be_hidden()
    await expect(carol.locator('#questions li[data-status="refunded"]')).to_contain_text("已退款")
    await pages.screenshot(carol, "room-refunded")
    _, wallet = await api.get("/api/v1/wallet", token=carol_token)
    assert wallet["balance"] == 2000 - 990  # the 5.00 bounty came back

    # The replay after the end: a fresh load shows what was said.
    await pages.open(bob, f"/static/room.html?id={room_id}")
    await expect(bob.locator("#feed-title")).to_have_text("回放")
    await expect(bob.locator("#room-when")).to_have_text("直播已结束，以下为回放")
    await expect(bob.locator("#feed li")).to_have_count(1)
    await expect(bob.locator("#feed li")).to_contain_text("大家好，今天聊聊技术面试。")
    await expect(bob.locator("#questions li").first).to_contain_text("每天一题，坚持两个月。")
    await pages.check_accessibility(bob)
    await pages.screenshot(bob, "room-replay")


@pytest.mark.gen_test(timeout=90)
async def test_console_moderation_reaches_the_student(pages, api):
    host, _ = await open_console(pages, api)
    room_id = await create_room_in_console(host, "产品经理入门", ticket="0", least="1")
    await host.get_by_role("button", name="开始直播").click()
    await expect(host.locator("#manage-state")).to_have_text("直播中")
    bob, bob_token = await open_room_as_student(pages, api, "bob", room_id)
    await bob.get_by_role("button", name="免费入场").click()
    await expect(bob.locator("#ask")).to_be_visible()
    await bob.get_by_label("你的问题").fill("需求文档怎么写？")
    await bob.get_by_role("button", name="免费提问").click()
    queue = host.locator("#queue li")
    await expect(queue).to_have_count(1)
    await expect(queue.first).to_contain_text("免费")

    # An image and a text; the host removes the text from the console.
    await host.get_by_label("类型").select_option("image_url")
    await host.get_by_label("图片地址（http 或 https）").fill("ftp://not-allowed")
    await host.get_by_role("button", name="发送").click()
    await expect(host.locator("#post-error")).to_have_text(
        "请输入以 http:// 或 https:// 开头的地址")
    await host.get_by_label("类型").select_option("text")
    await host.get_by_label("发言内容").fill("这条要撤回")
    await host.get_by_role("button", name="发送").click()
    await expect(bob.locator("#feed li")).to_contain_text("这条要撤回")
    await host.locator("#host-feed li").first.get_by_role("button", name="删除").click()
    await expect(bob.locator("#feed li")).to_contain_text("该消息已被主持人删除")
    await expect(host.locator("#host-feed li")).to_contain_text("该消息已被主持人删除")

    # Mute and unmute bob from his question in the queue.
    await queue.first.get_by_role("button", name="禁言").click()
    await expect(bob.locator("#muted-notice")).to_be_visible()
    await expect(queue.first.get_by_role("button", name="解除禁言")).to_be_visible()
    await queue.first.get_by_role("button", name="解除禁言").click()
    await expect(bob.locator("#muted-notice")).to_be_hidden()

    # Removing takes a second tap.
    await queue.first.get_by_role("button", name="移出").click()
    confirm = queue.first.get_by_role("button", name="确认移出？")
    await expect(confirm).to_be_visible()
    _, access = await api.get(f"/api/v1/rooms/{room_id}", token=bob_token)
    assert access["me"]["ticket"] == "active"
    await confirm.click()
    await expect(bob.locator("#removed-notice")).to_be_visible()
    await expect(queue.first).to_contain_text("鲍勃 已被移出")
    _, access = await api.get(f"/api/v1/rooms/{room_id}", token=bob_token)
    assert access["me"]["ticket"] == "revoked"
    await pages.check_accessibility(host)


@pytest.mark.gen_test(timeout=60)
async def test_create_form_refuses_bad_input_and_keeps_the_yuan_exact(pages, api):
    host, host_token = await open_console(pages, api)
    await expect(host.locator("#create")).to_have_attribute("open", "")
    create = host.get_by_role("button", name="创建", exact=True)
    error = host.locator("#create-error")
    await create.click()
    await expect(error).to_have_text("请填写标题")
    await host.get_by_label("标题").fill("理财第一课")
    for typed in ("abc", "1.234", "-3"):
        await host.get_by_label("门票价格（元）").fill(typed)
        await create.click()
        await expect(error).to_have_text("门票价格不正确（最多两位小数）")
    await host.get_by_label("门票价格（元）").fill("19.99")
    await host.get_by_label("最低提问悬赏（元）").fill("0.3")
    await host.get_by_label("人数上限（可选）").fill("0")
    await create.click()
    await expect(error).to_have_text("人数上限须为正整数")
    _, listed = await api.get("/api/v1/rooms?host_id=me", token=host_token)
    assert listed["rooms"] == []

    # Over the plugin's limit: the server refuses, the page names the field.
    await host.get_by_label("人数上限（可选）").fill("999999")
    await create.click()
    await expect(error).to_have_text("输入有误（人数上限）")

    await host.get_by_label("人数上限（可选）").fill("")
    await host.get_by_label("允许免费提问").uncheck()
    await host.get_by_label("计划开始时间（可选）").fill("2030-01-02T20:30")
    await create.click()
    await expect(host.locator("#manage-title")).to_have_text("理财第一课")
    await expect(host.locator("#manage-price")).to_have_text("¥19.99")
    _, listed = await api.get("/api/v1/rooms?host_id=me", token=host_token)
    room = listed["rooms"][0]
    assert (room["ticket_price"], room["question_min_price"], room["free_questions"],
            room["capacity"]) == (1999, 30, False, 500)
    assert room["starts_at"].startswith("2030-01-02T12:30")  # 20:30 in Asia/Shanghai
    await expect(host.locator("#room-list li")).to_contain_text("未开始 · 1月2日 20:30")
    await pages.screenshot(host, "console-room-created")


@pytest.mark.gen_test(timeout=60)
async def test_console_is_for_consultants(pages, api):
    token = await api.login("bob", "student")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/console.html")
    await expect(page.locator("#not-consultant")).to_have_text(
        "当前账号不是咨询师，工作台仅对咨询师开放。")
    await expect(page.locator("#tabs")).to_be_hidden()
    page = await pages.new_page()
    await pages.open(page, "/static/console.html")
    await expect(page.get_by_role("link", name="去登录")).to_be_visible()
    await expect(page.locator("#not-consultant")).to_be_hidden()


@pytest.mark.gen_test(timeout=60)
async def test_console_queue_catches_up_after_a_dropped_connection(pages, api, kpay_app):
    host, host_token = await open_console(pages, api)
    status, created = await api.post("/api/v1/rooms", {
        "title": "读书会", "ticket_price": 0, "question_min_price": 100}, host_token)
    room_id = created["room"]["id"]
    await api.post(f"/api/v1/rooms/{room_id}/start", token=host_token)
    await pages.open(host, "/static/console.html")
    await host.get_by_role("button", name="管理：读书会").click()
    await expect(host.locator("#manage-state")).to_have_text("直播中")
    await expect(host.locator("#connection")).to_have_text("已连接")
    student = await api.login("bob", "student")
    await api.topup(student, 1000)
    await api.post("/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": room_id}, "channel": "wallet"}, student)

    for socket in list(kpay_app.sockets):
        socket.close(1012, "service restart")
    for text, bounty in (("第一本读什么？", 100), ("怎么做读书笔记？", 300)):
        status, _ = await api.post("/api/v1/orders", {"item": {
            "kind": "live_question", "room_id": room_id, "text": text, "bounty": bounty},
            "channel": "wallet"}, student)
        assert status == 201
    await expect(host.locator("#connection")).to_have_text("已连接")
    queue = host.locator("#queue li .q-text")
    await expect(queue).to_have_text(["怎么做读书笔记？", "第一本读什么？"])
