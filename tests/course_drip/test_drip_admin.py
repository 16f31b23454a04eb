"""course_drip's part of the operators' console: enrollments and written courses in a
user's detail and export."""

from __future__ import annotations

import pytest
from drip_helpers import lesson

ADMIN = "/api/v1/admin/users"


@pytest.mark.gen_test
async def test_enrollments_and_courses_in_the_detail_and_export(api, admin, drip):
    teacher = await drip.author()
    course = await drip.course(teacher, [lesson("第一课")], title="Python 入门")
    await drip.student("sam", course)

    status, body = await admin.get(f"{ADMIN}/sam")
    assert status == 200, body
    section = body["user"]["sections"]["course_drip"]
    assert [(i["title"], i["subtitle"]) for i in section["items"]] == [
        ("报名《Python 入门》", "学习中")]
    written = (await admin.get(f"{ADMIN}/teacher"))[1]["user"]["sections"]["course_drip"]
    assert [i["title"] for i in written["items"]] == ["创作《Python 入门》"]

    data = (await admin.get(f"{ADMIN}/sam/export"))[1]["plugins"]["course_drip"]
    assert [e["course_id"] for e in data["enrollments"]] == [course["id"]]
    assert data["courses_written"] == []
    status, nothing = await admin.get(f"{ADMIN}/root/export")
    assert status == 200 and "course_drip" not in nothing["plugins"]
