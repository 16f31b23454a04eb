"""The built-in plugins' audience rules and students, with data made through their own
APIs (docs/audience.md): 购买过课程 (course_drip), 参加过直播 (live_qa), 咨询过 and a
consultation's student (consult_billing); each scoped to its owner."""

from __future__ import annotations

from typing import Any

import pytest

from tests.consult_billing.consult_helpers import live_session


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": ["course_drip", "live_qa", "consult_billing"]}}


async def members(client, conditions) -> list[str]:
    status, seg = await client.post("/api/v1/segments", {"name": "s", "conditions": conditions})
    assert status == 201, seg
    status, page = await client.get(f"/api/v1/segments/{seg['id']}/members")
    assert status == 200, page
    return [p["id"] for p in page["people"]]


@pytest.mark.gen_test(timeout=60)
async def test_plugin_rules_pick_from_their_own_data(api):
    # A consultation (paid by the minute from the wallet: no order) makes stu con's student.
    await live_session(api, student="stu", consultant="con")
    con = await api.as_user("con", "consultant")
    other = await api.as_user("dave", "consultant")
    assert await members(con, [{"rule": "had_consultation"}]) == ["stu"]
    assert await members(other, [{"rule": "had_consultation"}]) == []
    assert (await con.put("/api/v1/tags/stu/VIP"))[0] == 200

    status, body = await con.post("/api/v1/courses", {
        "title": "Python 入门", "price": 100, "lessons": [{"title": "一", "body": "x"}]})
    course = body["course"]
    assert (await con.post(f"/api/v1/courses/{course['id']}/publish"))[0] == 200
    # A gift (no order): the enrolled student is con's through course_drip's hook.
    status, _ = await con.post(f"/api/v1/courses/{course['id']}/enrollments",
                               {"user_id": "gift"})
    assert status == 201
    await api.login("gift", "student", name="获赠")
    buyer = await api.as_user("ann", "student")
    await buyer.topup(1000)
    status, body = await buyer.post("/api/v1/orders", {
        "item": {"kind": "course", "course_id": course["id"]}, "channel": "wallet"})
    assert status == 201, body
    bought = {"rule": "bought_course", "params": {"course_id": course["id"]}}
    assert await members(con, [bought]) == ["ann", "gift"]
    assert await members(other, [bought]) == []  # not dave's course

    status, body = await con.post("/api/v1/rooms", {"title": "答疑", "ticket_price": 100})
    room = body["room"]
    status, body = await buyer.post("/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": room["id"]}, "channel": "wallet"})
    assert status == 201, body
    attended = {"rule": "attended_room", "params": {"room_id": room["id"]}}
    assert await members(con, [attended]) == ["ann"]
    status, seg = await con.post("/api/v1/segments", {
        "name": "any", "match": "any", "conditions": [attended, {"tag": "VIP"}]})
    assert (await con.get(f"/api/v1/segments/{seg['id']}"))[1]["count"] == 2

    status, students = await con.get("/api/v1/audience/students")
    assert [p["id"] for p in students["people"]] == ["ann", "gift", "stu"]
    status, kinds = await con.get("/api/v1/audience/rules")
    by_name = {r["name"]: r for r in kinds["rules"]}
    assert by_name["bought_course"]["choices"] == {
        "course_id": [{"value": course["id"], "label": "Python 入门"}]}
    assert by_name["attended_room"]["label"] == "参加过直播"
    assert by_name["had_consultation"]["label"] == "咨询过"
    status, kinds = await other.get("/api/v1/audience/rules")
    assert {r["name"]: r for r in kinds["rules"]}["bought_course"]["choices"] == {
        "course_id": []}
