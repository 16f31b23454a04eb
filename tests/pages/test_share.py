"""Sharing (static/js/share.js) on the course and room pages: inside WeChat the JS-SDK is
configured with the server's signature for the exact page URL and the share card set;
outside WeChat 分享 copies the link; 生成海报 shows the server's poster in an overlay."""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Any

import pytest
from pagekit import PHONE_UA, STATIC, WECHAT_UA
from PIL import Image, ImageDraw
from playwright.async_api import expect

from kpay.testmedia import upload
from plugins.wechat_pay import runtime_of

SDK_STUB = """
window.wx = {
  config(options) { window.__config = options; },
  ready(callback) { setTimeout(callback, 0); },
  error() {},
  updateAppMessageShareData(card) { window.__friends = card; setTimeout(card.success, 0); },
  updateTimelineShareData(card) { window.__timeline = card; setTimeout(card.success, 0); },
};
"""


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["course_drip", "live_qa", "wechat_pay"]}}


@pytest.fixture
def kpay_extra_plugins() -> list[tuple[str, Any]]:
    return []  # the real wechat_pay plugin (on its local fake) replaces the stand-in


async def published_course(api: Any, price: int = 990) -> tuple[str, str, str]:
    """A published course with an uploaded cover: its id, its author's token, and the
    cover's public path."""
    author = await api.login("carol", "consultant", name="咖啡师卡萝")
    cover = await upload_cover(api, author)
    status, reply = await api.post("/api/v1/courses", {
        "title": "二十一天学会手冲咖啡", "description": "每天十分钟，从选豆到拉花。",
        "price": price, "cover_media_id": cover,
        "lessons": [{"title": "第一课：选豆", "body": "豆子"}]}, author)
    assert status == 201, reply
    course_id, cover_path = reply["course"]["id"], reply["course"]["cover"]
    assert cover_path.startswith("/media/"), cover_path
    status, reply = await api.post(f"/api/v1/courses/{course_id}/publish", {}, author)
    assert status == 200, reply
    return course_id, author, cover_path


@pytest.mark.gen_test(timeout=90)
async def test_share_card_is_signed_for_the_page_inside_wechat(pages, api, kpay_app):
    course_id, _, cover_path = await published_course(api)
    token = await api.login("alice", "student", name="爱丽丝")
    page = await pages.new_page(token=token, user_agent=WECHAT_UA)
    sdk_loads = []

    async def sdk(route: Any) -> None:
        sdk_loads.append(route.request.url)
        await route.fulfill(content_type="application/javascript", body=SDK_STUB)

    await page.route("https://res.wx.qq.com/**", sdk)
    await pages.open(page, f"/static/course.html?id={course_id}#lessons")
    await expect(page.locator("#course-title")).to_have_text("二十一天学会手冲咖啡")
    # Poll with evaluate (wait_for_function evaluates a string: the page's CSP forbids it).
    for _ in range(150):
        if await page.evaluate("Boolean(window.__friends && window.__timeline)"):
            break
        await asyncio.sleep(0.1)
    config = await page.evaluate("window.__config")
    assert config["jsApiList"] == ["updateAppMessageShareData", "updateTimelineShareData"]
    # The signature is the one WeChat computes for the page URL without its hash.
    page_url = f"{pages.base}/static/course.html?id={course_id}"
    ticket = runtime_of(kpay_app).fake.ticket
    plain = (f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}"
             f"&timestamp={config['timestamp']}&url={page_url}")
    assert config["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    assert config["timestamp"] == pytest.approx(kpay_app.clock.time(), abs=60)  # app clock
    friends = await page.evaluate("window.__friends")
    assert {k: friends[k] for k in ("title", "desc", "link", "imgUrl")} == {
        "title": "二十一天学会手冲咖啡", "desc": "每天十分钟，从选豆到拉花。",
        "link": page_url, "imgUrl": f"{pages.base}{cover_path}"}
    timeline = await page.evaluate("window.__timeline")
    assert timeline["link"] == page_url and timeline["title"] == "二十一天学会手冲咖啡"
    assert sdk_loads == ["https://res.wx.qq.com/open/js/jweixin-1.6.0.js"]

    await page.get_by_role("button", name="分享").click()
    await expect(page.locator("#share-hint")).to_contain_text("点击右上角 ··· 分享给朋友或朋友圈")


async def upload_cover(api: Any, token: str) -> str:
    """A warm gradient as a course cover, uploaded through the media API."""
    image = Image.new("RGB", (1200, 675))
    draw = ImageDraw.Draw(image)
    for x in range(1200):
        draw.line((x, 0, x, 675), fill=(120 + x // 12, 70 + x // 24, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return (await upload(api, token, "image", "cover", buffer.getvalue(), "cover.jpg"))["id"]


@pytest.mark.gen_test(timeout=90)
async def test_poster_overlay_and_copy_link_outside_wechat(pages, api, kpay_app):
    course_id, _, _ = await published_course(api)
    token = await api.login("alice", "student", name="爱丽丝")
    page = await pages.new_page(token=token, user_agent=PHONE_UA)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    await pages.open(page, f"/static/course.html?id={course_id}")
    await expect(page.locator("#course-title")).to_have_text("二十一天学会手冲咖啡")
    assert not [url for url in requested if "jssdk" in url or "res.wx.qq.com" in url]
    await pages.check_accessibility(page)
    await pages.screenshot(page, "course-share-bar")

    await page.get_by_role("button", name="分享").click()
    page_url = f"{pages.base}/static/course.html?id={course_id}"
    await expect(page.locator("#share-url")).to_have_text(page_url)
    await page.get_by_role("button", name="关闭").click()
    await expect(page.locator("#share-hint")).to_have_count(0)

    await page.get_by_role("button", name="生成海报").click()
    image = page.locator("#poster-image")
    await expect(image).to_be_visible()
    await expect(page.locator("#poster-tip")).to_have_text("长按或右键保存图片，发给朋友")
    size = await image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert size == [750, 1200]
    drawn = await image.evaluate("""(img) => {
      const canvas = document.createElement("canvas");
      canvas.width = 750; canvas.height = 1200;
      const context = canvas.getContext("2d");
      context.drawImage(img, 0, 0);
      return Array.from(context.getImageData(375, 200, 1, 1).data.slice(0, 3));
    }""")
    assert drawn[0] > 140 and drawn[2] < 80, drawn  # the uploaded cover, not a placeholder
    box = await image.bounding_box()
    assert box["width"] <= 390 and box["y"] >= 0 and box["y"] + box["height"] <= 844
    await pages.screenshot(page, "poster")


@pytest.mark.gen_test(timeout=90)
async def test_room_page_has_the_share_bar(pages, api, kpay_app):
    host = await api.login("carol", "consultant", name="卡萝")
    status, reply = await api.post("/api/v1/rooms", {"title": "周五晚答疑", "ticket_price": 0},
                                   host)
    assert status == 201
    room_id = reply["room"]["id"]
    token = await api.login("alice", "student")
    page = await pages.new_page(token=token, user_agent=PHONE_UA)
    await pages.open(page, f"/static/room.html?id={room_id}")
    await expect(page.locator("#room-title")).to_have_text("周五晚答疑")
    await page.get_by_role("button", name="生成海报").click()
    await expect(page.locator("#poster-image")).to_be_visible()
    await pages.check_accessibility(page)
