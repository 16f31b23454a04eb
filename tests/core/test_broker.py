"""Broker conformance: every broker gives the guarantees stated in broker.py.

One suite, run against the in-memory broker and against the Redis broker on a real
redis-server (started by the ``redis_url`` fixture): every test that takes
``make_broker`` runs once per broker. The memory broker's own bounds (all channels
together, idle channels) follow at the end.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from kpay.core.realtime import broker as broker_module
from kpay.core.realtime.broker import SOCKETS, Broker, MemoryBroker
from kpay.core.realtime.hub import Hub
from kpay.core.realtime.protocol import Publication
from kpay.core.realtime.redis_broker import RedisBroker

BROKERS = ["memory", "redis"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Stands in for a node's hub: keeps every publication handed to it."""

    def __init__(self) -> None:
        self.seen: list[Publication] = []

    def __call__(self, publication: Publication) -> None:
        self.seen.append(publication)

    async def wait_for(self, count: int) -> list[Publication]:
        for _ in range(500):
            if len(self.seen) >= count:
                return self.seen
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(self.seen)} publications delivered, expected {count}")


@pytest.fixture(params=BROKERS)
def make_broker(request, io_loop):
    """``make(history_size=, history_ttl=, clock=, prefix=)`` -> a started broker."""
    kind = request.param
    started: list[Broker] = []
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    async def make(history_size=100, history_ttl=3600, clock=None, prefix=prefix):
        clock = clock or FakeClock()
        if kind == "redis":
            broker: Broker = RedisBroker(redis_url, history_size, history_ttl, clock,
                                         prefix=prefix)
        else:
            broker = MemoryBroker(history_size, history_ttl, clock)
        await broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        io_loop.run_sync(broker.stop)


@pytest.mark.gen_test
async def test_seq_grows_by_one_per_channel(make_broker):
    broker = await make_broker()
    a = [await broker.publish("room:a", "m", {"i": i}) for i in range(3)]
    await broker.publish("room:b", "m", {})
    after = await broker.publish("room:a", "m", {})
    assert [p.seq for p in a] == [a[0].seq, a[0].seq + 1, a[0].seq + 2]
    # Another channel's publications do not use up this channel's numbers.
    assert after.seq == a[2].seq + 1


@pytest.mark.gen_test
async def test_concurrent_publishes_get_distinct_consecutive_seqs(make_broker):
    broker = await make_broker()
    published = await asyncio.gather(*(broker.publish("room:c", "m", {"i": i})
                                       for i in range(40)))
    seqs = sorted(p.seq for p in published)
    assert seqs == list(range(seqs[0], seqs[0] + 40))


@pytest.mark.gen_test
async def test_every_publication_reaches_the_hub_once_in_seq_order(make_broker):
    broker = await make_broker()
    seen = Recorder()
    broker.on_publication(seen)
    await broker.listen("room:d")
    published = [await broker.publish("room:d", "msg", {"i": i, "text": "ü"}) for i in range(5)]
    delivered = await seen.wait_for(5)
    await asyncio.sleep(0.05)
    assert len(seen.seen) == 5
    assert [p.seq for p in delivered] == [p.seq for p in published]
    assert [(p.type, p.data) for p in delivered] == [("msg", {"i": i, "text": "ü"})
                                                       for i in range(5)]


@pytest.mark.gen_test
async def test_frame_is_the_event_as_one_text_frame(make_broker):
    broker = await make_broker()
    seen = Recorder()
    broker.on_publication(seen)
    await broker.listen("room:e")
    published = await broker.publish("room:e", "message", {"text": "hi"})
    (delivered,) = await seen.wait_for(1)
    for publication in (published, delivered):
        frame = publication.frame
        assert frame[0] == 0x81 and frame[1] == len(frame) - 2
        assert json.loads(frame[2:]) == {"op": "event", "ch": "room:e", "seq": published.seq,
                                         "type": "message", "data": {"text": "hi"}}


@pytest.mark.gen_test
async def test_history_after_since_is_recovered(make_broker):
    broker = await make_broker()
    published = [await broker.publish("room:f", "m", {"i": i}) for i in range(5)]
    result = await broker.history("room:f", published[1].seq)
    assert result.recovered is True
    assert result.top == published[-1].seq
    assert [p.seq for p in result.publications] == [p.seq for p in published[2:]]
    assert [p.data for p in result.publications] == [{"i": 2}, {"i": 3}, {"i": 4}]


@pytest.mark.gen_test
async def test_since_equal_to_top_is_recovered_and_empty(make_broker):
    broker = await make_broker()
    last = await broker.publish("room:g", "m", {})
    result = await broker.history("room:g", last.seq)
    assert result.recovered is True and result.publications == []


@pytest.mark.gen_test
async def test_since_before_the_kept_history_is_not_recovered(make_broker):
    broker = await make_broker(history_size=3)
    published = [await broker.publish("room:h", "m", {"i": i}) for i in range(6)]
    result = await broker.history("room:h", published[0].seq)
    assert result.recovered is False
    # What is still kept is handed back anyway, oldest first.
    assert [p.seq for p in result.publications] == [p.seq for p in published[3:]]
    exact = await broker.history("room:h", published[2].seq)
    assert exact.recovered is True and len(exact.publications) == 3


@pytest.mark.gen_test
async def test_history_older_than_ttl_is_dropped(make_broker):
    clock = FakeClock()
    broker = await make_broker(history_ttl=60, clock=clock)
    old = await broker.publish("room:i", "m", {"i": 0})
    clock.now += 120
    new = await broker.publish("room:i", "m", {"i": 1})
    result = await broker.history("room:i", old.seq - 1)
    assert result.recovered is False
    assert [p.seq for p in result.publications] == [new.seq]
    assert (await broker.history("room:i", old.seq)).recovered is True
    clock.now += 120
    gone = await broker.history("room:i", old.seq)
    assert gone.recovered is False and gone.publications == []


@pytest.mark.gen_test
async def test_no_history_kept_when_size_is_zero(make_broker):
    broker = await make_broker(history_size=0)
    first = await broker.publish("room:j", "m", {})
    await broker.publish("room:j", "m", {})
    result = await broker.history("room:j", first.seq)
    assert result.recovered is False and result.publications == []


@pytest.mark.gen_test
async def test_unknown_channel_and_future_seq_are_not_recovered(make_broker):
    broker = await make_broker()
    assert (await broker.history("room:never", 0)).recovered is False
    last = await broker.publish("room:k", "m", {})
    assert (await broker.history("room:k", last.seq + 5)).recovered is False


@pytest.mark.gen_test
async def test_a_fresh_broker_never_reuses_a_seq(make_broker):
    first = await make_broker()
    old = [await first.publish("room:l", "m", {}) for _ in range(3)]
    await first.stop()
    await asyncio.sleep(0.002)
    second = await make_broker()
    new = await second.publish("room:l", "m", {})
    assert new.seq > old[-1].seq
    assert (await second.history("room:l", old[0].seq)).recovered is False or \
        new.seq == old[-1].seq + 1


# -- the cluster view: presence, sockets per user, control messages ---------------
# (Two nodes on one Redis: tests/core/test_cluster.py.)


@pytest.mark.gen_test
async def test_presence_counts_users_with_a_socket(make_broker):
    broker = await make_broker()
    broker.tally("room:p", "alice", 2)
    broker.tally("room:p", "bob", 1)
    broker.tally("room:other", "carol", 1)
    assert await broker.presence("room:p") == 2
    assert await broker.is_present("room:p", "alice")
    assert not await broker.is_present("room:p", "carol")
    broker.tally("room:p", "alice", 1)  # one of her two sockets left: still there
    assert await broker.is_present("room:p", "alice")
    broker.tally("room:p", "alice", 0)
    assert await broker.presence("room:p") == 1
    assert not await broker.is_present("room:p", "alice")
    broker.tally("room:p", "bob", 0)
    assert await broker.presence("room:p") == 0
    assert await broker.presence("room:never") == 0


@pytest.mark.gen_test
async def test_sockets_of_a_user_are_their_socket_tally(make_broker):
    broker = await make_broker()
    assert await broker.sockets_of("alice") == 0
    broker.tally(SOCKETS, "alice", 3)
    broker.tally("room:p", "alice", 1)  # a subscription is not a socket
    assert await broker.sockets_of("alice") == 3
    broker.tally(SOCKETS, "alice", 0)
    assert await broker.sockets_of("alice") == 0


@pytest.mark.gen_test
async def test_a_command_reaches_the_node_with_its_sender(make_broker):
    broker = await make_broker()
    received = []
    broker.on_command(lambda name, args, origin: received.append((name, args, origin)))
    args = {"channel": "room:q", "user_id": "bob", "reason": "removed_by_host"}
    await broker.command("remove_user", args)
    for _ in range(200):
        if received:
            break
        await asyncio.sleep(0.01)
    assert received == [("remove_user", args, broker.member)]


# -- the memory broker's bounds across channels ------------------------------------


class Connection:
    """A socket as the hub sees it, enough to subscribe."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    def send_frame(self, frame: bytes) -> bool:
        return True

    def end_subscription(self, channel: str, reason: str) -> None:
        pass


def kept_size(broker: MemoryBroker) -> int:
    """What the broker's history holds, counted from the channels themselves."""
    return sum(broker_module.approximate_size(p) for state in broker._channels.values()
               for p in state.history)


@pytest.mark.gen_test
async def test_total_history_bound_holds_across_many_channels():
    clock = FakeClock()
    budget = 200_000
    broker = MemoryBroker(100, 3600, clock, history_total_bytes=budget)
    await broker.start()
    try:
        text = "x" * 150
        last = {}
        for _ in range(5):
            for i in range(1000):
                last[i] = await broker.publish(f"room:{i}", "m", {"i": i, "text": text})
                assert broker.kept_bytes <= budget
            clock.now += 1
        # 5000 publications of ~600 counted bytes each: far over the budget, yet the
        # history of all channels together stays under it, and the accounting is exact.
        assert broker.kept_bytes == kept_size(broker) <= budget
        assert 0 < broker.kept_publications < 5000
        # The oldest went first, whatever their channel: the newest are all still kept.
        result = await broker.history("room:999", last[999].seq - 1)
        assert result.recovered is True and [p.seq for p in result.publications] == [
            last[999].seq]
        early = await broker.history("room:0", last[0].seq - 5)
        assert early.recovered is False and early.top == last[0].seq
        # Still one seq per channel publication, evictions or not.
        assert (await broker.publish("room:0", "m", {})).seq == last[0].seq + 1
    finally:
        await broker.stop()


@pytest.mark.gen_test
async def test_resume_past_an_evicted_publication_is_not_recovered():
    clock = FakeClock()
    broker = MemoryBroker(100, 3600, clock, history_total_bytes=20_000)
    first = [await broker.publish("room:quiet", "m", {"i": i}) for i in range(3)]
    # Busy channels push the quiet channel's first event out of the shared budget.
    while True:
        await broker.publish("room:busy", "m", {"text": "y" * 200})
        kept = (await broker.history("room:quiet", first[0].seq - 1)).publications
        if len(kept) < 3:
            break
    assert [p.seq for p in kept] == [p.seq for p in first[1:]]
    # From before the evicted event: the "history gone" answer, with what is kept.
    gone = await broker.history("room:quiet", first[0].seq - 1)
    assert gone.recovered is False and gone.top == first[-1].seq
    assert [p.data for p in gone.publications] == [{"i": 1}, {"i": 2}]
    # From the evicted event itself (the client saw it): nothing is missing.
    exact = await broker.history("room:quiet", first[0].seq)
    assert exact.recovered is True and [p.seq for p in exact.publications] == [
        first[1].seq, first[2].seq]
    # Once everything of the channel is evicted, only an up-to-date client recovers.
    for _ in range(200):
        await broker.publish("room:busy", "m", {"text": "y" * 200})
    assert (await broker.history("room:quiet", first[1].seq)).recovered is False
    up_to_date = await broker.history("room:quiet", first[2].seq)
    assert up_to_date.recovered is True and up_to_date.publications == []


@pytest.mark.gen_test
async def test_idle_channels_are_dropped_by_an_amortised_cleanup():
    clock = FakeClock()
    hub = Hub()
    broker = MemoryBroker(100, 60, clock)
    broker.on_publication(hub.deliver)
    hub.subscribe("room:watched", Connection("u1"))
    old = {}
    for i in range(500):
        old[i] = await broker.publish(f"room:{i}", "m", {"i": i})
    for _ in range(3):
        old[0] = await broker.publish("room:0", "m", {"i": 0})
    watched = await broker.publish("room:watched", "m", {})
    assert broker.channel_count == 501
    clock.now += 30
    await broker.publish("room:recent", "m", {})
    clock.now += 31
    # 61 s later: every channel with no event and no subscriber for 60 s is gone; the
    # one with a subscriber and the one published on 31 s ago stay.
    await broker.publish("room:new", "m", {})
    assert set(broker._channels) == {"room:watched", "room:recent", "room:new"}
    assert broker.kept_publications == 2 and broker.kept_bytes == kept_size(broker)
    # The next cleanups look at nothing that is not due: counted through the hub check.
    looked = []
    broker._listening = lambda channel: looked.append(channel) or channel == "room:watched"
    assert broker.cleanup_interval == 6.0
    for _ in range(4):  # 24 s more: room:recent is not idle yet, room:watched not due
        clock.now += broker.cleanup_interval
        await broker.publish("room:new", "m", {})
    assert looked == []
    clock.now += 59
    # Due now: room:recent (dropped) and room:watched (subscribed: kept); not room:new.
    assert broker.cleanup() == 1
    assert looked == ["room:recent", "room:watched"]
    assert "room:watched" in broker._channels and "room:recent" not in broker._channels

    # A dropped channel answers "history gone", never events from another life of it.
    result = await broker.history("room:7", old[7].seq - 1)
    assert result.recovered is False and result.publications == []
    again = await broker.publish("room:7", "m", {"i": "again"})
    assert again.seq > max(p.seq for p in old.values())
    resumed = await broker.history("room:7", old[7].seq)
    assert resumed.recovered is False and resumed.publications[0].seq == again.seq
    # The subscribed channel kept its numbering: its subscribers see no gap.
    assert (await broker.publish("room:watched", "m", {})).seq == watched.seq + 1


@pytest.mark.gen_test
async def test_a_quiet_broker_cleans_up_on_its_own():
    clock = FakeClock()
    broker = MemoryBroker(100, 10, clock)
    await broker.start()
    try:
        await broker.publish("room:a", "m", {})
        assert broker.cleanup_interval == 1.0
        clock.now += 11
        # Nothing is published or read any more: the background task (every
        # cleanup_interval, here 1 s) drops the channel all the same.
        for _ in range(60):
            if broker.channel_count == 0:
                break
            await asyncio.sleep(0.05)
        assert broker.channel_count == 0 and broker.kept_bytes == 0
    finally:
        await broker.stop()
