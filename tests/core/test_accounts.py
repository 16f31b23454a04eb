"""Stored roles win over tokens; blocks, logouts and role changes end sessions (HTTP and
sockets, on this node at once, on another within the cache bound); the audit log."""

from __future__ import annotations

import asyncio
import json

import pytest

from kpay.testing import ApiClient, run_kpay

ADMIN = "/api/v1/admin/users"


async def code_of(api, path, token):
    status, body = await api.get(path, token)
    return status, (body or {}).get("error", {}).get("code") if status >= 400 else None


@pytest.mark.gen_test
async def test_a_demoted_admin_loses_admin_rights_at_once(api, admin):
    boss = await api.login("boss", "admin")
    status, _ = await api.get("/api/v1/plugins", boss)
    assert status == 200
    status, body = await admin.post(f"{ADMIN}/boss/role", {"role": "student",
                                                           "reason": "离职"})
    assert status == 200 and body["user"]["role"] == "student", body
    assert await code_of(api, "/api/v1/plugins", boss) == (401, "token_revoked")
    # A fresh login gets what is stored now, not what it asks for... in dev mode a login
    # names its role, so production's path is the OAuth login; the stored role wins.
    token = await api.login("boss", "student")
    assert await code_of(api, "/api/v1/plugins", token) == (403, "forbidden")


@pytest.mark.gen_test
async def test_a_token_of_a_user_who_does_not_exist_is_refused(api, kpay_app):
    ghost = kpay_app.tokens.issue("ghost", "admin")
    assert await code_of(api, "/api/v1/me", ghost) == (401, "invalid_token")
    await kpay_app.users.ensure("deleted", "student")
    token = kpay_app.tokens.issue("deleted", "student")
    assert (await api.get("/api/v1/me", token))[0] == 200
    await kpay_app.store["users"].delete_one({"_id": "deleted"})
    kpay_app.users.forget("deleted")  # as the next change poll does
    assert await code_of(api, "/api/v1/me", token) == (401, "invalid_token")


@pytest.mark.gen_test
async def test_blocking_refuses_requests_and_closes_sockets(api, admin, student):
    ws = await student.socket()
    assert (await ws.request("sub", ch="user:alice"))["ok"]
    status, body = await admin.post(f"{ADMIN}/alice/block", {"reason": "刷单"})
    assert status == 200 and body["user"]["blocked"] is True
    assert await ws.closed() == 4401 and ws.close_reason == "account_blocked"
    assert await code_of(api, "/api/v1/wallet", student.token) == (403, "account_blocked")
    fresh = await api.login("alice", "student")
    assert await code_of(api, "/api/v1/me", fresh) == (403, "account_blocked")
    refused = await api.socket(fresh)
    assert await refused.closed() == 4401 and refused.close_reason == "account_blocked"
    status, _ = await admin.post(f"{ADMIN}/alice/unblock", {"reason": "申诉通过"})
    assert status == 200
    assert await code_of(api, "/api/v1/me", fresh) == (401, "token_revoked")
    again = await api.login("alice", "student")
    assert (await api.get("/api/v1/me", again))[0] == 200


@pytest.mark.gen_test
async def test_logout_ends_one_token_and_logout_everywhere_all(api, kpay_app):
    phone = await api.login("bob")
    laptop = await api.login("bob")
    status, _ = await api.post("/api/v1/auth/logout", {}, phone)
    assert status == 200
    assert await code_of(api, "/api/v1/me", phone) == (401, "token_revoked")
    assert (await api.get("/api/v1/me", laptop))[0] == 200
    ws = await api.socket(laptop)
    status, _ = await api.post("/api/v1/auth/logout-everywhere", {}, laptop)
    assert status == 200
    assert await code_of(api, "/api/v1/me", laptop) == (401, "token_revoked")
    assert await ws.closed() == 4401 and ws.close_reason == "token_revoked"
    assert (await api.get("/api/v1/me", await api.login("bob")))[0] == 200


@pytest.mark.gen_test
async def test_only_admins_change_users_and_input_is_checked(api, admin, student):
    for path in (f"{ADMIN}/carol/role", f"{ADMIN}/carol/block", f"{ADMIN}/carol/unblock"):
        status, _ = await student.post(path, {"role": "admin"})
        assert status == 403, path
    for bad in ({"role": "root"}, {}, {"role": "admin", "reason": "x" * 501}):
        status, body = await admin.post(f"{ADMIN}/alice/role", bad)
        assert status == 400, (bad, body)
    status, body = await admin.post(f"{ADMIN}/nobody/block", {})
    assert status == 404 and body["error"]["code"] == "user_not_found"
    status, body = await admin.post(f"{ADMIN}/root/block", {})
    assert status == 400 and body["error"]["code"] == "cannot_block_self"
    status, body = await admin.get("/api/v1/admin/audit")
    assert status == 200 and body["records"] == []  # refusals change nothing


@pytest.mark.gen_test
async def test_the_audit_log_says_who_did_what_to_whom(api, admin, student):
    await admin.post(f"{ADMIN}/alice/role", {"role": "consultant", "reason": "入驻讲师"})
    await admin.post(f"{ADMIN}/alice/block", {"reason": "投诉"})
    status, body = await admin.get("/api/v1/admin/audit?target=user:alice")
    assert status == 200, body
    records = body["records"]
    assert [(r["actor"], r["action"], r["target"], r["reason"]) for r in records] == [
        ("root", "user.block", "user:alice", "投诉"),
        ("root", "user.role", "user:alice", "入驻讲师")]
    assert records[1]["details"] == {"before": "student", "after": "consultant"}
    assert records[0]["source"] == "127.0.0.1"
    status, body = await admin.get("/api/v1/admin/audit?action=user.role&limit=1")
    assert len(body["records"]) == 1 and body["next_before"] == records[1]["at"]
    status, _ = await student.get("/api/v1/admin/audit")
    assert status in (401, 403)


@pytest.fixture
def kpay_overrides():
    return {"auth": {"standing_cache_seconds": 1}}


@pytest.mark.gen_test(timeout=60)
async def test_a_change_made_with_the_cli_reaches_the_running_server(api, kpay_app, tmp_path):
    token = await api.login("dave", "consultant")
    ws = await api.socket(token)
    assert (await ws.request("sub", ch="user:dave"))["ok"]
    assert (await api.get("/api/v1/me", token))[0] == 200  # cached now
    async def kpay(*args):
        return await run_kpay(kpay_app, tmp_path, *args)

    done = await kpay("user", "block", "dave", "--reason", "风控")
    assert done.returncode == 0, done.stderr
    # Another process changed it: this server notices within standing_cache_seconds.
    assert await ws.closed(timeout=10) == 4401 and ws.close_reason == "account_blocked"
    assert await code_of(api, "/api/v1/me", token) == (403, "account_blocked")
    audit = await kpay("audit", "--json", "--target", "user:dave")
    [record] = json.loads(audit.stdout)
    assert record["action"] == "user.block" and record["actor"].startswith("cli")
    assert record["source"] == "cli" and record["reason"] == "风控"
    # kpay token refuses a role other than the stored one, and a blocked user.
    refused = await kpay("token", "--user", "dave", "--role", "admin")
    assert refused.returncode == 2 and "stored as consultant" in refused.stderr
    await kpay("user", "unblock", "dave")
    issued = await kpay("token", "--user", "dave", "--role", "consultant")
    assert issued.returncode == 0, issued.stderr
    assert (await api.get("/api/v1/me", issued.stdout.strip()))[0] == 200
    # The first admin of a fresh deployment: created by `kpay user role`.
    made = await kpay("user", "role", "founder", "admin")
    assert made.returncode == 0, made.stderr
    founder = await kpay("token", "--user", "founder", "--role", "admin")
    assert (await ApiClient(kpay_app).get("/api/v1/plugins", founder.stdout.strip()))[0] == 200


@pytest.mark.gen_test
async def test_concurrent_logouts_each_end_their_token(api):
    tokens = [await api.login("bob") for _ in range(6)]
    answers = await asyncio.gather(*(api.post("/api/v1/auth/logout", {}, t) for t in tokens))
    assert [status for status, _ in answers] == [200] * 6
    for token in tokens:  # none lost to another logout's write
        assert await code_of(api, "/api/v1/me", token) == (401, "token_revoked")


@pytest.mark.gen_test
async def test_times_out_of_range_are_400_not_500(api, admin, student):
    for path in ("/api/v1/admin/audit", "/api/v1/admin/attention"):
        for before in ("0001-01-01T00:00:00%2B23:59", "9999-12-31T23:59:59-23:59"):
            status, body = await admin.get(f"{path}?before={before}")
            assert status == 400 and body["error"]["field"] == "before", (path, body)
    status, body = await student.get("/api/v1/wallet/ledger?before=0001-01-01T00:00:00%2B23:59")
    assert status == 400, body
