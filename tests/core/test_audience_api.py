"""Tags, segments and messages to segments (docs/audience.md): scoping, bounds, rules,
combinations, CSV export, live delivery, the daily cap, idempotency, a failing
recipient."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import pytest

from kpay.core.audience import messages as audience_messages
from tests.core.audience_fakes import AudiencePlugin


@pytest.fixture
def plugin() -> AudiencePlugin:
    return AudiencePlugin()


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": []}}


@pytest.fixture
def kpay_extra_plugins(plugin: AudiencePlugin) -> list[tuple[str, Any]]:
    return [("audience_test", plugin)]


async def buy(api, user_id: str, seller: str, fen: int = 100, name: str | None = None):
    """``user_id`` buys a lesson of ``seller`` from the wallet: a student of theirs."""
    client = await api.as_user(user_id, "student", name)
    await client.topup(fen)
    status, created = await client.post("/api/v1/orders", {
        "item": {"kind": "test_lesson", "seller": seller, "fen": fen}, "channel": "wallet"})
    assert status == 201, created
    return client


async def send_and_wait(client, segment_id: str, body: dict[str, Any],
                        key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Idempotency-Key": key} if key else None
    status, message, _ = await client.api.exchange(
        "POST", f"/api/v1/segments/{segment_id}/messages", body, token=client.token,
        headers=headers)
    if status != 202:
        return status, message
    for _ in range(200):
        status, message = await client.get(f"/api/v1/audience/messages/{message['id']}")
        if message["status"] == "done":
            return 202, message
        await asyncio.sleep(0.02)
    raise AssertionError(f"message never finished: {message}")


@pytest.mark.gen_test
async def test_a_consultant_tags_only_their_students_and_sees_only_their_tags(
        api, consultant, admin):
    await buy(api, "alice", "carol")
    await buy(api, "bob", "dave")
    dave = await api.as_user("dave", "consultant")
    assert (await consultant.put("/api/v1/tags/alice/VIP"))[1] == {"changed": 1}
    assert (await consultant.put("/api/v1/tags/alice/VIP"))[1] == {"changed": 0}
    status, refused = await consultant.put("/api/v1/tags/bob/VIP")
    assert status == 403 and refused["error"]["code"] == "not_your_student"
    # Carol's students are hers: dave sees neither alice nor carol's tag.
    status, students = await dave.get("/api/v1/audience/students")
    assert [p["id"] for p in students["people"]] == ["bob"]
    assert (await dave.get("/api/v1/tags"))[1] == {"tags": []}
    status, mine = await consultant.get("/api/v1/audience/students")
    assert mine["people"][0]["id"] == "alice" and mine["people"][0]["tags"] == ["VIP"]
    # An operator tags anyone, platform-wide, out of the consultants' sight.
    assert (await admin.put("/api/v1/tags/bob/%E9%87%8D%E8%A6%81"))[1] == {"changed": 1}
    assert (await admin.get("/api/v1/tags"))[1] == {"tags": [{"tag": "重要", "count": 1}]}
    assert (await consultant.get("/api/v1/tags"))[1] == {
        "tags": [{"tag": "VIP", "count": 1}]}
    status, _ = await admin.put("/api/v1/tags/nobody/x")
    assert status == 404
    student = await api.as_user("alice", "student")
    assert (await student.get("/api/v1/tags"))[0] == 403
    status, removed = await api.request("DELETE", "/api/v1/tags/alice/VIP",
                                        token=consultant.token)
    assert removed == {"changed": 1}


@pytest.mark.gen_test
async def test_tags_are_bounded(api, consultant):
    await buy(api, "alice", "carol")
    status, refused = await consultant.put("/api/v1/tags/alice/" + "长" * 13)
    assert status == 400 and refused["error"]["code"] == "invalid_tag"
    for n in range(50):
        assert (await consultant.put(f"/api/v1/tags/alice/t{n}"))[0] == 200
    status, refused = await consultant.put("/api/v1/tags/alice/t50")
    assert status == 409 and refused["error"]["code"] == "too_many_open"
    status, refused = await consultant.post("/api/v1/tags/t1", {"user_ids": ["x"] * 1001})
    assert status == 400


@pytest.mark.gen_test
async def test_rules_pick_by_spending_inactivity_and_plugin_rules(
        api, consultant, clock, plugin):
    await buy(api, "alice", "carol", 500)
    await buy(api, "bob", "carol", 100)
    await buy(api, "erin", "dave", 900)  # dave's: never in carol's answers
    plugin.named["carol"] = ["zed"]

    async def members(conditions, match="all"):
        status, seg = await consultant.post("/api/v1/segments", {
            "name": "s", "match": match, "conditions": conditions})
        assert status == 201, seg
        status, page = await consultant.get(f"/api/v1/segments/{seg['id']}/members")
        return [p["id"] for p in page["people"]]

    spent = {"rule": "spent_at_least", "params": {"amount": 300, "days": 7}}
    assert await members([spent]) == ["alice"]
    assert await members([{"rule": "bought_anything"}]) == ["alice", "bob"]
    assert await members([{"rule": "test_named", "params": {"starts": "z"}}]) == ["zed"]
    await clock.advance(10 * 86400)
    await buy(api, "bob", "carol", 100)
    consultant = await api.as_user("carol", "consultant")  # the old token expired
    assert await members([{"rule": "inactive_for", "params": {"days": 7}}]) == ["alice"]
    assert await members([spent]) == []
    status, bad = await consultant.post("/api/v1/segments", {
        "name": "s", "conditions": [{"rule": "spent_at_least", "params": {"amount": -1}}]})
    assert status == 400 and bad["error"]["code"] == "invalid_rule"
    status, kinds = await consultant.get("/api/v1/audience/rules")
    labels = {r["name"]: r["label"] for r in kinds["rules"]}
    assert labels["spent_at_least"] == "近期消费满额" and labels["test_named"] == "测试名单"


@pytest.mark.gen_test
async def test_segments_combine_count_and_export_safe_csv(api, consultant):
    await buy(api, "alice", "carol", name="=HYPERLINK(1)")
    await buy(api, "bob", "carol")
    await buy(api, "cid", "carol")
    await consultant.put("/api/v1/tags/alice/VIP")
    await consultant.put("/api/v1/tags/alice/-x")
    await consultant.put("/api/v1/tags/bob/-x")
    both = {"name": "both", "match": "all", "conditions": [{"tag": "VIP"}, {"tag": "-x"}]}
    status, seg = await consultant.post("/api/v1/segments", both)
    assert (await consultant.get(f"/api/v1/segments/{seg['id']}"))[1]["count"] == 1
    status, changed = await api.request("PATCH", f"/api/v1/segments/{seg['id']}",
                                        {"match": "any"}, token=consultant.token)
    assert status == 200 and changed["match"] == "any"
    status, page = await consultant.get(f"/api/v1/segments/{seg['id']}/members?limit=1")
    assert page["count"] == 2 and [p["id"] for p in page["people"]] == ["alice"]
    assert page["people"][0]["name"] == "=HYPERLINK(1)"
    status, page = await consultant.get(
        f"/api/v1/segments/{seg['id']}/members?limit=1&cursor={page['next_cursor']}")
    assert [p["id"] for p in page["people"]] == ["bob"] and page["next_cursor"] is None
    status, text, headers = await api.exchange(
        "GET", f"/api/v1/segments/{seg['id']}/members.csv", token=consultant.token)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    text = text.removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["用户ID", "昵称", "标签"]
    assert rows[1] == ["alice", "'=HYPERLINK(1)", "'-x VIP"]
    dave = await api.as_user("dave", "consultant")
    assert (await dave.get(f"/api/v1/segments/{seg['id']}/members"))[0] == 404
    status, gone = await api.request("DELETE", f"/api/v1/segments/{seg['id']}",
                                     token=consultant.token)
    assert gone == {"deleted": True}
    assert (await consultant.get("/api/v1/segments"))[1] == {"segments": []}


@pytest.mark.gen_test
async def test_a_message_arrives_live_and_in_the_list_once_per_key(api, consultant, plugin):
    alice = await buy(api, "alice", "carol")
    await buy(api, "bob", "carol")
    await buy(api, "cid", "carol")
    plugin.fail_for = {"bob"}
    ws = await alice.socket()
    assert (await ws.request("sub", ch="user:alice"))["ok"] is True
    status, seg = await consultant.post("/api/v1/segments", {
        "name": "全部", "conditions": [{"rule": "bought_anything"}]})
    body = {"title": "周六直播", "body": "晚八点见", "link": "/static/index.html"}
    status, message = await send_and_wait(consultant, seg["id"], body, key="k1")
    assert status == 202
    # bob's forwarder failed: counted, and cid still got it.
    assert (message["total"], message["sent"], message["failed"]) == (3, 2, 1)
    live = (await ws.event("notification"))["data"]
    assert (live["title"], live["body"], live["link"]) == ("周六直播", "晚八点见",
                                                           "/static/index.html")
    assert [u for u, _, _ in plugin.forwarded] == ["alice", "cid"]
    status, again = await send_and_wait(consultant, seg["id"], body, key="k1")
    assert again["id"] == message["id"]
    dave = await api.as_user("dave", "consultant")  # another consultant sees none of it
    assert (await dave.get(f"/api/v1/audience/messages/{message['id']}"))[0] == 404
    assert (await dave.post(f"/api/v1/segments/{seg['id']}/messages", body))[0] == 404
    status, page = await alice.get("/api/v1/notifications")
    assert [n["title"] for n in page["notifications"]] == ["周六直播"]
    status, conflict = await send_and_wait(consultant, seg["id"], {"title": "x"}, key="k1")
    assert status == 409 and conflict["error"]["code"] == "idempotency_conflict"
    status, bad = await send_and_wait(consultant, seg["id"],
                                      {"title": "x", "link": "https://evil.example"})
    assert status == 400 and bad["error"]["code"] == "invalid_link"


@pytest.mark.gen_test
async def test_the_daily_cap_holds_until_the_next_local_day(api, consultant, clock):
    await buy(api, "alice", "carol")
    status, seg = await consultant.post("/api/v1/segments", {
        "name": "全部", "conditions": [{"rule": "bought_anything"}]})
    for n in range(3):  # [audience] messages_per_day, default 3
        assert (await send_and_wait(consultant, seg["id"], {"title": f"第{n}条"}))[0] == 202
    status, refused = await send_and_wait(consultant, seg["id"], {"title": "超额"})
    assert status == 429 and refused["error"]["code"] == "daily_cap"
    status, listed = await consultant.get(f"/api/v1/segments/{seg['id']}/messages")
    assert listed["cap"] == {"per_day": 3, "sent_today": 3, "max_recipients": 2000}
    await clock.advance(86400)
    consultant = await api.as_user("carol", "consultant")  # the old token expired
    assert (await send_and_wait(consultant, seg["id"], {"title": "次日"}))[0] == 202


@pytest.mark.gen_test
async def test_a_large_segment_is_sent_in_batches_counting_progress(kpay_app, plugin,
                                                                   monkeypatch):
    """250 recipients: three batches, each counted on the record as it goes; the
    failing one in the middle batch is counted and the rest still get it."""
    ids = [f"u{n:03d}" for n in range(250)]
    plugin.fail_for = {"u150"}
    seen: list[tuple[int, int]] = []
    original = audience_messages.deliver

    async def watching(app, doc, user_id):
        if user_id.endswith("00"):  # the first of each batch: what the record says so far
            record = await app.store["audience_messages"].find_one({"_id": doc["_id"]})
            seen.append((record["sent"], record["failed"]))
        await original(app, doc, user_id)

    monkeypatch.setattr(audience_messages, "deliver", watching)
    doc, replayed = await audience_messages.start(
        kpay_app, "platform", "seg1", audience_messages.MessageBody(title="通知"), ids, None)
    for _ in range(500):
        record = await kpay_app.store["audience_messages"].find_one({"_id": doc["_id"]})
        if record["status"] == "done":
            break
        await asyncio.sleep(0.02)
    assert not replayed
    assert (record["total"], record["sent"], record["failed"]) == (250, 249, 1)
    assert seen == [(0, 0), (100, 0), (199, 1)]
    assert await kpay_app.notifications.unread_count("u249") == 1


class TestConfiguredCaps:
    @pytest.fixture
    def kpay_overrides(self) -> dict[str, Any]:
        return {"plugins": {"enabled": []}, "audience": {"max_recipients": 1}}

    @pytest.mark.gen_test
    async def test_a_consultant_message_reaches_at_most_max_recipients(self, api, consultant):
        await buy(api, "alice", "carol")
        await buy(api, "bob", "carol")
        status, seg = await consultant.post("/api/v1/segments", {
            "name": "全部", "conditions": [{"rule": "bought_anything"}]})
        status, refused = await send_and_wait(consultant, seg["id"], {"title": "太多"})
        assert status == 409 and refused["error"]["code"] == "too_many_recipients"
        status, listed = await consultant.get(f"/api/v1/segments/{seg['id']}/messages")
        assert listed["cap"] == {"per_day": 3, "sent_today": 0, "max_recipients": 1}
