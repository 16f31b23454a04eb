"""Saved notifications: tell_user saves one worded by ``describe_notification`` (or the
neutral title), the list, unread count and read routes, their bounds, the cap per user,
and link validation (docs/api.md "Notifications")."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kpay import hookimpl
from kpay.core import notifications
from kpay.core.errors import BadRequest
from kpay.core.metrics import commands_since, db_commands
from kpay.core.notifications import KEEP_PER_USER, NEUTRAL_TITLE, check_link
from kpay.core.telling import Told


class Describer:
    """A throwaway plugin wording its own kind ``flower_delivered``."""

    fail = False

    @hookimpl
    async def describe_notification(self, user_id, kind, data):
        if kind != "flower_delivered":
            return None
        if self.fail:
            raise RuntimeError("describer bug")
        return {"title": f"鲜花已送达 {data['n']} 束", "body": f"给 {user_id} 的花",
                "link": data.get("link", "/static/index.html")}


@pytest.fixture
def describer() -> Describer:
    return Describer()


@pytest.fixture
def kpay_overrides() -> dict[str, Any]:
    return {"plugins": {"enabled": []}}


@pytest.fixture
def kpay_extra_plugins(describer: Describer) -> list[tuple[str, Any]]:
    return [("describer", describer)]


@pytest.mark.gen_test
async def test_tell_user_saves_the_plugins_wording_and_publishes_it(kpay_app, student):
    ws = await student.socket()
    assert (await ws.request("sub", ch=f"user:{student.id}"))["ok"] is True
    await kpay_app.tell_user(student.id, "flower_delivered", {"n": 3})
    assert (await ws.event("flower_delivered"))["data"] == {"n": 3}
    live = (await ws.event("notification"))["data"]
    assert (live["title"], live["body"], live["link"], live["read"]) == (
        "鲜花已送达 3 束", "给 alice 的花", "/static/index.html", False)
    status, page = await student.get("/api/v1/notifications")
    assert status == 200
    assert [n["id"] for n in page["notifications"]] == [live["id"]]
    assert page["unread"] == 1 and page["next_cursor"] is None


@pytest.mark.gen_test
async def test_a_kind_nobody_describes_is_saved_neutral_never_raw(kpay_app, student):
    await kpay_app.tell_user(student.id, "mystery_event", {"x": 1})
    _, page = await student.get("/api/v1/notifications")
    [saved] = page["notifications"]
    assert (saved["title"], saved["body"], saved["link"], saved["kind"]) == (
        NEUTRAL_TITLE, "", None, "mystery_event")
    assert "mystery" not in saved["title"]


@pytest.mark.gen_test
async def test_a_failing_describer_saves_nothing_but_the_event_goes(kpay_app, student,
                                                                    describer):
    ws = await student.socket()
    await ws.request("sub", ch=f"user:{student.id}")
    describer.fail = True
    with pytest.raises(RuntimeError, match="describer bug"):  # dev mode raises
        await kpay_app.tell_user(student.id, "flower_delivered", {"n": 1})
    assert (await ws.event("flower_delivered"))["data"] == {"n": 1}
    assert await kpay_app.notifications.unread_count(student.id) == 0


@pytest.mark.gen_test
async def test_an_external_link_from_a_describer_is_refused(kpay_app, student, caplog):
    kpay_app.dev = False  # logged, not raised
    with caplog.at_level(logging.ERROR):
        await kpay_app.tell_user(student.id, "flower_delivered",
                                 {"n": 1, "link": "//evil.example/x"})
    assert "saving the notification failed" in caplog.text
    assert await kpay_app.notifications.unread_count(student.id) == 0


@pytest.mark.parametrize("link", [
    "https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)",
    "static/x.html", "/a b", "/x\n", "", "/" + "a" * 400, "http:/x",
])
def test_links_outside_kpay_are_refused(link):
    with pytest.raises(BadRequest) as refused:
        check_link(link)
    assert refused.value.code == "invalid_link"


@pytest.mark.parametrize("link", ["/static/course.html?id=c1&lesson=l1",
                                  "/static/console.html#consult", "/"])
def test_paths_inside_kpay_are_kept(link):
    assert check_link(link) == link


@pytest.mark.gen_test
async def test_add_cuts_long_text_and_checks_the_link(kpay_app):
    saved = await kpay_app.notifications.add("bob", "标" * 500, "文" * 5000, "/static/x.html")
    assert len(saved["title"]) == notifications.MAX_TITLE and saved["title"].endswith("…")
    assert len(saved["body"]) == notifications.MAX_BODY
    with pytest.raises(BadRequest):
        await kpay_app.notifications.add("bob", "标题", "", "https://evil.example/")


@pytest.mark.gen_test
async def test_pages_newest_first_with_a_cursor(kpay_app, student, clock):
    for n in range(5):
        await kpay_app.notifications.add(student.id, f"第{n}条", "", None)
        await clock.advance(1)
    _, first = await student.get("/api/v1/notifications?limit=2")
    assert [n["title"] for n in first["notifications"]] == ["第4条", "第3条"]
    _, second = await student.get(f"/api/v1/notifications?limit=2&cursor={first['next_cursor']}")
    assert [n["title"] for n in second["notifications"]] == ["第2条", "第1条"]
    _, last = await student.get(f"/api/v1/notifications?limit=2&cursor={second['next_cursor']}")
    assert [n["title"] for n in last["notifications"]] == ["第0条"]
    assert last["next_cursor"] is None


@pytest.mark.gen_test
async def test_bounds_of_the_list_and_of_read(api, student):
    assert (await student.get("/api/v1/notifications?limit=51"))[0] == 400
    assert (await student.get("/api/v1/notifications?limit=0"))[0] == 400
    status, body = await student.get("/api/v1/notifications?cursor=ntfnosuch")
    assert (status, body["error"]["code"]) == (400, "invalid_cursor")
    for bad in ({}, {"ids": []}, {"ids": ["x"] * 51}, {"all": False},
                {"ids": ["a"], "all": True}, {"ids": ["x" * 65]}, {"all": True, "more": 1}):
        assert (await student.post("/api/v1/notifications/read", bad))[0] == 400, bad
    assert (await api.get("/api/v1/notifications/unread-count"))[0] == 401


@pytest.mark.gen_test
async def test_unread_count_and_marking_read(kpay_app, student, api):
    ids = [(await kpay_app.notifications.add(student.id, f"n{n}", "", None))["id"]
           for n in range(3)]
    theirs = await kpay_app.notifications.add("bob", "bob's", "", None)
    assert (await student.get("/api/v1/notifications/unread-count"))[1] == {"unread": 3}
    # Someone else's id changes nothing.
    status, result = await student.post("/api/v1/notifications/read",
                                        {"ids": [ids[0], theirs["id"]]})
    assert (status, result) == (200, {"changed": 1, "unread": 2})
    assert await kpay_app.notifications.unread_count("bob") == 1
    _, page = await student.get("/api/v1/notifications")
    assert {n["id"]: n["read"] for n in page["notifications"]} == {
        ids[0]: True, ids[1]: False, ids[2]: False}
    assert (await student.post("/api/v1/notifications/read", {"all": True}))[1] == {
        "changed": 2, "unread": 0}


@pytest.mark.gen_test
async def test_each_user_keeps_the_newest(kpay_app, clock):
    assert KEEP_PER_USER == 200
    service = kpay_app.notifications
    service.keep = 6  # the same code as 200, in fewer round trips
    service.check_every = 1  # every save checks its list
    for n in range(9):
        await service.add("carol", f"n{n}", "", None)
        await clock.advance(0.01)
    await service.add("dave", "kept", "", None)
    kept = [n["title"] for n in await service.list("carol", limit=50)]
    assert kept == ["n8", "n7", "n6", "n5", "n4", "n3"]
    assert await service.unread_count("carol") == 6
    assert await service.unread_count("dave") == 1
    assert await service.collection.count_documents({"user_id": "carol"}) == 6


@pytest.mark.gen_test
async def test_a_list_not_checked_yet_shows_only_the_newest(kpay_app, student, clock):
    service = kpay_app.notifications
    service.keep = 6
    service.check_every = 2**62  # no save checks its list (one in 2**62)
    for n in range(9):
        await service.add(student.id, f"n{n}", "", None)
        await clock.advance(0.01)
    assert await service.collection.count_documents({"user_id": student.id}) == 9
    _, first = await student.get("/api/v1/notifications?limit=4")
    assert [n["title"] for n in first["notifications"]] == ["n8", "n7", "n6", "n5"]
    assert first["unread"] == 6
    _, second = await student.get(f"/api/v1/notifications?limit=4&cursor={first['next_cursor']}")
    assert [n["title"] for n in second["notifications"]] == ["n4", "n3"]
    assert second["next_cursor"] is None
    assert (await student.post("/api/v1/notifications/read", {"all": True}))[1] == {
        "changed": 6, "unread": 0}
    service.check_every = 1  # the next save checks: what was past the newest 6 goes
    await service.add(student.id, "n9", "", None)
    assert await service.collection.count_documents({"user_id": student.id}) == 6
    assert [n["title"] for n in await service.list(student.id, limit=50)] == [
        "n9", "n8", "n7", "n6", "n5", "n4"]


class TestRateLimited:
    @pytest.fixture
    def kpay_overrides(self) -> dict[str, Any]:
        return {"plugins": {"enabled": []}, "limits": {"enabled": True, "write_burst": 2,
                                                       "write_per_second": 0.01}}

    @pytest.mark.gen_test
    async def test_marking_read_is_limited_as_a_write(self, student):
        statuses = [(await student.post("/api/v1/notifications/read", {"all": True}))[0]
                    for _ in range(3)]
        assert statuses == [200, 200, 429]


@pytest.mark.gen_test
async def test_the_cores_own_event_types_cannot_be_told(kpay_app):
    for kind in ("notification", "earnings_changed"):
        with pytest.raises(ValueError, match="core's own event"):
            await kpay_app.tell_user("bob", kind, {"id": "forged"})
    assert await kpay_app.notifications.unread_count("bob") == 0


@pytest.mark.gen_test
async def test_add_many_saves_every_user_and_trims_only_those_past_the_cap(kpay_app, clock):
    service = kpay_app.notifications
    service.keep = 3
    service.check_every = 1
    for n in range(3):
        await service.add("carol", f"old{n}", "", None)
        await clock.advance(0.01)
    await clock.advance(0.01)
    saved = await service.add_many([service.new_doc(user, f"new-{user}")
                                    for user in ("carol", "dave", "erin")])
    assert [n["title"] for n in saved] == ["new-carol", "new-dave", "new-erin"]
    assert [n["title"] for n in await service.list("carol")] == ["new-carol", "old2", "old1"]
    assert [n["title"] for n in await service.list("dave")] == ["new-dave"]
    assert await service.collection.count_documents({"user_id": "carol"}) == 3
    assert await service.add_many([]) == []


@pytest.mark.gen_test
async def test_add_many_counts_only_the_lists_its_saves_check(kpay_app):
    service = kpay_app.notifications
    service.check_every = 2**62  # none
    before = db_commands()
    await service.add_many([service.new_doc(f"u{n}", "标题") for n in range(50)])
    sent = commands_since(before)  # the app's own polls may add a find meanwhile
    assert (sent["insert"], sent.get("aggregate"), sent.get("delete")) == (1, None, None)
    service.check_every = 1  # all: one count of the 50 lists, no trim (none is full)
    before = db_commands()
    await service.add_many([service.new_doc(f"u{n}", "标题") for n in range(50)])
    sent = commands_since(before)
    assert (sent["insert"], sent.get("aggregate"), sent.get("delete")) == (1, 1, None)


@pytest.mark.gen_test
async def test_tell_users_saves_each_and_one_bad_item_stops_no_other(kpay_app, api, caplog):
    users = ["u1", "u2", "u3"]
    sockets = {}
    for user in users:
        sockets[user] = await api.socket(await api.login(user, "student"))
        assert (await sockets[user].request("sub", ch=f"user:{user}"))["ok"] is True
    kpay_app.dev = False  # dev mode re-raises the bad link after the others went out
    batch = [Told(user, "flower_delivered", {"n": n}) for n, user in enumerate(users)]
    batch[1] = Told("u2", "flower_delivered", {"n": 1, "link": "https://evil.example/"})
    with caplog.at_level(logging.ERROR):
        await kpay_app.tell_users(batch)
    for n, user in enumerate(users):
        assert (await sockets[user].event("flower_delivered"))["data"]["n"] == n
    assert (await sockets["u1"].event("notification"))["data"]["title"] == "鲜花已送达 0 束"
    assert (await sockets["u3"].event("notification"))["data"]["title"] == "鲜花已送达 2 束"
    assert [await kpay_app.notifications.unread_count(u) for u in users] == [1, 0, 1]
    assert "telling user u2 flower_delivered: saving the notification failed" in caplog.text
