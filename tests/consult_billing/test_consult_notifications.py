"""consult_billing's notifications are saved in Chinese, with the other party's name and
a link to each party's own page: request, accept, end (docs/api.md "Notifications")."""

from __future__ import annotations

import pytest
from consult_helpers import join, make_pair, request, wait_for_state


async def saved(api, token):
    status, body = await api.get("/api/v1/notifications", token)
    assert status == 200, body
    return {n["kind"]: n for n in body["notifications"]}


@pytest.mark.gen_test
async def test_request_accept_and_end_are_told_to_the_right_party(api, kpay_app):
    pair = await make_pair(api, rate=250)
    # People are named by their nickname, never their id.
    await kpay_app.store["users"].update_one({"_id": "stu"}, {"$set": {"name": "小明"}})
    await request(api, pair)
    for party in (pair.student, pair.consultant):
        await join(api, party, pair)
    await wait_for_state(api, pair, lambda b: all(b["present"].values()))
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200, body
    status, body = await api.post(pair.path + "/end", token=pair.student.token)
    assert status == 200, body

    consultant = await saved(api, pair.consultant.token)
    assert consultant["consult_request"]["title"] == "新的咨询请求"
    assert consultant["consult_request"]["body"] == (
        "小明 请求咨询（¥2.50/分钟），请尽快接受或婉拒。")
    assert consultant["consult_request"]["link"] == "/static/console.html#consult"
    assert "consult_accepted" not in consultant
    assert consultant["consult_ended"]["title"] == "咨询已结束"
    assert consultant["consult_ended"]["body"].startswith("学生结束了咨询，共 1 分钟，收入 ¥")

    student = await saved(api, pair.student.token)
    assert "consult_request" not in student
    assert student["consult_accepted"]["title"] == "咨询师已接受你的请求"
    assert student["consult_accepted"]["link"] == "/static/consult.html"
    assert student["consult_ended"]["body"] == "学生结束了咨询，共 1 分钟，合计 ¥2.50。"
    assert student["consult_ended"]["link"] == "/static/consult.html"
