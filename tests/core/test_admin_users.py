"""The operators' console on users (docs/api.md "Operators"): admins only; search;
a user's detail with the plugins' sections; personal data export and anonymisation
(docs/operations.md "Personal data"), each in the audit log."""

from __future__ import annotations

import json
import types

import pytest

from kpay import hookimpl
from kpay.core.admin.personal_data import ANONYMOUS_NAME
from kpay.testing import assert_books_balanced, run_kpay

ADMIN = "/api/v1/admin/users"


@hookimpl
def register_collections(app):
    return []


@hookimpl
def admin_user_sections(app, user_id):
    return {"title": "徽章", "items": [{"title": f"{user_id} 的徽章", "subtitle": "",
                                      "at": None}]}


@hookimpl
async def export_user_data(app, user_id):
    return {"badges": [user_id]}


@hookimpl
def anonymise_user(app, user_id):
    return {"badges": 1}


BADGES = [("badges", types.SimpleNamespace(
    register_collections=register_collections, admin_user_sections=admin_user_sections,
    export_user_data=export_user_data, anonymise_user=anonymise_user))]


async def audit_actions(app, user_id):
    return [r["action"] for r in await app.audit.list(target=f"user:{user_id}")]


@pytest.mark.gen_test
async def test_students_and_consultants_are_refused(api, student, consultant):
    for who in (student, consultant):
        for path in (ADMIN, f"{ADMIN}/alice", f"{ADMIN}/alice/export"):
            status, body = await who.get(path)
            assert (status, body["error"]["code"]) == (403, "forbidden"), path
        status, body = await who.post(f"{ADMIN}/alice/anonymise", {"confirm": "alice"})
        assert (status, body["error"]["code"]) == (403, "forbidden")
    assert (await api.get(ADMIN))[0] == 401


@pytest.mark.gen_test
async def test_search_by_nickname_id_openid_role_and_pages(api, admin, kpay_app):
    await api.login("lin", "consultant", name="小林老师")
    await api.login("lin2", "student", name="林同学")
    await api.login("wang", "student", name="王五")
    await kpay_app.users.collection.update_one({"_id": "wang"}, {"$set": {"openid": "oWX1"}})

    async def ids(query):
        status, body = await admin.get(f"{ADMIN}?{query}")
        assert status == 200, body
        return [u["id"] for u in body["users"]]

    assert await ids("q=%E6%9E%97") == ["lin", "lin2"]  # 林
    assert await ids("q=%E6%9E%97&role=consultant") == ["lin"]
    assert await ids("q=wang") == ["wang"] and await ids("q=oWX1") == ["wang"]
    assert await ids("q=.%2A") == []  # ".*" is text, not a pattern
    status, page = await admin.get(f"{ADMIN}?q=%E6%9E%97&limit=1")
    assert [u["id"] for u in page["users"]] == ["lin"] and page["next_cursor"] == "lin"
    assert page["users"][0]["name"] == "小林老师" and page["users"][0]["role"] == "consultant"
    assert await ids("q=%E6%9E%97&limit=1&cursor=lin") == ["lin2"]
    status, body = await admin.get(f"{ADMIN}?q={'x' * 65}")
    assert (status, body["error"]["code"]) == (400, "invalid_field")
    status, body = await admin.get(f"{ADMIN}?role=king")
    assert (status, body["error"]["code"]) == (400, "invalid_field")
    assert await ids("tag=vip") == []  # nobody carries it yet


@pytest.mark.gen_test
async def test_a_tag_filters_by_the_operators_tags(api, admin, kpay_app):
    await api.login("lin", "student", name="小林")
    await api.login("wang", "student", name="王五")
    status, body = await admin.post("/api/v1/tags/vip", {"user_ids": ["wang"]})
    assert status == 200, body
    status, body = await admin.get(f"{ADMIN}?tag=vip")
    assert status == 200, body
    assert [u["id"] for u in body["users"]] == ["wang"], body


@pytest.mark.gen_test
@pytest.mark.parametrize("kpay_extra_plugins", [BADGES])
async def test_detail_shows_money_presence_and_plugin_sections(api, admin, kpay_app):
    host = await api.login("host", "consultant", name="主持人")
    status, created = await api.post("/api/v1/rooms", {
        "title": "如何准备面试", "ticket_price": 990, "question_min_price": 500}, host)
    room = created["room"]
    await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    alice = await api.login("alice", "student", name="爱丽丝")
    await api.topup(alice, 2000)
    status, bought = await api.post("/api/v1/orders", {
        "item": {"kind": "live_ticket", "room_id": room["id"]}, "channel": "wallet"}, alice)
    assert status == 201, bought

    status, body = await admin.get(f"{ADMIN}/alice")
    assert status == 200, body
    user = body["user"]
    assert (user["name"], user["role"], user["online"]) == ("爱丽丝", "student", False)
    assert user["wallet"]["balance"] == 2000 - 990 and user["earnings"] == 0
    assert [o["kind"] for o in user["orders"]] == ["live_ticket", "wallet_topup"]
    assert user["orders"][0]["refundable"] == 990
    assert user["sections"]["badges"]["items"][0]["title"] == "alice 的徽章"
    assert user["sections"]["live_qa"]["items"][0]["title"] == "门票：如何准备面试"
    host_view = (await admin.get(f"{ADMIN}/host"))[1]["user"]
    assert host_view["earnings"] > 0
    assert host_view["sections"]["live_qa"]["items"][0]["title"] == "主持：如何准备面试"

    ws = await api.socket(alice)
    assert (await ws.request("sub", ch="user:alice"))["ok"]
    assert (await admin.get(f"{ADMIN}/alice"))[1]["user"]["online"] is True
    assert (await admin.get(f"{ADMIN}/nobody"))[0] == 404
    assert await audit_actions(kpay_app, "alice") == ["user.view", "user.view"]


@pytest.mark.gen_test
@pytest.mark.parametrize("kpay_extra_plugins", [BADGES])
async def test_export_holds_core_and_plugin_data(api, admin, kpay_app):
    alice = await api.login("alice", "student", name="爱丽丝")
    await kpay_app.users.set_real_name("alice", "张三")
    await api.login("lin", "consultant", name="小林")
    await api.put("/api/v1/users/lin/follow", token=alice)
    await api.topup(alice, 500)

    status, data = await admin.get(f"{ADMIN}/alice/export")
    assert status == 200, data
    assert data["user"]["id"] == "alice" and data["user"]["real_name"] == "张三"
    assert "token_version" not in data["user"] and "revoked_tokens" not in data["user"]
    assert [f["user_id"] for f in data["following"]] == ["lin"]
    assert data["wallet"]["balance"] == 500 and len(data["wallet"]["entries"]) == 1
    assert [o["kind"] for o in data["orders"]] == ["wallet_topup"]
    assert data["plugins"]["badges"] == {"badges": ["alice"]}
    assert await audit_actions(kpay_app, "alice") == ["user.export"]


@pytest.mark.gen_test
@pytest.mark.parametrize("kpay_extra_plugins", [BADGES])
async def test_anonymise_removes_identity_and_keeps_the_books(api, admin, kpay_app):
    host = await api.login("host", "consultant", name="主持人")
    status, created = await api.post("/api/v1/rooms", {
        "title": "如何准备面试", "ticket_price": 990, "question_min_price": 500}, host)
    room = created["room"]
    await api.post(f"/api/v1/rooms/{room['id']}/start", token=host)
    alice = await api.login("alice", "student", name="爱丽丝")
    await kpay_app.users.collection.update_one({"_id": "alice"}, {"$set": {"openid": "oA"}})
    await kpay_app.users.set_real_name("alice", "张三")
    await api.put("/api/v1/users/host/follow", token=alice)
    await api.topup(alice, 3000)
    for item in ({"kind": "live_ticket", "room_id": room["id"]},
                 {"kind": "live_question", "room_id": room["id"], "text": "我的私事",
                  "bounty": 500}):
        status, body = await api.post("/api/v1/orders", {"item": item, "channel": "wallet"},
                                      alice)
        assert status == 201, body
    wallet_before = await kpay_app.money.ledger.wallet("alice")
    ws = await api.socket(alice)

    status, body = await admin.post(f"{ADMIN}/alice/anonymise", {"confirm": "bob"})
    assert (status, body["error"]["code"]) == (400, "confirm_mismatch")
    status, body = await admin.post(f"{ADMIN}/root/anonymise", {"confirm": "root"})
    assert (status, body["error"]["code"]) == (400, "cannot_anonymise_self")
    status, done = await admin.post(f"{ADMIN}/alice/anonymise", {"confirm": "alice"})
    assert status == 200, done
    assert done["identity"] == ["openid", "real_name", "real_name_set_at"] and done["follows"] == 1
    assert done["plugins"]["live_qa"]["questions"] == 1
    assert done["plugins"]["badges"] == {"badges": 1}

    doc = await kpay_app.users.get("alice")
    assert doc["name"] == ANONYMOUS_NAME
    assert not {"openid", "real_name", "avatar_media_id"} & doc.keys()
    assert await ws.closed() == 4401
    assert (await api.get("/api/v1/me", alice))[0] == 401
    assert await kpay_app.follows.followers("host") == 0
    question = await kpay_app.store["live_questions"].find_one({"asker_id": "alice"})
    assert question["text"] == "（已删除）" and question["bounty"] == 500
    kept = await kpay_app.store["live_messages"].find_one({"type": "question"})
    assert kept["data"]["text"] == "（已删除）"
    # Money stays: the same orders, amounts and wallet under the now opaque id.
    assert await kpay_app.money.ledger.wallet("alice") == wallet_before
    assert await kpay_app.money.orders.collection.count_documents({"user_id": "alice"}) == 3
    await assert_books_balanced(kpay_app)

    status, again = await admin.post(f"{ADMIN}/alice/anonymise", {"confirm": "alice"})
    assert status == 200 and again["identity"] == [] and again["follows"] == 0
    assert again["plugins"]["live_qa"] == {"questions": 0, "messages": 0}
    assert await audit_actions(kpay_app, "alice") == ["user.anonymise", "user.anonymise"]


@pytest.mark.gen_test(timeout=120)
async def test_the_cli_exports_and_anonymises(api, kpay_app, tmp_path):
    alice = await api.login("alice", "student", name="爱丽丝")
    await api.topup(alice, 500)
    out = tmp_path / "alice.json"
    result = await run_kpay(kpay_app, tmp_path, "user", "export", "alice", "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["user"]["name"] == "爱丽丝" and data["wallet"]["balance"] == 500

    refused = await run_kpay(kpay_app, tmp_path, "user", "anonymise", "alice")
    assert refused.returncode == 2 and "--confirm" in refused.stderr
    result = await run_kpay(kpay_app, tmp_path, "user", "anonymise", "alice",
                            "--confirm", "alice")
    assert result.returncode == 0, result.stderr
    assert (await kpay_app.users.get("alice"))["name"] == ANONYMOUS_NAME
    kpay_app.users.forget("alice")  # as the server's next look for changed users does
    assert (await api.get("/api/v1/me", alice))[0] == 401
    records = await kpay_app.audit.list(target="user:alice")
    assert [(r["action"], r["source"]) for r in records] == [
        ("user.anonymise", "cli"), ("user.export", "cli")]


@pytest.mark.gen_test
async def test_ids_name_people_blocked_ones_too(api, admin, kpay_app):
    await api.login("lin", "student", name="小林")
    await kpay_app.users.set_blocked("lin", True)
    status, body = await admin.get(f"{ADMIN}?ids=lin,nobody")
    assert status == 200 and [u["name"] for u in body["users"]] == ["小林"], body
    assert body["users"][0]["blocked"] is True
    for bad in ("", "a%20b", ",".join(f"u{i}" for i in range(51))):
        status, body = await admin.get(f"{ADMIN}?ids={bad}")
        assert (status, body["error"]["code"]) == (400, "invalid_field"), bad
