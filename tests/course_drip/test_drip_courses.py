"""Authoring courses through the real server: create, edit, publish, and bad input."""

from __future__ import annotations

import pytest
from drip_helpers import daily_lessons, lesson


@pytest.mark.gen_test
async def test_create_publish_and_read_a_course(drip, api):
    author = await drip.author()
    status, body = await api.post("/api/v1/courses", {
        "title": "Python 30 天", "price": 9900, "description": "**每天** 一课",
        "cover": "https://cdn.example.com/c.png",
        "lessons": [lesson("Day 0", {"after_days": 0}),
                    {"title": "Video", "media_url": "https://cdn.example.com/v.mp4",
                     "release": {"after_previous": True}}]}, author)
    assert status == 201, body
    course = body["course"]
    assert course["status"] == "draft" and course["price"] == 9900
    assert course["description_html"] == "<p><strong>每天</strong> 一课</p>"
    assert "body" not in course["lessons"][0]
    # A draft is invisible to students.
    student = await api.login("stu", "student")
    status, body = await api.get(f"/api/v1/courses/{course['id']}", student)
    assert status == 404 and body["error"]["code"] == "course_not_found"
    status, body = await api.get("/api/v1/courses", student)
    assert body["courses"] == []
    status, body = await api.post(f"/api/v1/courses/{course['id']}/publish", token=author)
    assert status == 200 and body["course"]["status"] == "published"
    status, body = await api.get(f"/api/v1/courses/{course['id']}", student)
    assert status == 200 and body["enrolled"] is False
    assert [x["title"] for x in body["course"]["lessons"]] == ["Day 0", "Video"]
    status, body = await api.get("/api/v1/courses", student)
    assert [c["id"] for c in body["courses"]] == [course["id"]]
    status, body = await api.get("/api/v1/courses?mine=1", author)
    assert [c["id"] for c in body["courses"]] == [course["id"]]
    # The author reads every lesson, with the Markdown source.
    lessons = await drip.lessons(author, course["id"])
    assert all(x["unlocked"] for x in lessons)
    status, body = await api.get(
        f"/api/v1/courses/{course['id']}/lessons/{lessons[1]['id']}", author)
    assert status == 200 and body["lesson"]["media_url"] == "https://cdn.example.com/v.mp4"


@pytest.mark.gen_test
async def test_edit_course_and_lessons(drip, api):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2), publish=False)
    cid = course["id"]
    status, body = await drip.patch(f"/api/v1/courses/{cid}",
                                    {"title": "New", "price": 100, "cover": None}, author)
    assert status == 200 and body["course"]["title"] == "New" and body["course"]["price"] == 100
    status, body = await api.post(f"/api/v1/courses/{cid}/lessons",
                                  lesson("L2", {"after_previous": True}, "# Two"), author)
    assert status == 201 and body["lesson"]["body_html"] == "<h1>Two</h1>"
    assert body["lesson"]["position"] == 2
    lid = body["lesson"]["id"]
    status, body = await drip.patch(f"/api/v1/courses/{cid}/lessons/{lid}",
                                    {"title": "Two", "release": {"at_date": "2027-01-01"}},
                                    author)
    assert status == 200, body
    assert body["lesson"]["release"] == {"at_date": "2026-12-31T16:00:00+00:00"}
    status, body = await api.get(f"/api/v1/courses/{cid}", author)
    assert [x["title"] for x in body["course"]["lessons"]] == ["L0", "L1", "Two"]
    status, body = await api.post(f"/api/v1/courses/{cid}/unpublish", token=author)
    assert status == 200 and body["course"]["status"] == "draft"


@pytest.mark.gen_test
async def test_editing_someone_elses_course_is_refused(drip, api):
    owner = await drip.author("owner")
    course = await drip.course(owner, daily_lessons(1), publish=False)
    other = await drip.author("other")
    student = await api.login("stu", "student")
    cid, lid = course["id"], course["lessons"][0]["id"]
    attempts = [
        ("PATCH", f"/api/v1/courses/{cid}", {"title": "mine now"}),
        ("POST", f"/api/v1/courses/{cid}/publish", {}),
        ("POST", f"/api/v1/courses/{cid}/lessons", lesson("x")),
        ("PATCH", f"/api/v1/courses/{cid}/lessons/{lid}", {"title": "x"}),
        ("POST", f"/api/v1/courses/{cid}/enrollments", {"user_id": "friend"}),
        ("POST", f"/api/v1/courses/{cid}/enrollments/stu/unlock_all", {}),
        ("GET", f"/api/v1/courses/{cid}/stats", None),
    ]
    for method, path, body in attempts:
        status, reply = await api.request(method, path, body, token=other)
        assert status == 403 and reply["error"]["code"] == "not_course_author", (path, reply)
        status, reply = await api.request(method, path, body, token=student)
        assert status == 403, (path, reply)
    status, body = await api.get(f"/api/v1/courses/{cid}", owner)
    assert body["course"]["title"] == "Drip course" and body["course"]["status"] == "draft"
    assert len(body["course"]["lessons"]) == 1
    status, body = await api.post("/api/v1/courses", {"title": "x", "price": 1}, student)
    assert status == 403


@pytest.mark.gen_test
@pytest.mark.parametrize("change, code, field", [
    ({"price": -1}, "invalid_field", "price"),
    ({"price": 9.9}, "invalid_field", "price"),
    ({"price": 100.0}, "invalid_field", "price"),
    ({"price": "100"}, "invalid_field", "price"),
    ({"price": True}, "invalid_field", "price"),
    ({"cover": "javascript:alert(1)"}, "invalid_field", "cover"),
    ({"title": ""}, "invalid_field", "title"),
    ({"surprise": 1}, "invalid_field", "surprise"),
    ({"lessons": [lesson("a", {"after_days": -1, "at": "08:00"})]}, "invalid_release",
     "lessons.0.release.after_days"),
    ({"lessons": [lesson("a", {"after_days": 1, "at": "25:00"})]}, "invalid_release",
     "lessons.0.release.at"),
    ({"lessons": [lesson("a", {"after_previous": True})]}, "invalid_release",
     "lessons.0.release"),
    ({"lessons": [lesson("a"), lesson("b", {"after_days": 1, "hour": 8})]},
     "invalid_release", "lessons.1.release"),
    ({"lessons": [lesson("a", {"at_date": "1st of May"})]}, "invalid_release",
     "lessons.0.release.at_date"),
    # Year 1 at +14:00 has no UTC moment: it once broke every course's unlock sweep.
    ({"lessons": [lesson("a", {"at_date": "0001-01-01T00:00:00+14:00"})]},
     "invalid_release", "lessons.0.release.at_date"),
    ({"lessons": [lesson("a", {"at_date": "9999-12-31T23:59:59-14:00"})]},
     "invalid_release", "lessons.0.release.at_date"),
    ({"lessons": [lesson("a", {"at_date": "1999-12-31"})]}, "invalid_release",
     "lessons.0.release.at_date"),
    ({"lessons": [lesson("a", {"at_date": "2100-01-01T00:00"})]}, "invalid_release",
     "lessons.0.release.at_date"),
    ({"lessons": [{"title": "empty"}]}, "invalid_field", "lessons.0"),
    ({"lessons": [{"title": "m", "media_url": "ftp://x/y"}]}, "invalid_field",
     "lessons.0.media_url"),
])
async def test_bad_course_input_is_refused_and_changes_nothing(drip, api, kpay_app,
                                                                change, code, field):
    author = await drip.author()
    body = {"title": "T", "price": 100, "lessons": [lesson("a")], **change}
    status, reply = await api.post("/api/v1/courses", body, author)
    assert status == 400, reply
    assert reply["error"]["code"] == code and reply["error"]["field"] == field, reply
    assert await kpay_app.store["courses"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_bad_edits_are_refused_and_change_nothing(drip, api):
    author = await drip.author()
    course = await drip.course(author, daily_lessons(2))
    cid, first, second = course["id"], course["lessons"][0]["id"], course["lessons"][1]["id"]
    cases = [
        (f"/api/v1/courses/{cid}/lessons/{first}", {"release": {"after_previous": True}},
         "invalid_release"),
        (f"/api/v1/courses/{cid}/lessons/{second}", {"release": {"after_days": 1,
                                                                  "at": "24:00"}},
         "invalid_release"),
        (f"/api/v1/courses/{cid}/lessons/{second}", {"body": "", "media_url": None},
         "invalid_field"),
        (f"/api/v1/courses/{cid}", {"price": -5}, "invalid_field"),
        (f"/api/v1/courses/{cid}", {"price": 1.5}, "invalid_field"),
    ]
    for path, change, code in cases:
        status, reply = await drip.patch(path, change, author)
        assert status == 400 and reply["error"]["code"] == code, (change, reply)
    status, reply = await drip.patch(f"/api/v1/courses/{cid}/lessons/nope", {"title": "x"},
                                     author)
    assert status == 404 and reply["error"]["code"] == "lesson_not_found"
    status, after = await api.get(f"/api/v1/courses/{cid}", author)
    assert after["course"] == course


@pytest.mark.gen_test
async def test_publishing_an_empty_course_is_refused(drip, api):
    author = await drip.author()
    course = await drip.course(author, [], publish=False)
    status, reply = await api.post(f"/api/v1/courses/{course['id']}/publish", token=author)
    assert status == 409 and reply["error"]["code"] == "course_empty"


XSS = """# Lesson
<script>alert('x')</script>
<img src="x.png" onerror="alert(1)">
[click](javascript:alert(1)) [ok](https://example.com)
<a href="JaVaScRiPt:alert(2)" onclick="alert(3)">y</a>
<iframe src="https://evil.example"></iframe>
"""


@pytest.mark.gen_test
async def test_markdown_bodies_are_sanitised(drip, api):
    author = await drip.author()
    course = await drip.course(author, [lesson("x", {"after_days": 0}, XSS)])
    student = await drip.student("stu", course)
    lid = course["lessons"][0]["id"]
    status, body = await api.get(f"/api/v1/courses/{course['id']}/lessons/{lid}", student)
    assert status == 200, body
    html = body["lesson"]["body_html"].lower()
    assert "<h1>lesson</h1>" in html and 'href="https://example.com"' in html
    for bad in ("<script", "onerror", "onclick", "javascript:", "<iframe"):
        assert bad not in html, bad
    assert "body" not in body["lesson"]  # students get only the cleaned HTML


@pytest.mark.gen_test
async def test_every_route_is_in_openapi(api):
    status, doc = await api.get("/api/v1/openapi.json")
    assert status == 200
    paths = doc["paths"]
    for path, methods in {
        "/api/v1/courses": {"get", "post"},
        "/api/v1/courses/{course_id}": {"get", "patch"},
        "/api/v1/courses/{course_id}/publish": {"post"},
        "/api/v1/courses/{course_id}/lessons": {"get", "post"},
        "/api/v1/courses/{course_id}/lessons/{lesson_id}": {"get", "patch"},
        "/api/v1/courses/{course_id}/lessons/{lesson_id}/complete": {"post"},
        "/api/v1/courses/{course_id}/progress": {"get"},
        "/api/v1/courses/{course_id}/stats": {"get"},
        "/api/v1/courses/{course_id}/enrollments": {"get", "post"},
        "/api/v1/courses/{course_id}/enrollments/{user_id}/unlock_all": {"post"},
        "/api/v1/me/courses": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
