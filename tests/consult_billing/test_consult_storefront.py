"""Consultants on the storefront: a category, found by name and title while available."""

from __future__ import annotations

from urllib.parse import quote

import pytest


@pytest.mark.gen_test
async def test_a_consultant_is_found_by_name_and_title(api):
    token = await api.login("coach", "consultant", name="陈教练")
    profile = {"rate_per_minute": 200, "title": "职业规划师", "category": "职场"}
    status, body = await api.put("/api/v1/consultants/me", profile, token)
    assert status == 200 and body["profile"]["category"] == "职场"
    for query in ("陈教练", "规划"):
        status, body = await api.get(f"/api/v1/search?kind=consultant&q={quote(query)}")
        assert [(i["id"], i["extra"]["rate_per_minute"]) for i in body["items"]] == [
            ("coach", 200)], query
    status, body = await api.get(f"/api/v1/consultants?category={quote('职场')}")
    assert [c["consultant_id"] for c in body["consultants"]] == ["coach"]
    status, body = await api.put("/api/v1/consultants/me", {**profile, "category": "赌博"},
                                 token)
    assert status == 400 and body["error"]["field"] == "category"
    status, _ = await api.put("/api/v1/consultants/me", {**profile, "available": False}, token)
    status, body = await api.get(f"/api/v1/search?q={quote('陈教练')}")
    assert body["items"] == []
