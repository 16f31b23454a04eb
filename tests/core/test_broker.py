"""Broker conformance: every broker gives the guarantees stated in broker.py.

One suite, run against the in-memory broker and against the Redis broker on a real
redis-server (started by the ``redis_url`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from kpay.core.realtime.broker import Broker, MemoryBroker
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


@pytest.fixture
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


pytestmark = pytest.mark.parametrize("make_broker", BROKERS, indirect=True)


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
