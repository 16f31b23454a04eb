"""Benchmark: what each node of a Redis deployment receives, routed per channel (a node
subscribes only to the channels it has sockets on) against one pub/sub channel for
every event (kpay before the cluster view; docs/performance.md "Cluster routing").

    .venv/bin/python bench/cluster_routing.py [--nodes 4] [--channels 400] [--events 8000]

Set-up: a redis-server of its own on a free port and ``--nodes`` Redis brokers in this
process, node i listening to every ``--nodes``-th channel (its share of the rooms).
One node publishes ``--events`` events round-robin over the channels. The baseline in
the same run is a client PSUBSCRIBEd to every channel's pub/sub channel: what each
node received when all events went to one pub/sub channel. Reported per node: events
received against that baseline, and that every event reached exactly one node. Then
1,000 users per node join one room and its count (``broker.presence``) is read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import redis.asyncio as redis

from kpay.core.realtime.redis_broker import RedisBroker
from kpay.testing import running_redis_server


async def run(url: str, nodes: int, channels: int, events: int) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    brokers = []
    received = [0] * nodes
    for i in range(nodes):
        broker = RedisBroker(url, 0, 3600, prefix=prefix)
        broker.member = f"node{i}"
        broker.on_publication(lambda p, i=i: received.__setitem__(i, received[i] + 1))
        await broker.start()
        brokers.append(broker)
    names = [f"room:{c}" for c in range(channels)]
    for c, name in enumerate(names):
        await brokers[c % nodes].listen(name)
    # The baseline: one connection that hears every channel, as every node did before.
    client = redis.from_url(url)
    everything = client.pubsub(ignore_subscribe_messages=True)
    await everything.psubscribe(f"{prefix}ch:*")
    heard_all = 0

    async def count_all() -> None:
        nonlocal heard_all
        while True:
            message = await everything.get_message(timeout=None)
            if message and message["type"] == "pmessage":
                heard_all += 1

    counting = asyncio.get_running_loop().create_task(count_all())
    cpu, wall = time.process_time(), time.perf_counter()
    for e in range(events):
        await brokers[0].publish(names[e % channels], "m", {"e": e})
    for _ in range(600):  # up to 30 s for the last messages to arrive
        if sum(received) >= events and heard_all >= events:
            break
        await asyncio.sleep(0.05)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counting.cancel()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
          f" (1/5/15 min), {os.cpu_count()} cpus")
    print(f"{nodes} nodes, {channels} channels, {events} events published "
          f"({wall:.2f} s wall, {cpu:.2f} s CPU for publish and receive in this process)")
    print(f"{'node':<8}{'received':>10}{'one channel for all':>22}{'ratio':>8}")
    for i, count in enumerate(received):
        print(f"node{i:<4}{count:>10}{heard_all:>22}{count / heard_all:>8.2f}")
    total = sum(received)
    print(f"all nodes together received {total} (each event once: {total == events}); "
          f"one pub/sub channel: {heard_all * nodes} ({heard_all} x {nodes} nodes)")
    await everything.aclose()
    await client.aclose()
    await presence_reads(brokers)
    for broker in brokers:
        await broker.stop()


async def presence_reads(brokers: list[RedisBroker], users: int = 1000,
                         reads: int = 200) -> None:
    """The cost of a room count: ``users`` users on every node in one room (each node
    tallies them in one burst, written in one pipeline), then ``reads`` presence reads."""
    for n, broker in enumerate(brokers):
        for u in range(users):
            broker.tally("room:big", f"u{n}-{u}", 1)
        await broker.tallies.settled()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(reads):
        count = await brokers[0].presence("room:big")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert count == users * len(brokers)
    print(f"presence of a room with {count} users on {len(brokers)} nodes: "
          f"{wall / reads * 1e3:.2f} ms wall, {cpu / reads * 1e3:.2f} ms CPU per read "
          f"(one HLEN each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--channels", type=int, default=400)
    parser.add_argument("--events", type=int, default=8000)
    args = parser.parse_args()
    with running_redis_server() as url:
        asyncio.run(run(url, args.nodes, args.channels, args.events))


if __name__ == "__main__":
    main()
