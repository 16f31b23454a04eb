"""consult_billing's part of the operators' console: a user's consultations in their
detail, in their export, and the consultant profile's words gone on anonymisation."""

from __future__ import annotations

import pytest
from consult_helpers import make_pair, request

ADMIN = "/api/v1/admin/users"


@pytest.mark.gen_test
async def test_consultations_in_the_detail_export_and_anonymisation(api, admin, kpay_app):
    pair = await make_pair(api)
    await api.login("con", "consultant", name="周老师")
    await api.login("stu", "student", name="小王")
    consultation = await request(api, pair)

    status, body = await admin.get(f"{ADMIN}/stu")
    assert status == 200, body
    section = body["user"]["sections"]["consult_billing"]
    assert section["title"] == "咨询"
    assert [(i["title"], i["subtitle"]) for i in section["items"]] == [
        ("向 周老师 咨询 · 0 分钟", "待接受")]
    teacher = (await admin.get(f"{ADMIN}/con"))[1]["user"]["sections"]["consult_billing"]
    assert teacher["items"][0]["title"] == "接待 小王 咨询 · 0 分钟"

    data = (await admin.get(f"{ADMIN}/con/export"))[1]["plugins"]["consult_billing"]
    assert [c["id"] for c in data["consultations"]] == [consultation["id"]]
    assert data["consultant_profile"]["rate_per_minute"] == 100
    assert (await admin.get(f"{ADMIN}/nobody/export"))[0] == 404

    await api.put("/api/v1/consultants/me", {"rate_per_minute": 100, "title": "职业规划师"},
                  pair.consultant.token)
    status, done = await admin.post(f"{ADMIN}/con/anonymise", {"confirm": "con"})
    assert status == 200 and done["plugins"]["consult_billing"] == {"consultant_profile": 1}
    profile = await kpay_app.store["consultant_profiles"].find_one({"_id": "con"})
    assert (profile["title"], profile["bio"], profile["available"]) == ("", "", False)
    assert (await kpay_app.store["consultations"].find_one())["rate_per_minute"] == 100
    listing = await kpay_app.search.collection.find_one({"author_id": "con"})
    assert (listing["author_name"], listing["visible"]) == ("已注销用户", False)
    assert not {"周", "老师"} & set(listing["grams"])  # the old name finds it no more
