"""Faces and names: a consultant sets a nickname and an avatar in the console (资料); a
student opens the consultant's profile page from a link, follows, sees their rooms and
courses; a room shows askers and the host by nickname and avatar, never by id."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from pagekit import STATIC
from PIL import Image
from playwright.async_api import expect

from kpay.testmedia import upload


@pytest.fixture
def kpay_overrides(tmp_path: Any) -> dict[str, dict[str, Any]]:
    return {"server": {"static_path": str(STATIC)},
            "plugins": {"enabled": ["live_qa", "consult_billing", "course_drip"]},
            "media": {"path": str(tmp_path / "media")}}


def face_png() -> bytes:
    """A 400x400 picture with something on it (a face-ish circle on a colour)."""
    image = Image.new("RGB", (400, 400), (11, 92, 173))
    for x in range(400):
        for y in range(400):
            head = (x - 200) ** 2 + (y - 170) ** 2 < 90 ** 2
            body = (x - 200) ** 2 + (y - 420) ** 2 < 170 ** 2
            if head or body:
                image.putpixel((x, y), (245, 222, 200))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def consultant(api: Any, name: str = "林晓") -> str:
    token = await api.login("lin", "consultant", name=name)
    status, body = await api.put("/api/v1/consultants/me", {
        "rate_per_minute": 300, "min_minutes": 5, "max_minutes": 60,
        "title": "资深职业规划师",
        "bio": "十年互联网招聘经验，帮助 500+ 人拿到心仪 offer。\n擅长：简历、面试、转行。"}, token)
    assert status == 200, body
    return token


async def set_avatar(api: Any, token: str) -> str:
    """Upload a face and make it the user's avatar; its URL."""
    data = face_png()
    media = await upload(api, token, "image", "avatar", data, "face.png")
    status, me = await api.request("PATCH", "/api/v1/me",
                                   {"avatar_media_id": media["id"]}, token=token)
    assert status == 200, me
    return me["avatar_url"]


async def live_room(api: Any, token: str, title: str = "面试前一晚该准备什么") -> str:
    status, created = await api.post("/api/v1/rooms", {
        "title": title, "ticket_price": 0, "question_min_price": 500,
        "free_questions": True}, token)
    assert status == 201, created
    room_id = created["room"]["id"]
    assert (await api.post(f"/api/v1/rooms/{room_id}/start", token=token))[0] == 200
    return room_id


async def published_course(api: Any, token: str, title: str = "求职面试 30 讲") -> str:
    status, created = await api.post("/api/v1/courses", {
        "title": title, "price": 9900,
        "lessons": [{"title": "第一讲 自我介绍", "body": "你好"},
                    {"title": "第二讲 项目经历", "body": "你好"}]}, token)
    assert status == 201, created
    course_id = created["course"]["id"]
    assert (await api.post(f"/api/v1/courses/{course_id}/publish", token=token))[0] == 200
    return course_id


@pytest.mark.gen_test(timeout=90)
async def test_consultant_sets_nickname_avatar_title_and_bio_in_the_console(pages, api, tmp_path):
    token = await consultant(api, name="lin")
    page = await pages.new_page(token=token)
    await pages.open(page, "/static/console.html#profile")
    await expect(page.get_by_role("tab", name="资料")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_label("头衔")).to_have_value("资深职业规划师")
    # The default face: the nickname's first character.
    await expect(page.locator("#pf-avatar .avatar")).to_have_text("l")

    picture = tmp_path / "me.png"
    picture.write_bytes(face_png())
    await page.locator("#pf-avatar-file").set_input_files(str(picture))
    await expect(page.locator("#pf-avatar-state")).to_have_text("头像已更新")
    avatar = page.locator("#pf-avatar img.avatar")
    await expect(avatar).to_have_attribute("src", re.compile(r"^/media/[^/]+/thumb$"))
    assert await avatar.evaluate("img => img.complete && img.naturalWidth > 0")

    # A nickname with a line break in it is refused on the page, nothing sent.
    await page.get_by_label("昵称").fill("林\u200b晓")
    await page.get_by_role("button", name="保存资料").click()
    await expect(page.locator("#pf-error")).to_contain_text("昵称须为 1–20 个字")
    await page.get_by_label("昵称").fill("  林晓老师 ")
    await page.get_by_label("头衔").fill("前大厂招聘负责人")
    await page.get_by_label("个人简介").fill("十年招聘经验。\n帮你把简历和面试准备好。")
    await page.get_by_role("button", name="保存资料").click()
    await expect(page.locator("#pf-saved")).to_have_text("资料已保存")
    await expect(page.get_by_label("昵称")).to_have_value("林晓老师")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "console-profile")

    _, me = await api.get("/api/v1/me", token)
    assert me["name"] == "林晓老师" and me["avatar_url"].startswith("/media/")
    _, mine = await api.get("/api/v1/consultants/me", token)
    profile = mine["profile"]
    assert profile["title"] == "前大厂招聘负责人"
    assert profile["bio"] == "十年招聘经验。\n帮你把简历和面试准备好。"
    assert (profile["rate_per_minute"], profile["min_minutes"]) == (300, 5)  # kept


@pytest.mark.gen_test(timeout=90)
async def test_student_opens_a_profile_follows_and_opens_a_room(pages, api, kpay_app):
    token = await consultant(api)
    face = await set_avatar(api, token)
    room_id = await live_room(api, token)
    course_id = await published_course(api, token)
    student = await api.login("amy", "student", name="艾米")

    page = await pages.new_page(token=student)
    await pages.open(page, "/static/profile.html?id=lin")
    await expect(page.locator("#profile-name")).to_have_text("林晓")
    await expect(page.locator("#profile-title")).to_have_text("资深职业规划师")
    await expect(page.locator("#profile-avatar img.avatar")).to_have_attribute("src", face)
    assert await page.locator("#profile-avatar img").evaluate("img => img.naturalWidth > 0")
    await expect(page.locator("#profile-followers")).to_have_text("0")
    await expect(page.locator("#consult-rate")).to_have_text("¥3.00/分钟")
    await expect(page.locator("#bio-text")).to_contain_text("十年互联网招聘经验")
    await expect(page.get_by_role("link", name="发起咨询")).to_have_attribute(
        "href", "/static/consult.html?consultant=lin")
    rooms = page.locator("#room-list li")
    await expect(rooms).to_have_count(1)
    await expect(rooms.first).to_contain_text("面试前一晚该准备什么")
    await expect(rooms.first).to_contain_text("直播中")
    courses = page.locator("#course-list li")
    await expect(courses).to_have_count(1)
    await expect(courses.first).to_contain_text("求职面试 30 讲")
    await expect(courses.first).to_contain_text("¥99.00")
    await expect(courses.first.get_by_role("link")).to_have_attribute(
        "href", f"/static/course.html?id={course_id}")

    # A consultant's page can be shared as a poster drawn by the server.
    await page.get_by_role("button", name="生成海报").click()
    await expect(page.locator("#poster-image")).to_be_visible()
    await page.keyboard.press("Escape")

    follow = page.get_by_role("button", name="关注 林晓")
    await follow.click()
    await expect(page.locator("#follow")).to_have_text("已关注")
    await expect(page.locator("#follow")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#profile-followers")).to_have_text("1")
    await pages.check_accessibility(page)
    await pages.screenshot(page, "profile")
    _, following = await api.get("/api/v1/me/following", student)
    assert [p["id"] for p in following["following"]] == ["lin"]
    # The student's own page lists whom they follow.
    own = await pages.new_page(token=student)
    await pages.open(own, "/static/profile.html?id=amy")
    await expect(own.locator("#following-list li")).to_have_text(["林晓3月2日 10:00 关注"])
    await own.locator("#following-list a").click()
    await expect(own.locator("#profile-name")).to_have_text("林晓")

    await page.reload()
    await expect(page.locator("#follow")).to_have_text("已关注")  # kept on the server
    await page.locator("#follow").click()
    await expect(page.locator("#follow")).to_have_text("关注")
    await expect(page.locator("#profile-followers")).to_have_text("0")

    await rooms.first.get_by_role("link").click()
    await expect(page).to_have_url(f"{pages.base}/static/room.html?id={room_id}")
    await expect(page.locator("#room-host")).to_contain_text("林晓")

    # The course page names its author the same way, linked back to the profile.
    await pages.open(page, f"/static/course.html?id={course_id}")
    await expect(page.locator("#course-author .name")).to_have_text("林晓")
    await expect(page.locator("#course-author a")).to_have_attribute(
        "href", "/static/profile.html?id=lin")

    # Without a login the page still reads, and asks to log in to follow.
    anonymous = await pages.new_page()
    await pages.open(anonymous, "/static/profile.html?id=lin")
    await expect(anonymous.locator("#profile-name")).to_have_text("林晓")
    await expect(anonymous.get_by_role("link", name="登录后关注")).to_be_visible()
    await expect(anonymous.locator("#follow")).to_be_hidden()
    # No such person: said in Chinese.
    await pages.open(anonymous, "/static/profile.html?id=nobody")
    await expect(anonymous.locator("#error")).to_have_text("找不到这位用户，可能已注销或链接有误")


@pytest.mark.gen_test(timeout=90)
async def test_a_room_shows_people_by_nickname_and_face_never_by_id(pages, api):
    token = await consultant(api)
    room_id = await live_room(api, token)
    ws = await api.socket(token)
    reply = await ws.request("pub", ch=f"room:{room_id}", type="message",
                             data={"text": "大家好，今晚聊聊面试前的准备。"})
    assert reply["ok"], reply
    ws.close()
    askers = [("stu_1f3a9c", "小鲍"), ("stu_77e0b2", "陈同学")]
    for user_id, name in askers:
        asker = await api.login(user_id, "student", name=name)
        status, _ = await api.post("/api/v1/orders", {
            "item": {"kind": "live_ticket", "room_id": room_id}, "channel": "wallet"}, asker)
        assert status == 201
        status, body = await api.post(f"/api/v1/rooms/{room_id}/questions",
                                      {"text": f"{name}的问题：自我介绍说多长合适？"}, asker)
        assert status in (200, 201), body

    viewer = await api.login("amy", "student", name="艾米")
    await api.post("/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": room_id}, "channel": "wallet"}, viewer)
    page = await pages.new_page(token=viewer)
    await pages.open(page, f"/static/room.html?id={room_id}")
    await expect(page.locator("#room-host .name")).to_have_text("林晓")
    await expect(page.locator("#room-host a")).to_have_attribute(
        "href", "/static/profile.html?id=lin")
    questions = page.locator("#questions li")
    await expect(questions).to_have_count(2)
    for _, name in askers:
        item = questions.filter(has_text=f"{name}的问题")
        await expect(item.locator(".q-asker")).to_have_text(f"{name[0]}{name}")  # face + name
    await expect(page.locator("#feed li").first.locator(".msg-meta")).to_contain_text("林晓")
    text = await page.locator("main").inner_text()
    for user_id, _ in askers:
        assert user_id not in text
    assert "学员 " not in text
    await pages.check_accessibility(page)
    await pages.screenshot(page, "room-nicknames")


@pytest.mark.gen_test(timeout=90)
async def test_a_student_edits_their_own_page(pages, api, tmp_path):
    student = await api.login("stu_9c1d", "student", name="stu_9c1d")
    page = await pages.new_page(token=student)
    await pages.open(page, "/static/profile.html?id=stu_9c1d")
    await expect(page.locator("#follow")).to_be_hidden()  # not a consultant, and oneself
    await page.get_by_role("button", name="编辑资料").click()
    await expect(page.get_by_label("头衔")).to_be_hidden()  # a consultant's
    await page.get_by_label("昵称").fill("小周同学")
    await page.get_by_role("button", name="保存资料").click()
    await expect(page.locator("#profile-name")).to_have_text("小周同学")
    picture = tmp_path / "me.png"
    picture.write_bytes(face_png())
    await page.locator("#pf-avatar-file").set_input_files(str(picture))
    await expect(page.locator("#profile-avatar img.avatar")).to_have_attribute(
        "src", re.compile(r"^/media/[^/]+/thumb$"))
    await pages.check_accessibility(page)
    await pages.screenshot(page, "profile-own-edit")
    _, me = await api.get("/api/v1/me", student)
    assert me["name"] == "小周同学" and me["avatar_url"]
