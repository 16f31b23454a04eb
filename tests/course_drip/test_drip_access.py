"""The resources ``course:<id>`` and ``lesson:<course>/<lesson>`` through ``app.access``:
the author owns them; ``view`` is the author, an admin or an active enrollment (and for
a lesson, only once it unlocked); ``edit`` is the author or an admin."""

from __future__ import annotations

import pytest
from drip_helpers import daily_lessons


@pytest.mark.gen_test
async def test_course_owner_view_and_edit(api, kpay_app, drip):
    author = await drip.author("teacher")
    course = await drip.course(author, daily_lessons(2))
    await drip.student("alice", course)
    await drip.student("eve")
    await api.login("root", "admin")
    access, resource = kpay_app.access, f"course:{course['id']}"

    assert await access.owner(resource) == "teacher"
    for user, view, edit in [("teacher", True, True), ("root", True, True),
                             ("alice", True, False), ("eve", False, False)]:
        assert await access.allowed(user, "view", resource) is view, user
        assert await access.allowed(user, "edit", resource) is edit, user


@pytest.mark.gen_test
async def test_a_student_who_did_not_pay_may_not_view(api, kpay_app, drip):
    course = await drip.course(await drip.author("teacher"), daily_lessons(1))
    token = await drip.student("bob", money=0)
    # Not enough money: the order is refused, nothing is enrolled.
    status, body = await drip.order(token, course["id"])
    assert status == 402, body
    assert await kpay_app.access.allowed("bob", "view", f"course:{course['id']}") is False


@pytest.mark.gen_test
async def test_a_lesson_is_viewable_once_it_unlocked(kpay_app, drip):
    course = await drip.course(await drip.author("teacher"), daily_lessons(2))
    await drip.student("alice", course)
    first, second = (f"lesson:{course['id']}/{lesson['id']}" for lesson in course["lessons"])
    access = kpay_app.access
    assert await access.owner(first) == "teacher"
    assert await access.allowed("alice", "view", first) is True
    assert await access.allowed("alice", "view", second) is False
    assert await access.allowed("teacher", "view", second) is True
    await drip.advance(2 * 24 * 3600)
    assert await access.allowed("alice", "view", second) is True


@pytest.mark.gen_test
async def test_unknown_courses_lessons_and_actions_are_refused(kpay_app, drip):
    course = await drip.course(await drip.author("teacher"), daily_lessons(1))
    lesson_id = course["lessons"][0]["id"]
    access = kpay_app.access
    for resource in ("course:nope", f"lesson:{course['id']}/nope", f"lesson:nope/{lesson_id}",
                     f"lesson:{course['id']}"):
        assert await access.owner(resource) is None, resource
        assert await access.allowed("teacher", "view", resource) is False, resource
    assert await access.allowed("teacher", "delete", f"course:{course['id']}") is False
    assert await access.allowed("teacher", "edit", f"lesson:{course['id']}/{lesson_id}") is False
