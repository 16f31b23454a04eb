"""Editing a course after it is published: reorder, unpublish, delete a lesson, preview
a body; and where a reader stopped in a lesson (saved position, 继续学习)."""

from __future__ import annotations

import pytest
from drip_helpers import lesson


async def two_lesson_course(drip, token, **kwargs):
    return await drip.course(token, [lesson("一", body="第一课"),
                                     lesson("二", {"after_previous": True}, body="第二课"),
                                     lesson("三", body="第三课")], **kwargs)


@pytest.mark.gen_test
async def test_reorder_is_owner_only_and_keeps_the_chain(drip, api):
    author = await drip.author()
    course = await two_lesson_course(drip, author)
    ids = [item["id"] for item in course["lessons"]]
    path = f"/api/v1/courses/{course['id']}/lesson-order"

    other = await api.login("other-author", "consultant")
    status, body = await api.request("PUT", path, {"lesson_ids": ids[::-1]}, token=other)
    assert (status, body["error"]["code"]) == (403, "not_course_author")
    student = await drip.student("sam", course)
    status, _ = await api.request("PUT", path, {"lesson_ids": ids[::-1]}, token=student)
    assert status == 403

    # Not a permutation: refused, nothing changes.
    for bad in ([ids[0], ids[0], ids[1]], ids[:2], [*ids, "lnope"]):
        status, body = await api.request("PUT", path, {"lesson_ids": bad}, token=author)
        assert (status, body["error"]["code"]) == (400, "invalid_field"), bad
    # after_previous cannot come first.
    status, body = await api.request("PUT", path, {"lesson_ids": [ids[1], ids[0], ids[2]]},
                                     token=author)
    assert (status, body["error"]["code"]) == (400, "invalid_release")

    status, body = await api.request("PUT", path, {"lesson_ids": [ids[2], ids[0], ids[1]]},
                                     token=author)
    assert status == 200, body
    assert [item["title"] for item in body["course"]["lessons"]] == ["三", "一", "二"]
    listed = await drip.lessons(student, course["id"])
    assert [item["title"] for item in listed] == ["三", "一", "二"]


@pytest.mark.gen_test
async def test_an_unpublished_lesson_disappears_for_students_and_can_then_be_deleted(drip, api):
    author = await drip.author()
    course = await two_lesson_course(drip, author)
    first, second, third = (item["id"] for item in course["lessons"])
    student = await drip.student("sam", course)
    base = f"/api/v1/courses/{course['id']}/lessons"

    # A published lesson cannot be deleted.
    status, body = await api.request("DELETE", f"{base}/{third}", token=author)
    assert (status, body["error"]["code"]) == (409, "lesson_published")
    # Hiding the first lesson would leave the after_previous one first for students.
    status, body = await drip.patch(f"{base}/{first}", {"published": False}, author)
    assert (status, body["error"]["code"]) == (400, "invalid_release")

    status, body = await drip.patch(f"{base}/{third}", {"published": False}, author)
    assert status == 200 and body["lesson"]["published"] is False, body
    # Students: gone from the list, the syllabus, the progress and the lesson route.
    assert [item["title"] for item in await drip.lessons(student, course["id"])] == ["一", "二"]
    _, seen = await api.get(f"/api/v1/courses/{course['id']}", student)
    assert [item["title"] for item in seen["course"]["lessons"]] == ["一", "二"]
    _, progress = await api.get(f"/api/v1/courses/{course['id']}/progress", student)
    assert progress["progress"]["total"] == 2
    status, body = await api.get(f"{base}/{third}", student)
    assert (status, body["error"]["code"]) == (404, "lesson_not_found")
    assert not await drip.app.access.allowed("sam", "view", f"lesson:{course['id']}/{third}")
    # The author still sees and reads it.
    _, mine = await api.get(f"/api/v1/courses/{course['id']}", author)
    assert [item["published"] for item in mine["course"]["lessons"]] == [True, True, False]
    status, _ = await api.get(f"{base}/{third}", author)
    assert status == 200

    # Someone else cannot delete it; the author can.
    other = await api.login("other-author", "consultant")
    status, _ = await api.request("DELETE", f"{base}/{third}", token=other)
    assert status == 403
    status, body = await api.request("DELETE", f"{base}/{third}", token=author)
    assert status == 200, body
    assert [item["id"] for item in body["course"]["lessons"]] == [first, second]


@pytest.mark.gen_test
async def test_a_lesson_added_later_reaches_enrolled_students(drip, api):
    author = await drip.author()
    course = await two_lesson_course(drip, author)
    student = await drip.student("sam", course)
    status, body = await api.post(f"/api/v1/courses/{course['id']}/lessons",
                                  {"title": "加餐", "body": "新内容"}, author)
    assert status == 201, body
    listed = await drip.lessons(student, course["id"])
    assert listed[-1]["title"] == "加餐" and listed[-1]["unlocked"] is True


@pytest.mark.gen_test
async def test_preview_renders_cleaned_html_for_the_author_only(drip, api):
    author = await drip.author()
    course = await two_lesson_course(drip, author, publish=False)
    path = f"/api/v1/courses/{course['id']}/preview"
    status, body = await api.post(path, {"body": "## 标题\n\n**粗**<script>x()</script>"},
                                  author)
    assert status == 200, body
    assert "<h2>标题</h2>" in body["html"] and "<strong>粗</strong>" in body["html"]
    assert "<script" not in body["html"]
    other = await api.login("other-author", "consultant")
    status, _ = await api.post(path, {"body": "x"}, other)
    assert status == 403
    status, body = await api.post(path, {"body": "x" * 200_001}, author)
    assert (status, body["error"]["code"]) == (400, "invalid_field")


@pytest.mark.gen_test
async def test_position_is_saved_bounded_and_read_back_with_the_lesson(drip, api):
    author = await drip.author()
    course = await drip.course(author, [lesson("一"), lesson("二", {"after_days": 3})])
    first, locked = (item["id"] for item in course["lessons"])
    student = await drip.student("sam", course)
    base = f"/api/v1/courses/{course['id']}/lessons"

    status, body = await api.request("PUT", f"{base}/{first}/progress",
                                     {"position_seconds": 192.34, "duration_seconds": 750},
                                     token=student)
    assert status == 200, body
    assert body["progress"]["position_seconds"] == 192.3
    _, read = await api.get(f"{base}/{first}", student)
    assert read["lesson"]["progress"]["position_seconds"] == 192.3
    _, seen = await api.get(f"/api/v1/courses/{course['id']}", student)
    assert seen["last_lesson_id"] == first

    for bad in ({"position_seconds": -1}, {"position_seconds": 50_000},
                {"position_seconds": 10, "duration_seconds": 5},
                {"position_seconds": "10"}, {"position_seconds": 1, "extra": 1}, {}):
        status, body = await api.request("PUT", f"{base}/{first}/progress", bad, token=student)
        assert (status, body["error"]["code"]) == (400, "invalid_field"), bad
    # JSON has no NaN, but Python's parser takes it: still refused.
    status, _ = await api.request("PUT", f"{base}/{first}/progress", token=student,
                                  raw=b'{"position_seconds": NaN}')
    assert status == 400

    # A locked lesson, someone without the course: nothing saved.
    status, body = await api.request("PUT", f"{base}/{locked}/progress",
                                     {"position_seconds": 1}, token=student)
    assert (status, body["error"]["code"]) == (404, "lesson_not_found")
    stranger = await api.login("eve", "student")
    status, _ = await api.request("PUT", f"{base}/{first}/progress",
                                  {"position_seconds": 1}, token=stranger)
    assert status == 404


@pytest.mark.gen_test
async def test_position_saves_are_rate_limited(drip, api, kpay_app):
    author = await drip.author()
    course = await drip.course(author, [lesson("一")])
    student = await drip.student("sam", course)
    path = f"/api/v1/courses/{course['id']}/lessons/{course['lessons'][0]['id']}/progress"
    kpay_app.limiter.enabled = True
    try:
        statuses = [(await api.request("PUT", path, {"position_seconds": n},
                                       token=student))[0] for n in range(40)]
    finally:
        kpay_app.limiter.enabled = False
    assert 429 in statuses and statuses[0] == 200
