"""People: PATCH /api/v1/me (nickname), follows, public profiles with the plugins'
sections, and the batched profiles lookup (docs/api.md "Me", "Follow", "Profiles")."""

from __future__ import annotations

import io
import types
from typing import Any

import pytest
from PIL import Image

from kpay import hookimpl
from kpay.core import follows
from kpay.testmedia import upload

PLUGINS = {"plugins": {"enabled": ["live_qa", "consult_billing", "course_drip"]}}


@pytest.fixture
def kpay_overrides(tmp_path: Any) -> dict[str, dict[str, Any]]:
    return {**PLUGINS, "media": {"path": str(tmp_path / "media")}}


def png(width: int = 200, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (5, 112, 63)).save(out, "PNG")
    return out.getvalue()


async def upload_image(api: Any, token: str, data: bytes, purpose: str = "avatar") -> str:
    """Upload ``data`` as an image; the media id."""
    return (await upload(api, token, "image", purpose, data, "image.png"))["id"]


async def patch_me(api: Any, token: str, body: Any) -> tuple[int, Any]:
    return await api.request("PATCH", "/api/v1/me", body, token=token)


# -- nickname -----------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_nickname_is_trimmed_shown_and_kept_across_logins(api):
    token = await api.login("lin", "consultant")
    status, me = await patch_me(api, token, {"name": "  小林老师 "})
    assert status == 200, me
    assert me == {"id": "lin", "role": "consultant", "name": "小林老师", "avatar_url": None}
    assert (await api.get("/api/v1/me", token))[1]["name"] == "小林老师"
    # A dev login without a name keeps the nickname the user set.
    token = await api.login("lin", "consultant")
    assert (await api.get("/api/v1/me", token))[1]["name"] == "小林老师"
    status, found = await api.get("/api/v1/users/profiles?ids=lin")
    assert found["profiles"]["lin"]["name"] == "小林老师"


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["", "   ", "一" * 21, "bell\u0007", "zero\u200bwidth",
                                  "right\u202eleft", "two\nlines", 7])
async def test_bad_nicknames_are_refused(api, name):
    token = await api.login("lin", "student", name="林")
    status, body = await patch_me(api, token, {"name": name})
    assert status == 400, body
    assert body["error"]["code"] in ("invalid_name", "invalid_field"), body
    assert (await api.get("/api/v1/me", token))[1]["name"] == "林"


@pytest.mark.gen_test
async def test_patch_me_takes_only_its_fields_and_a_user(api):
    token = await api.login("lin", "student", name="林")
    status, body = await patch_me(api, token, {"name": "林", "role": "admin"})
    assert status == 400 and body["error"]["code"] == "invalid_field", body
    status, body = await patch_me(api, None, {"name": "林"})
    assert status == 401, body
    twenty = "一二三四五六七八九十" * 2
    assert (await patch_me(api, token, {"name": twenty}))[1]["name"] == twenty


@pytest.mark.gen_test
async def test_an_avatar_must_be_an_avatar_image_the_user_uploaded(api, kpay_app):
    token = await api.login("lin", "consultant", name="林")
    other = await api.login("amy", "student", name="艾米")
    mine = await upload_image(api, token, png())
    cover = await upload_image(api, token, png(), purpose="cover")
    theirs = await upload_image(api, other, png())
    for media_id in ("m_not_there", cover, theirs, "../../etc/passwd"):
        status, body = await patch_me(api, token, {"avatar_media_id": media_id})
        assert status == 400 and body["error"]["code"] == "invalid_media", (media_id, body)
    assert (await api.get("/api/v1/me", token))[1]["avatar_url"] is None

    status, me = await patch_me(api, token, {"avatar_media_id": mine})
    assert status == 200, me
    assert me["avatar_url"] == f"/media/{mine}/thumb"
    assert (await api.get("/api/v1/me", token))[1]["avatar_url"] == me["avatar_url"]
    found = (await api.get("/api/v1/users/profiles?ids=lin"))[1]["profiles"]["lin"]
    assert found["avatar_url"] == me["avatar_url"]
    assert (await kpay_app.users.profile("lin"))["avatar_url"] == me["avatar_url"]
    # The image is served publicly, resized for a face.
    response = await api.http.fetch(api.base + me["avatar_url"], raise_error=False)
    assert response.code == 200
    assert Image.open(io.BytesIO(response.body)).width <= 160


@pytest.mark.gen_test
@pytest.mark.parametrize("kpay_overrides", [
    {**PLUGINS, "limits": {"enabled": True, "write_per_second": 0.01, "write_burst": 2}}])
async def test_profile_changes_are_rate_limited(api):
    token = await api.login("lin", "student", name="林")
    for name in ("一", "二"):
        assert (await patch_me(api, token, {"name": name}))[0] == 200
    status, body = await patch_me(api, token, {"name": "三"})
    assert status == 429 and body["error"]["code"] == "rate_limited", body


@pytest.mark.gen_test
async def test_wechat_nicknames_are_cleaned_and_a_set_name_is_kept(kpay_app):
    users = kpay_app.users
    first = await users.sign_in_wechat("openid-1", "\u202e阿毛\u0000" + "长" * 30)
    assert first["name"] == "阿毛" + "长" * 18
    await users.set_profile(first["_id"], name="毛毛")
    again = await users.sign_in_wechat("openid-1", "阿毛")
    assert again["name"] == "毛毛"
    blank = await users.sign_in_wechat("openid-2", "\u200b")
    assert blank["name"] == "微信用户"


# -- follow -------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_follow_is_idempotent_and_counted(api):
    await api.login("lin", "consultant", name="小林")
    alice = await api.login("alice", "student", name="爱丽丝")
    bob = await api.login("bob", "student", name="鲍勃")
    for _ in range(2):
        status, body = await api.put("/api/v1/users/lin/follow", token=alice)
        assert status == 200, body
        assert body == {"user_id": "lin", "following": True, "followers": 1}
    await api.put("/api/v1/users/lin/follow", token=bob)
    status, profile = await api.get("/api/v1/users/lin/profile", alice)
    assert (profile["profile"]["followers"], profile["profile"]["following"]) == (2, True)
    assert (await api.get("/api/v1/users/lin/profile"))[1]["profile"]["following"] is False

    status, page = await api.get("/api/v1/me/following", alice)
    assert status == 200, page
    assert [(p["id"], p["name"]) for p in page["following"]] == [("lin", "小林")]

    for _ in range(2):
        status, body = await api.request("DELETE", "/api/v1/users/lin/follow", token=alice)
        assert status == 200, body
        assert body == {"user_id": "lin", "following": False, "followers": 1}
    assert (await api.get("/api/v1/me/following", alice))[1]["following"] == []


@pytest.mark.gen_test
async def test_only_consultants_can_be_followed(api, kpay_app):
    alice = await api.login("alice", "student")
    await api.login("bob", "student")
    await api.login("lin", "consultant")
    cases = [("bob", 400, "not_followable"), ("alice", 400, "cannot_follow_self"),
             ("nobody", 404, "user_not_found")]
    for user_id, status, code in cases:
        got, body = await api.put(f"/api/v1/users/{user_id}/follow", token=alice)
        assert (got, body["error"]["code"]) == (status, code), (user_id, body)
    assert (await api.put("/api/v1/users/lin/follow"))[0] == 401
    await kpay_app.users.set_blocked("lin", True)
    got, body = await api.put("/api/v1/users/lin/follow", token=alice)
    assert (got, body["error"]["code"]) == (400, "not_followable")


@pytest.mark.gen_test
async def test_a_user_follows_a_bounded_number(api, monkeypatch):
    monkeypatch.setattr(follows, "MAX_FOLLOWING", 2)
    alice = await api.login("alice", "student")
    for n in range(3):
        await api.login(f"c{n}", "consultant")
    for n in range(2):
        assert (await api.put(f"/api/v1/users/c{n}/follow", token=alice))[0] == 200
    status, body = await api.put("/api/v1/users/c2/follow", token=alice)
    assert status == 409, body
    assert body["error"]["code"] == "too_many_open"
    assert (body["error"]["what"], body["error"]["limit"]) == ("following", 2)
    # Following one already followed is still fine at the cap.
    assert (await api.put("/api/v1/users/c1/follow", token=alice))[0] == 200


# -- public profile -------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_profile_sections_come_from_the_plugins(api):
    lin = await api.login("lin", "consultant", name="小林")
    status, body = await api.put("/api/v1/consultants/me", {
        "rate_per_minute": 300, "title": "职业规划师", "bio": "十年招聘经验"}, lin)
    assert status == 200, body
    assert (body["profile"]["name"], body["profile"]["bio"]) == ("小林", "十年招聘经验")
    status, room = await api.post("/api/v1/rooms", {
        "title": "如何准备面试", "ticket_price": 990, "question_min_price": 500}, lin)
    assert status == 201, room
    lessons = [{"title": "第一课", "body": "你好"}]
    for title, publish in (("面试三十讲", True), ("草稿课", False)):
        status, course = await api.post("/api/v1/courses", {
            "title": title, "price": 1990, "lessons": lessons}, lin)
        assert status == 201, course
        if publish:
            status, done = await api.post(
                f"/api/v1/courses/{course['course']['id']}/publish", token=lin)
            assert status == 200, done

    status, body = await api.get("/api/v1/users/lin/profile")
    assert status == 200, body
    profile = body["profile"]
    assert (profile["name"], profile["role"], profile["avatar_url"]) == ("小林", "consultant",
                                                                        None)
    sections = profile["sections"]
    assert sections["consult"]["title"] == "职业规划师"
    assert sections["consult"]["bio"] == "十年招聘经验"
    assert sections["consult"]["rate_per_minute"] == 300
    assert [r["title"] for r in sections["rooms"]] == ["如何准备面试"]
    assert [(c["title"], c["lesson_count"]) for c in sections["courses"]] == [("面试三十讲", 1)]

    # A nickname changed later shows in the consultant's profile at once.
    await patch_me(api, lin, {"name": "林老师"})
    status, body = await api.get("/api/v1/consultants/lin")
    assert body["profile"]["name"] == "林老师"


@pytest.mark.gen_test
async def test_profile_of_someone_with_nothing_and_of_no_one(api, kpay_app):
    await api.login("alice", "student", name="爱丽丝")
    status, body = await api.get("/api/v1/users/alice/profile")
    assert status == 200, body
    assert body["profile"]["sections"] == {}
    assert (await api.get("/api/v1/users/nobody/profile"))[0] == 404
    await kpay_app.users.set_blocked("alice", True)
    status, body = await api.get("/api/v1/users/alice/profile")
    assert (status, body["error"]["code"]) == (404, "user_not_found")


@hookimpl
def register_collections(app):
    return []


@hookimpl
def public_profile_sections(app, user_id):
    return {"badges": [f"{user_id} 的徽章"], "rooms": ["not mine"]}


@pytest.mark.gen_test
@pytest.mark.parametrize("kpay_extra_plugins", [
    [("badges", types.SimpleNamespace(public_profile_sections=public_profile_sections,
                                      register_collections=register_collections))]])
async def test_a_plugin_adds_a_section_but_not_one_taken(api, kpay_extra_plugins):
    lin = await api.login("lin", "consultant", name="小林")
    await api.post("/api/v1/rooms", {"title": "直播", "ticket_price": 0,
                                     "question_min_price": 100}, lin)
    sections = (await api.get("/api/v1/users/lin/profile"))[1]["profile"]["sections"]
    assert sections["badges"] == ["lin 的徽章"]
    # Two plugins answered "rooms": one answer is kept whole, never the two mixed.
    assert sections["rooms"] == ["not mine"] or [r["title"] for r in sections["rooms"]] == ["直播"]


# -- the batched lookup -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_profiles_batch_is_bounded_and_leaves_out_no_ones(api, kpay_app):
    await api.login("alice", "student", name="爱丽丝")
    await api.login("bob", "student", name="鲍勃")
    await kpay_app.users.set_blocked("bob", True)
    status, body = await api.get("/api/v1/users/profiles?ids=alice,bob,nobody,alice")
    assert status == 200, body
    assert body == {"profiles": {"alice": {"id": "alice", "name": "爱丽丝", "role": "student",
                                           "avatar_url": None}}}
    many = ",".join(f"u{n}" for n in range(51))
    for query in ("", "?ids=", f"?ids={many}", "?ids=a%0Ab", "?ids=" + "x" * 65):
        status, body = await api.get(f"/api/v1/users/profiles{query}")
        assert status == 400 and body["error"]["code"] == "invalid_field", (query, body)
