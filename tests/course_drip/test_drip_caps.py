"""The cap on draft courses per author ([course_drip] max_draft_courses_per_author)."""

from __future__ import annotations

from typing import Any

import pytest
from drip_helpers import lesson


@pytest.fixture
def kpay_overrides() -> dict[str, dict[str, Any]]:
    return {"plugins": {"enabled": ["course_drip"]},
            "course_drip": {"max_draft_courses_per_author": 2}}


@pytest.mark.gen_test
async def test_the_draft_over_the_cap_is_refused_until_one_is_published(api, drip, kpay_app):
    author = await drip.author()
    published = await drip.course(author, [lesson("L0")], publish=True)
    drafts = [await drip.course(author, [lesson("L0")], publish=False) for _ in range(2)]
    assert published["status"] == "published" and {d["status"] for d in drafts} == {"draft"}
    status, body = await api.post("/api/v1/courses", {"title": "third", "price": 0}, author)
    assert status == 409, body
    assert body["error"]["code"] == "too_many_open"
    assert (body["error"]["what"], body["error"]["limit"]) == ("draft_courses", 2)
    assert await kpay_app.store["courses"].count_documents({"author_id": "teacher"}) == 3

    # Another author is not affected.
    await drip.course(await drip.author("other"), [], publish=False)

    # Publishing a draft frees a place.
    status, body = await api.post(f"/api/v1/courses/{drafts[0]['id']}/publish", token=author)
    assert status == 200, body
    status, body = await api.post("/api/v1/courses", {"title": "third", "price": 0}, author)
    assert status == 201, body
    status, body = await api.post("/api/v1/courses", {"title": "fourth", "price": 0}, author)
    assert status == 409 and body["error"]["code"] == "too_many_open"
