"""The student's live room page (room.html): buying a ticket on each channel, the room's
states, free and paid questions, moderation seen by the student, resume after a dropped
connection (from the socket's history, and from the REST replay when that is gone) and
the paged replay of an ended room."""

import asyncio
from typing import Any

import pytest
from pagekit import STATIC, WECHAT_UA, drop_every_socket, timers_held
from playwright.async_api import expect

from plugins.live_qa import history

FAKE_BRIDGE = """
window.__bridgeCalls = [];
window.WeixinJSBridge = { invoke(name, params, done) {
  window.__bridgeCalls.push({ name, params });
  setTimeout(() => done({ err_msg: 'get_brand_wcpay_request:ok' }), 10);
} };
"""


@pytest.fixture
def kpay_overrides(request: Any) -> dict[str, dict[str, Any]]:
    settings: dict[str, dict[str, Any]] = {
        "server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["live_qa"]},
        "live_qa": {"presence_interval_seconds": 0.05}}
    if "history_lost" in request.node.name:
        # The socket keeps 3 events per channel: a longer gap needs the REST replay.
        settings["realtime"] = {"history_size": 3}
    return settings


async def make_room(api, start=True, **fields):
    host = await api.login("host", "consultant")
    body = {"title": "职场沟通技巧", "ticket_price": 990, "question_min_price": 500, **fields}
    status, created = await api.post("/api/v1/rooms", body, host)
    assert status == 201, created
    room_id = created["room"]["id"]
    if start:
        status, _ = await api.post(f"/api/v1/rooms/{room_id}/start", token=host)
        assert status == 200
    return room_id, host


async def host_says(api, host, room_id, **data):
    ws = await api.socket(host)
    reply = await ws.request("pub", ch=f"room:{room_id}", type="message", data=data)
    assert reply["ok"], reply
    ws.close()


async def student_in_room(pages, api, room_id, user="bob", funds=5000, ticket=True,
                          held_clock=False, **options):
    token = await api.login(user, "student")
    if funds:
        await api.topup(token, funds)
    if ticket:
        status, _ = await api.post("/api/v1/orders", {
            "item": {"kind": "live_ticket", "room_id": room_id}, "channel": "wallet"}, token)
        assert status == 201
    page = await pages.new_page(token=token, **options)
    if held_clock:  # for timers_held
        await page.clock.install()
    await pages.open(page, f"/static/room.html?id={room_id}")
    return page, token


@pytest.mark.gen_test(timeout=60)
async def test_ticket_by_wechat_qr_after_the_wallet_falls_short(pages, api):
    room_id, _ = await make_room(api)
    page, token = await student_in_room(pages, api, room_id, funds=500, ticket=False)
    await page.get_by_role("button", name="余额支付").click()
    await expect(page.locator("#join-error")).to_have_text("余额不足：需要 ¥9.90，当前余额 ¥5.00")
    await expect(page.get_by_role("link", name="去充值")).to_be_visible()
    await pages.screenshot(page, "room-join-no-funds")

    # Desktop: the QR code of the native channel; the dev simulator pays it.
    await page.get_by_role("button", name="微信支付").click()
    await expect(page.locator("#qr svg")).to_be_visible()
    await expect(page.locator("#order-amount")).to_have_text("¥9.90")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "room-join-qr")
    await page.get_by_role("button", name="模拟支付（开发模式）").click()
    await expect(page.locator("#feed-card")).to_be_visible()
    await expect(page.locator("#payment")).to_be_hidden()
    await expect(page.locator("#join")).to_be_hidden()
    _, wallet = await api.get("/api/v1/wallet", token=token)
    assert wallet["balance"] == 500  # paid by WeChat, not from the wallet
    _, access = await api.get(f"/api/v1/rooms/{room_id}", token=token)
    assert access["me"]["ticket"] == "active"


@pytest.mark.gen_test(timeout=60)
async def test_inside_wechat_a_paid_question_goes_through_the_js_bridge(pages, api):
    room_id, host = await make_room(api)
    page, token = await student_in_room(pages, api, room_id, funds=990,
                                        user_agent=WECHAT_UA, init_script=FAKE_BRIDGE)
    await page.get_by_label("你的问题").fill("跨部门合作怎么推进？")
    await page.get_by_label("悬赏金额（元）").fill("8")
    await page.get_by_role("button", name="微信支付提问").click()
    await expect(page.locator("#order-status")).to_have_text("待支付")
    calls = await page.evaluate("window.__bridgeCalls")
    assert [c["name"] for c in calls] == ["getBrandWCPayRequest"]
    # WeChat's notify reaches the server (here: the simulator route); the page sees it.
    _, orders = await api.get("/api/v1/orders", token=token)
    order = orders["orders"][0]
    assert (order["kind"], order["amount"], order["channel"]) == ("live_question", 800, "jsapi")
    status, _ = await api.post(f"/api/v1/dev/orders/{order['id']}/pay", token=token)
    assert status == 200
    await expect(page.locator("#ask-done")).to_have_text("提问已发布，等待主持人回答")
    question = page.locator("#questions li")
    await expect(question).to_have_count(1)
    await expect(question).to_contain_text("悬赏 ¥8.00")
    await expect(question).to_contain_text("跨部门合作怎么推进？")
    _, queue = await api.get(f"/api/v1/rooms/{room_id}/questions", token=host)
    assert [(q["text"], q["bounty"]) for q in queue["questions"]] == [("跨部门合作怎么推进？", 800)]


@pytest.mark.gen_test(timeout=60)
async def test_free_room_waits_for_the_start_then_takes_free_questions(pages, api):
    room_id, host = await make_room(api, start=False, ticket_price=0, question_min_price=200)
    page, token = await student_in_room(pages, api, room_id, funds=0, ticket=False)
    await expect(page.locator("#ticket-price")).to_have_text("免费")
    await expect(page.get_by_role("button", name="微信支付")).to_be_hidden()
    await page.get_by_role("button", name="免费入场").click()
    await expect(page.locator("#room-state")).to_have_text("未开始")
    await expect(page.locator("#feed-empty")).to_have_text("直播尚未开始")
    await expect(page.locator("#ask")).to_be_hidden()
    await expect(page.locator("#connection")).to_have_text("已连接")

    status, _ = await api.post(f"/api/v1/rooms/{room_id}/start", token=host)
    assert status == 200
    await expect(page.locator("#room-state")).to_have_text("直播中")
    await expect(page.locator("#ask")).to_be_visible()

    # Below the minimum bounty: said on the page, nothing ordered.
    await page.get_by_label("你的问题").fill("新人怎么做周报？")
    await page.get_by_label("悬赏金额（元）").fill("1.5")
    await page.get_by_role("button", name="余额支付提问").click()
    await expect(page.locator("#ask-error")).to_have_text(
        "请填写悬赏金额，至少 ¥2.00（最多两位小数）")
    _, orders = await api.get("/api/v1/orders", token=token)
    assert [o["kind"] for o in orders["orders"]] == ["live_ticket"]

    await page.get_by_role("button", name="免费提问").click()
    await expect(page.locator("#ask-done")).to_have_text("提问已发布")
    question = page.locator("#questions li")
    await expect(question).to_contain_text("免费")
    await expect(question).to_contain_text("新人怎么做周报？")
    await expect(page.get_by_label("你的问题")).to_have_value("")
    # Entering an empty room catches up by REST (its seqs do not start at 0): no drop, no note.
    await expect(page.locator("#resync-note")).to_be_hidden()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "room-free-question")


@pytest.mark.gen_test(timeout=60)
async def test_student_sees_removals_mute_and_being_removed(pages, api):
    room_id, host = await make_room(api)
    page, _ = await student_in_room(pages, api, room_id)
    await host_says(api, host, room_id, text="第一条")
    await host_says(api, host, room_id, image_url=pages.base + "/healthz")
    await host_says(api, host, room_id, audio_url="https://example.invalid/a.mp3", duration=42)
    feed = page.locator("#feed li")
    await expect(feed).to_have_count(3)
    await expect(feed.nth(1).get_by_role("link", name="查看主持人发送的图片")).to_have_count(1)
    await expect(feed.nth(2)).to_contain_text("语音 42 秒")
    first_seq = await feed.first.get_attribute("data-seq")

    status, _ = await api.request("DELETE", f"/api/v1/rooms/{room_id}/messages/{first_seq}",
                                  token=host)
    assert status == 200
    await expect(feed.first).to_contain_text("该消息已被主持人删除")
    await expect(feed.first).not_to_contain_text("第一条")

    status, _ = await api.post(f"/api/v1/rooms/{room_id}/members/bob/mute", token=host)
    assert status == 200
    await expect(page.locator("#muted-notice")).to_be_visible()
    await expect(page.locator("#ask")).to_be_hidden()
    await pages.check_accessibility(page)
    await pages.screenshot(page, "room-muted")
    status, _ = await api.post(f"/api/v1/rooms/{room_id}/members/bob/unmute", token=host)
    await expect(page.locator("#muted-notice")).to_be_hidden()
    await expect(page.locator("#ask")).to_be_visible()

    status, _ = await api.request("DELETE", f"/api/v1/rooms/{room_id}/members/bob", token=host)
    assert status == 200
    await expect(page.locator("#removed-notice")).to_have_text("你已被主持人移出直播间。")
    await expect(page.locator("#ask")).to_be_hidden()

    # Coming back: the ticket is revoked, no way in.
    await pages.open(page, f"/static/room.html?id={room_id}")
    await expect(page.locator("#join-hint")).to_have_text("你已被主持人移出直播间，无法再次进入。")
    await expect(page.locator("#removed-notice")).to_be_visible()
    await expect(page.get_by_role("button", name="余额支付")).to_be_hidden()


def said_by_host(text: str) -> dict[str, str]:
    """A host message as the channel stores it, published straight through the plugin
    (no socket of the host's to drop with the student's)."""
    return {"from": "host", "role": "host", "text": text, "at": "2026-01-01T08:00:00+08:00"}


@pytest.mark.gen_test(timeout=60)
async def test_resume_after_a_dropped_connection(pages, api, kpay_app):
    room_id, _ = await make_room(api)
    page, _ = await student_in_room(pages, api, room_id, held_clock=True)
    await expect(page.locator("#connection")).to_have_text("已连接")
    await history.publish(kpay_app, room_id, "message", said_by_host("断线前"))
    await expect(page.locator("#feed li")).to_have_count(1)
    async with timers_held(page):
        assert drop_every_socket(kpay_app) == 1
        await history.publish(kpay_app, room_id, "message", said_by_host("断线时"))
    await expect(page.locator("#connection")).to_have_text("已连接")
    feed = page.locator("#feed li .msg-text")
    await expect(feed).to_have_text(["断线前", "断线时"])
    await expect(page.locator("#resync-note")).to_be_hidden()  # the socket's history sufficed


@pytest.mark.gen_test(timeout=60)
async def test_resume_when_history_lost_pages_the_replay(pages, api, kpay_app):
    room_id, _ = await make_room(api)
    page, _ = await student_in_room(pages, api, room_id, held_clock=True)
    await expect(page.locator("#connection")).to_have_text("已连接")
    said = [f"第 {n} 条" for n in range(1, 7)]
    async with timers_held(page):
        dropped = set(kpay_app.sockets)
        assert drop_every_socket(kpay_app) == 1
        for text in said:  # more than the 3 events the socket keeps
            await history.publish(kpay_app, room_id, "message", said_by_host(text))
        await asyncio.sleep(0.6)  # longer than any first reconnect delay
        assert kpay_app.sockets <= dropped  # the page has not reconnected
    await expect(page.locator("#connection")).to_have_text("已连接")
    await expect(page.locator("#feed li .msg-text")).to_have_text(said)
    await expect(page.locator("#resync-note")).to_be_visible()
    seqs = await page.locator("#feed li").evaluate_all(
        "(items) => items.map((li) => li.dataset.seq)")
    assert len(set(seqs)) == len(said)


@pytest.mark.gen_test(timeout=90)
async def test_replay_of_an_ended_room_pages_every_message(pages, api, kpay_app):
    room_id, host = await make_room(api)
    student = await api.login("bob", "student")
    await api.topup(student, 990)
    status, _ = await api.post("/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": room_id}, "channel": "wallet"}, student)
    assert status == 201
    for n in range(1, 251):  # more than one replay page (200)
        await history.publish(kpay_app, room_id, "message", said_by_host(f"要点 {n}"))
    status, ended = await api.post(f"/api/v1/rooms/{room_id}/end", token=host)
    assert status == 200 and ended["refunded"] == 0
    page = await pages.new_page(token=student)
    await pages.open(page, f"/static/room.html?id={room_id}")
    await expect(page.locator("#feed-title")).to_have_text("回放")
    feed = page.locator("#feed li")
    await expect(feed).to_have_count(250)
    await expect(feed.first).to_contain_text("要点 1")
    await expect(feed.last).to_contain_text("要点 250")
    await expect(page.locator("#ask")).to_be_hidden()
    await expect(page.locator("#presence")).to_be_hidden()


@pytest.mark.gen_test(timeout=60)
async def test_room_page_without_login_or_id(pages, api):
    room_id, _ = await make_room(api)
    page = await pages.new_page()
    await pages.open(page, f"/static/room.html?id={room_id}")
    await expect(page.get_by_role("link", name="去登录")).to_be_visible()
    await expect(page.locator("#room-info")).to_be_hidden()

    token = await api.login("bob", "student")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/room.html")
    await expect(page.locator("#error")).to_have_text("缺少直播间编号，请从首页进入直播间")
    await pages.open(page, "/static/room.html?id=nope")
    await expect(page.locator("#error")).to_have_text("这个直播间不存在")


@pytest.mark.gen_test(timeout=60)
async def test_the_host_in_room_html_is_sent_to_the_console(pages, api):
    room_id, host = await make_room(api)
    await host_says(api, host, room_id, text="开场白")
    page = await pages.new_page(token=host)
    await pages.open(page, f"/static/room.html?id={room_id}")
    await expect(page.locator("#feed li")).to_contain_text("开场白")
    await expect(page.get_by_role("link", name="去工作台开播、回答和管理")).to_have_attribute(
        "href", "/static/console.html#rooms")
    await expect(page.locator("#ask")).to_be_hidden()
    await expect(page.locator("#join")).to_be_hidden()
    await pages.check_accessibility(page)
