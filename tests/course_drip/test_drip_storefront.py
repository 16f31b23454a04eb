"""Courses on the storefront: categories, author names, and search kept in step with
create, edit, publish and unpublish."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from drip_helpers import lesson


async def titles(api, query: str) -> list[str]:
    status, body = await api.get(f"/api/v1/search?kind=course&q={quote(query)}")
    assert status == 200, body
    return [item["title"] for item in body["items"]]


@pytest.mark.gen_test
async def test_a_course_is_found_while_published(api, drip):
    author = await api.login("teacher", "consultant", name="林老师")
    course = await drip.course(author, [lesson("第一课")], publish=False,
                               title="如何成为产品经理")
    assert await titles(api, "产品经理") == []  # a draft is not sold
    await api.post(f"/api/v1/courses/{course['id']}/publish", token=author)
    assert await titles(api, "产品经理") == ["如何成为产品经理"]
    assert await titles(api, "林老师") == ["如何成为产品经理"]
    status, body = await drip.patch(f"/api/v1/courses/{course['id']}",
                                    {"category": "职场", "title": "产品经理入门"}, author)
    assert status == 200 and body["course"]["category"] == "职场"
    status, body = await api.get("/api/v1/search?q=" + quote("产品"))
    item = body["items"][0]
    assert (item["title"], item["category"], item["extra"]) == (
        "产品经理入门", "职场", {"price": 990, "lesson_count": 1})
    status, body = await drip.patch(f"/api/v1/courses/{course['id']}", {"category": ""}, author)
    assert status == 200 and body["course"]["category"] is None
    await api.post(f"/api/v1/courses/{course['id']}/unpublish", token=author)
    assert await titles(api, "产品经理") == []


@pytest.mark.gen_test
async def test_categories_are_checked_and_filter_the_list(api, drip):
    author = await api.login("teacher", "consultant", name="林老师")
    status, body = await api.post("/api/v1/courses", {
        "title": "t", "price": 0, "category": "赌博", "lessons": [lesson("a")]}, author)
    assert status == 400 and body["error"]["field"] == "category"
    status, body = await api.post("/api/v1/courses", {
        "title": "心理课", "price": 0, "category": "心理", "lessons": [lesson("a")]}, author)
    assert status == 201
    await api.post(f"/api/v1/courses/{body['course']['id']}/publish", token=author)
    await drip.course(author, [lesson("b")], title="别的课")
    student = await api.login("stu", "student")
    status, body = await api.get(f"/api/v1/courses?category={quote('心理')}", student)
    assert status == 200
    assert [(c["title"], c["category"]) for c in body["courses"]] == [("心理课", "心理")]
    status, body = await drip.patch(f"/api/v1/courses/{body['courses'][0]['id']}",
                                    {"category": "赌博"}, author)
    assert status == 400 and body["error"]["field"] == "category"
    status, body = await api.get("/api/v1/courses", student)
    assert len(body["courses"]) == 2


@pytest.mark.gen_test
async def test_my_courses_name_their_authors(api, drip):
    author = await api.login("teacher", "consultant", name="林老师")
    course = await drip.course(author, [lesson("a")], price=0, title="免费课")
    student = await drip.student("stu", course)
    status, body = await api.get("/api/v1/me/courses", student)
    assert status == 200
    assert [c["course"]["author_name"] for c in body["courses"]] == ["林老师"]
