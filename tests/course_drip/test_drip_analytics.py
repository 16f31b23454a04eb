"""The course funnel on the author's dashboard (hook ``analytics_sections``): students
who enrolled, finished lesson n, finished all; another author sees none of it."""

from __future__ import annotations

import pytest
from drip_helpers import daily_lessons

from kpay.core.analytics.sections import checked

DASHBOARD = "/api/v1/analytics/dashboard"


@pytest.mark.gen_test(timeout=60)
async def test_the_author_sees_the_funnel_of_their_course(api, drip):
    teacher = await drip.author()
    course = await drip.course(teacher, daily_lessons(2, at="00:00"), title="漏斗课")
    tokens = [await drip.student(f"s{i}", course) for i in range(3)]
    await drip.advance(2 * 86_400 + 60)
    for i, token in enumerate(tokens):
        lessons = await drip.lessons(token, course["id"])
        for lesson in lessons[:i]:
            status, body = await api.post(
                f"/api/v1/courses/{course['id']}/lessons/{lesson['id']}/complete", token=token)
            assert status == 200, body
    teacher = await drip.author()
    status, data = await api.get(DASHBOARD, teacher)
    assert status == 200, data
    funnel = next(s for s in data["sections"] if s["key"] == "course_funnel")
    assert [(i["label"], i["value"]) for i in funnel["items"]] == [
        ("报名", 3), ("学完第 1 课", 2), ("学完第 2 课", 1), ("全部学完", 1)]
    other = await drip.author("other_teacher")
    status, data = await api.get(DASHBOARD, other)
    assert all(s["key"] != "course_funnel" for s in data["sections"])


def test_malformed_sections_are_refused():
    good = {"key": "k1", "title": "标题", "unit": "count", "items": [{"label": "a", "value": 1}]}
    assert checked(good)["items"] == [{"label": "a", "value": 1}]
    for bad in ({**good, "key": "Bad Key"}, {**good, "unit": "yuan"},
                {**good, "items": [{"label": "a", "value": "1"}]},
                {**good, "items": [{"label": "a", "value": True}]},
                {**good, "items": [{"label": "a", "value": 1}] * 51}, {**good, "title": ""}):
        with pytest.raises(ValueError):
            checked(bad)
