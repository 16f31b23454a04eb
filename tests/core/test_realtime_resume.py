"""Resume after reconnect: ``sub`` with ``since`` replays what the socket missed."""

from __future__ import annotations

import pytest


@pytest.fixture
def kpay_overrides():
    return {"plugins": {"enabled": []}, "realtime": {"history_size": 5,
                                                     "history_ttl_seconds": 60}}


async def publish_many(app, channel, count):
    return [await app.publish(channel, "n", {"i": i}) for i in range(count)]


@pytest.mark.gen_test
async def test_resume_within_history_replays_in_order_then_goes_live(api, kpay_app):
    token = await api.login("alice")
    first = await api.socket(token)
    await first.request("sub", ch="user:alice")
    published = await publish_many(kpay_app, "user:alice", 2)
    last_seen = (await first.event("n"))["seq"]
    assert last_seen == published[0].seq
    first.close()
    published += await publish_many(kpay_app, "user:alice", 2)
    again = await api.socket(token)
    reply = await again.request("sub", ch="user:alice", since=last_seen)
    assert reply["ok"] is True and reply["recovered"] is True
    replayed = [await again.event("n") for _ in range(3)]
    assert [e["seq"] for e in replayed] == [p.seq for p in published[1:]]
    assert [e["data"]["i"] for e in replayed] == [1, 0, 1]
    live = await kpay_app.publish("user:alice", "live", {})
    assert (await again.event())["seq"] == live.seq == published[-1].seq + 1


@pytest.mark.gen_test
async def test_resume_from_the_latest_seq_is_recovered_with_nothing_to_replay(api, kpay_app):
    ws = await api.socket(await api.login("alice"))
    (last,) = await publish_many(kpay_app, "user:alice", 1)
    reply = await ws.request("sub", ch="user:alice", since=last.seq)
    assert reply["recovered"] is True
    await kpay_app.publish("user:alice", "next", {})
    assert (await ws.event())["type"] == "next"


@pytest.mark.gen_test
async def test_resume_beyond_history_size_is_not_recovered(api, kpay_app):
    ws = await api.socket(await api.login("alice"))
    published = await publish_many(kpay_app, "user:alice", 8)
    reply = await ws.request("sub", ch="user:alice", since=published[0].seq)
    assert reply["ok"] is True and reply["recovered"] is False
    # The five still kept are sent anyway, so the page can show what it can.
    kept = [(await ws.event("n"))["seq"] for _ in range(5)]
    assert kept == [p.seq for p in published[3:]]


@pytest.mark.gen_test
async def test_resume_after_history_aged_out_is_not_recovered(api, kpay_app):
    ws = await api.socket(await api.login("alice"))
    published = await publish_many(kpay_app, "user:alice", 3)
    kpay_app.clock.advance(120)
    reply = await ws.request("sub", ch="user:alice", since=published[0].seq)
    assert reply["recovered"] is False
    await kpay_app.publish("user:alice", "fresh", {})
    assert (await ws.event())["type"] == "fresh"


@pytest.mark.gen_test
async def test_resume_with_a_seq_from_an_unknown_past_is_not_recovered(api, kpay_app):
    ws = await api.socket(await api.login("alice"))
    reply = await ws.request("sub", ch="user:alice", since=3)
    assert reply["ok"] is True and reply["recovered"] is False
