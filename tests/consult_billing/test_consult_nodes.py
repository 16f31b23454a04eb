"""Presence across two nodes of one deployment (Redis broker, one database)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from consult_helpers import (
    join,
    ledger_minutes,
    make_pair,
    request,
    state,
    wait_for_state,
)

from kpay.testing import ApiClient, assert_books_balanced, wait_until
from plugins.consult_billing import engine_for
from plugins.consult_billing.nodes import NODES


@pytest.fixture
def kpay_overrides(redis_url):
    return {"plugins": {"enabled": ["consult_billing"]},
            "realtime": {"broker": "redis", "redis_url": redis_url,
                         "redis_prefix": f"t{uuid.uuid4().hex[:8]}:"},
            # Nodes beat every 5/6 s (the scheduler is off in tests: the beat is not a job).
            "consult_billing": {"node_timeout_seconds": 5}}


def member(app):
    """The name this app's process records presence under (``<node_id>#<token>``)."""
    return engine_for(app).nodes.member


async def database_now(app):
    """The database server's clock, which node records' ``seen_at`` are judged on."""
    return await engine_for(app).nodes.server_now()


async def accepted(api, pair):
    status, body = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200, body
    assert body["consultation"]["absent_since"] is None, body
    return body["consultation"]


async def present_on(app, pair):
    doc = await app.store["consultations"].find_one({"_id": pair.consultation_id})
    return {party: sorted(nodes) for party, nodes in doc["present_on"].items()}


async def until_present_on(app, pair, party, nodes):
    """Socket effects are asynchronous: poll until ``party`` is on exactly ``nodes``."""
    async def there() -> bool:
        return (await present_on(app, pair))[party] == sorted(nodes)

    await wait_until(there, message=f"{party} never on {nodes}")


@pytest.mark.gen_test(timeout=60)
async def test_a_party_on_two_nodes_stays_present_when_one_socket_leaves(
        api, kpay_app, second_node):
    on_b = ApiClient(second_node)
    pair = await make_pair(api, rate=100, wallet=10_000)
    await request(api, pair)
    student_a = await join(api, pair.student, pair)
    student_b = await join(on_b, pair.student, pair)
    consultant_b = await join(on_b, pair.consultant, pair)
    await wait_for_state(api, pair, lambda b: all(b["present"].values()))
    await accepted(api, pair)
    assert await present_on(kpay_app, pair) == {
        "student": sorted([member(kpay_app), member(second_node)]),
        "consultant": [member(second_node)]}
    # The phone on node A drops; the laptop on node B is still there.
    student_a.close()
    await until_present_on(kpay_app, pair, "student", [member(second_node)])
    body = await state(api, pair)
    assert body["present"] == {"student": True, "consultant": True}
    assert body["absent_since"] is None
    await kpay_app.advance_clock(2 * 60)
    body = await state(api, pair)
    assert (body["status"], body["billed_minutes"]) == ("active", 3)
    # A tick published by node A's engine reaches the socket on node B.
    ticks = [(await student_b.event("tick"))["data"]["minute"] for _ in range(3)]
    assert ticks == [1, 2, 3]
    # Now the last socket leaves: absent, then paused after the grace.
    student_b.close()
    await wait_for_state(api, pair,
                     lambda b: not b["present"]["student"] and b["absent_since"] is not None)
    await kpay_app.advance_clock(60)
    body = await wait_for_state(api, pair, lambda b: b["status"] == "paused")
    assert body["billed_minutes"] == 3
    consultant_b.close()
    await assert_books_balanced(kpay_app)


async def student_here_consultant_there(api, second_node):
    """A running session: the student's socket on node A, the consultant's on node B."""
    pair = await make_pair(api, rate=100, wallet=10_000)
    await request(api, pair)
    await join(api, pair.student, pair)
    await join(ApiClient(second_node), pair.consultant, pair)
    await wait_for_state(api, pair, lambda b: all(b["present"].values()))
    await accepted(api, pair)
    return pair


@pytest.mark.gen_test(timeout=60)
async def test_a_node_that_stops_takes_its_parties_with_it(api, kpay_app, second_node):
    pair = await student_here_consultant_there(api, second_node)
    await second_node.stop()
    body = await wait_for_state(
        api, pair, lambda b: not b["present"]["consultant"] and b["absent_since"] is not None)
    assert body["status"] == "active"
    await kpay_app.advance_clock(60)
    body = await wait_for_state(api, pair, lambda b: b["status"] == "paused")
    assert body["billed_minutes"] == 1
    # Its record is gone, and stays gone: its heartbeat stopped before it left.
    await asyncio.sleep(1.5)  # longer than a beat interval here (5/6 s)
    assert await kpay_app.store[NODES].count_documents({"node": second_node.node_id}) == 0
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("beat_at, absent_at", [(20, 20), (-600, 0)])
async def test_a_silent_node_is_taken_as_gone(api, kpay_app, second_node, beat_at, absent_at):
    pair = await student_here_consultant_there(api, second_node)
    accepted_at = datetime.fromisoformat((await state(api, pair))["accepted_at"])
    # The consultant's node dies without a goodbye: its entry stays in present_on and
    # its last beat (``beat_at`` s into the session) ages past the timeout. The party is
    # absent from that beat, but never from before the session began.
    sessions, nodes = kpay_app.store["consultations"], kpay_app.store[NODES]
    await sessions.update_one({"_id": pair.consultation_id},
                              {"$set": {"present_on.consultant": ["ghost#1"]}})
    timeout = kpay_app.settings.consult_billing.node_timeout_seconds
    last_beat = accepted_at + timedelta(seconds=beat_at)
    long_ago = await database_now(kpay_app) - timedelta(seconds=timeout + 60)
    await nodes.insert_one({"_id": "ghost#1", "node": "ghost", "clock_at": last_beat,
                            "seen_at": long_ago})
    await kpay_app.advance_clock(30)  # runs node A's jobs, the node check among them
    body = await state(api, pair)
    assert body["present"] == {"student": True, "consultant": False}
    absent_since = accepted_at + timedelta(seconds=absent_at)
    assert datetime.fromisoformat(body["absent_since"]) == absent_since
    assert await nodes.find_one({"_id": "ghost#1"}) is None
    # Live nodes are not touched.
    assert {doc["_id"] async for doc in nodes.find({})} == {member(kpay_app),
                                                           member(second_node)}
    # Past the grace the meter pauses as of then: minute 2 is not charged.
    await kpay_app.advance_clock(60)
    body = await state(api, pair)
    assert (body["status"], body["billed_minutes"]) == ("paused", 1)
    assert body["remaining_seconds"] == 60 - absent_at
    assert len(await ledger_minutes(kpay_app, pair.consultation_id)) == 1
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=30)
async def test_nodes_beat_without_their_scheduler(kpay_app, second_node):
    nodes = kpay_app.store[NODES]
    first = {doc["_id"]: doc["seen_at"] async for doc in nodes.find({})}
    assert set(first) == {member(kpay_app), member(second_node)}
    for _ in range(100):
        later = {doc["_id"]: doc["seen_at"] async for doc in nodes.find({})}
        if all(later[node] > first[node] for node in first):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new heartbeat in 10 s: {first} -> {later}")


@pytest.mark.gen_test(timeout=60)
async def test_a_live_node_taken_as_gone_joins_again(api, kpay_app, second_node):
    pair = await student_here_consultant_there(api, second_node)
    old = member(second_node)
    # Node B was cut off from the database for longer than the timeout, but lives on.
    timeout = kpay_app.settings.consult_billing.node_timeout_seconds
    await kpay_app.store[NODES].update_one(
        {"_id": old},
        {"$set": {"seen_at": await database_now(kpay_app) - timedelta(seconds=timeout + 5)}})
    await kpay_app.advance_clock(0)  # node A's node check takes B as gone
    body = await state(api, pair)
    assert body["present"]["consultant"] is False and body["absent_since"] is not None
    # B's next beat finds it was taken as gone, joins under a new name and records its
    # sockets again: the consultant is back, within the grace.
    body = await wait_for_state(api, pair, lambda b: b["present"]["consultant"]
                            and b["absent_since"] is None, timeout=10)
    assert body["status"] == "active"
    assert member(second_node) != old
    assert (await present_on(kpay_app, pair))["consultant"] == [member(second_node)]
    await kpay_app.advance_clock(60)
    assert (await state(api, pair))["billed_minutes"] == 2
    await assert_books_balanced(kpay_app)


def configured(deployment, node_id=None):
    """Another app of the deployment, not started (``node_id``: its configured name)."""
    settings = deployment.settings
    if node_id is not None:
        settings = settings.replace("server", node_id=node_id)
    return deployment.new_app(settings)


async def started(deployment, node_id=None):
    app = configured(deployment, node_id)
    await app.start()
    return app


@pytest.mark.gen_test(timeout=60)
async def test_a_node_starting_leaves_the_others_sessions_alone(api, kpay_app, kpay_settings):
    # Accepted before the consultant joined: absent, within the grace.
    pair = await make_pair(api, rate=100, wallet=10_000)
    await request(api, pair)
    await join(api, pair.student, pair)
    await wait_for_state(api, pair, lambda b: b["present"]["student"])
    status, _ = await api.post(pair.path + "/accept", token=pair.consultant.token)
    assert status == 200
    before = await kpay_app.store["consultations"].find_one({"_id": pair.consultation_id})
    third = await started(kpay_settings)
    try:
        after = await kpay_app.store["consultations"].find_one({"_id": pair.consultation_id})
        assert after == before
    finally:
        await third.stop()


@pytest.mark.gen_test(timeout=60)
async def test_a_restart_recovers_what_the_killed_process_left(api, kpay_app, kpay_settings):
    pair = await student_here_consultant_there(api, kpay_app)
    accepted_at = datetime.fromisoformat((await state(api, pair))["accepted_at"])
    # A process of node "n1" was killed 20 s into the session with the student on it;
    # the consultant is still on node A.
    last_beat = accepted_at + timedelta(seconds=20)
    await kpay_app.store[NODES].insert_one({"_id": "n1#dead", "node": "n1",
                                            "clock_at": last_beat,
                                            "seen_at": await database_now(kpay_app)})
    await kpay_app.store["consultations"].update_one(
        {"_id": pair.consultation_id}, {"$set": {"present_on.student": ["n1#dead"]}})
    await kpay_app.advance_clock(30)
    # n1 restarts (before the timeout, so only it can know its earlier process died).
    restarted = await started(kpay_settings, node_id="n1")
    try:
        body = await state(api, pair)
        assert (body["status"], body["billed_minutes"]) == ("paused", 1)
        assert datetime.fromisoformat(body["paused_at"]) == last_beat
        assert body["remaining_seconds"] == 40
        assert await kpay_app.store[NODES].find_one({"_id": "n1#dead"}) is None
    finally:
        await restarted.stop()
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_a_member_without_a_record_is_taken_out(api, kpay_app, second_node):
    # A write that landed under a name already taken as gone (a slow node's late
    # write): no record backs it, so the node check takes it out, from now.
    pair = await student_here_consultant_there(api, second_node)
    accepted_at = datetime.fromisoformat((await state(api, pair))["accepted_at"])
    await kpay_app.store["consultations"].update_one(
        {"_id": pair.consultation_id}, {"$set": {"present_on.consultant": ["late#1"]}})
    assert (await state(api, pair))["present"]["consultant"] is True
    await kpay_app.advance_clock(10)
    body = await state(api, pair)
    assert body["present"]["consultant"] is False
    assert datetime.fromisoformat(body["absent_since"]) >= accepted_at + timedelta(seconds=10)
    await assert_books_balanced(kpay_app)


@pytest.mark.gen_test(timeout=60)
async def test_a_second_start_on_a_port_in_use_changes_nothing(api, kpay_app, kpay_settings):
    pair = await student_here_consultant_there(api, kpay_app)
    before = await kpay_app.store["consultations"].find_one({"_id": pair.consultation_id})
    twin = configured(kpay_settings, node_id=kpay_app.node_id)  # a double start
    with pytest.raises(OSError):
        await twin.start(port=kpay_app.port)
    await twin.store.close()
    after = await kpay_app.store["consultations"].find_one({"_id": pair.consultation_id})
    assert after == before
    assert await kpay_app.store[NODES].find_one({"_id": member(kpay_app)}) is not None
