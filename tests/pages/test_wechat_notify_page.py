"""The wechat_notify plugin's page (/static/plugins/wechat_notify/): the subscription
templates a user may turn on, in Chinese, with their state; in dev mode outside WeChat
模拟同意 records a consent as WeChat's dialog would (docs/wechat_notify.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pagekit import STATIC, WECHAT_UA
from playwright.async_api import expect

PAGE = "/static/plugins/wechat_notify/"


@pytest.fixture
def kpay_overrides(fake_wechat_notify: Any) -> dict[str, Any]:
    kinds = {"room_starting": {"mode": "subscribe", "template_id": "SUB_ROOM",
                               "fields": {"thing1": "title"}},
             "audience_message": {"mode": "subscribe", "template_id": "SUB_MSG",
                         "fields": {"thing1": "title"}},
             "order_refunded": {"template_id": "TPL_REFUND", "fields": {"thing1": "title"}}}
    return {"server": {"static_path": str(STATIC)}, "plugins": {"enabled": ["wechat_notify"]},
            "wechat_notify": fake_wechat_notify.settings(kinds=kinds)}


@pytest.mark.gen_test(timeout=120)
async def test_a_user_turns_on_the_room_reminder(pages, api):
    token = await api.login("sam", "student", name="小明")
    page = await pages.open(await pages.new_page(token=token), PAGE)
    rows = page.locator("#consent-list li")
    await expect(rows).to_have_count(2)  # the template kind is not a subscription
    room = rows.filter(has_text="直播开播提醒")
    await expect(room).to_contain_text("未开启")
    await expect(room).to_contain_text("开始前 15 分钟提醒你")
    await expect(rows.filter(has_text="老师的消息")).to_contain_text("未开启")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "wechat-notify-consents")

    await room.get_by_role("button", name="模拟同意").click()
    await expect(rows.filter(has_text="直播开播提醒")).to_contain_text("已开启")
    status, body = await api.get("/api/v1/wechat-notify/consents", token)
    assert status == 200, body
    assert {"kind": "room_starting", "template_id": "SUB_ROOM", "accepted": True} in (
        body["consents"])
    await pages.screenshot(page, "wechat-notify-consent-on")


@pytest.mark.gen_test(timeout=120)
async def test_logged_out_is_asked_to_log_in(pages):
    page = await pages.open(await pages.new_page(), PAGE)
    await expect(page.locator("#need-login")).to_be_visible()
    await expect(page.locator("#need-login")).to_contain_text("请先登录")


PUSH_TOKEN = "pagePushToken"
SDK_STUB = """
window.wx = {
  config(options) { window.__config = options; },
  ready(callback) { setTimeout(callback, 0); },
  error() {},
};
"""


class TestInsideWeChat:
    @pytest.fixture
    def kpay_extra_plugins(self) -> list[tuple[str, Any]]:
        return []  # wechat_pay (on its local fake) signs wx.config here

    @pytest.fixture
    def kpay_overrides(self, fake_wechat_notify: Any) -> dict[str, Any]:
        kinds = {"room_starting": {"mode": "subscribe", "template_id": "SUB_ROOM",
                                   "fields": {"thing1": "title"}}}
        return {"server": {"static_path": str(STATIC)},
                "plugins": {"enabled": ["wechat_pay", "wechat_notify"]},
                "wechat_notify": fake_wechat_notify.settings(kinds=kinds,
                                                             message_token=PUSH_TOKEN)}

    @pytest.mark.gen_test(timeout=120)
    async def test_wechats_subscribe_button_records_the_answer(self, pages, api):
        token = await api.login("sam", "student", name="小明")
        page = await pages.new_page(token=token, user_agent=WECHAT_UA)

        async def sdk(route: Any) -> None:
            await route.fulfill(content_type="application/javascript", body=SDK_STUB)

        await page.route("https://res.wx.qq.com/**", sdk)
        await pages.open(page, PAGE)
        tag = page.locator("wx-open-subscribe[template='SUB_ROOM']")
        await expect(tag).to_have_count(1)
        config = await page.evaluate("window.__config")
        assert config["openTagList"] == ["wx-open-subscribe"], config
        assert not await page.get_by_role("button", name="模拟同意").count()
        # What WeChat's dialog reports when the user taps 允许.
        await tag.evaluate("""tag => tag.dispatchEvent(new CustomEvent("success", {detail: {
            subscribeDetails: JSON.stringify({SUB_ROOM: JSON.stringify({status: "accept"})})
        }}))""")
        await expect(page.locator("#consent-list li")).to_contain_text("已开启")
        await expect(tag).to_have_count(0)
        status, body = await api.get("/api/v1/wechat-notify/consents", token)
        assert status == 200, body
        assert body["consents"] == [
            {"kind": "room_starting", "template_id": "SUB_ROOM", "accepted": True}], body

    @pytest.mark.gen_test(timeout=120)
    async def test_an_empty_answer_waits_for_wechats_push(self, pages, api, kpay_app):
        from plugins.wechat_notify.fake import push, subscription_event

        token = await api.login("sam", "student", name="小明")
        await kpay_app.users.collection.update_one({"_id": "sam"},
                                                   {"$set": {"openid": "o_sam"}})
        page = await pages.new_page(token=token, user_agent=WECHAT_UA)

        async def sdk(route: Any) -> None:
            await route.fulfill(content_type="application/javascript", body=SDK_STUB)

        await page.route("https://res.wx.qq.com/**", sdk)
        await pages.open(page, PAGE)
        tag = page.locator("wx-open-subscribe[template='SUB_ROOM']")
        await expect(tag).to_have_count(1)
        # What phones often report: a success event with an empty detail.
        await tag.evaluate("""tag => tag.dispatchEvent(new CustomEvent("success",
            {detail: {}}))""")
        await expect(page.locator("#confirming")).to_be_visible()
        await expect(page.locator("#confirming")).to_contain_text("正在向微信确认")
        now = int(kpay_app.clock.now().timestamp())
        status, _ = await push(f"{api.base}/api/v1/wechat-notify/message-push", PUSH_TOKEN,
                               subscription_event("o_sam", {"SUB_ROOM": "accept"}, now), now)
        assert status == 200
        await expect(page.locator("#consent-list li")).to_contain_text("已开启", timeout=15000)
        await expect(page.locator("#confirming")).to_be_hidden()
