"""Two nodes of two workers each (four processes: ``kpay serve --workers 2`` twice, on one
database and one redis-server): room counts and "online" across them, removing a
student from a room and closing a blocked user's page from another node, and each
periodic job run once per period across all four (docs/operations.md "Workers", "Job
leases"; docs/websocket.md "Presence across nodes").

One pair of servers serves the module; the tests run in file order.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.core.test_cli import KPAY, ROOT, clean_environ, free_port
from tests.core.test_workers import Served, next_event, wait_for

SECRET = "cluster-test-secret-" + "c" * 32
SWEEP_SECONDS = 2
SWEEP = "course_drip.unlock_sweep"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, redis_url, mongo_uri) -> Iterator[tuple[Served, Served]]:
    folder = tmp_path_factory.mktemp("cluster")
    database = f"kpay_cluster_{uuid.uuid4().hex[:8]}"
    prefix = f"tc{uuid.uuid4().hex[:8]}:"
    started: list[Served] = []
    try:
        for name in ("nodeA", "nodeB"):
            home = folder / name
            home.mkdir()
            config = home / "node.toml"
            config.write_text(f"""
[server]
workers = 2
node_id = "{name}"
shutdown_timeout_seconds = 5

[auth]
secret = "{SECRET}"

[mongodb]
uri = "{mongo_uri}"
database = "{database}"

[dev]
enabled = true

[plugins]
enabled = ["live_qa", "course_drip"]

[course_drip]
sweep_interval_seconds = {SWEEP_SECONDS}

[realtime]
broker = "redis"
redis_url = "{redis_url}"
redis_prefix = "{prefix}"
""")
            port = free_port()
            log = home / "serve.log"
            with open(log, "w") as out:
                process = subprocess.Popen(
                    [str(KPAY), "--config", str(config), "serve", "--port", str(port)],
                    cwd=ROOT, env=clean_environ(home), stdout=out, stderr=subprocess.STDOUT)
            started.append(Served(process, port, log))
        for served in started:
            wait_for(lambda s=served: "2 workers on port" in s.log.read_text(), 120,
                     "two workers")
        yield started[0], started[1]
    finally:
        for served in started:
            if served.process.poll() is None:
                workers = served.workers()
                served.process.kill()
                served.process.wait()
                for pid in workers:
                    subprocess.run(["kill", "-9", str(pid)])


def login(node: Served, user_id: str, role: str) -> str:
    return node.post("/api/v1/dev/login", {"user_id": user_id, "role": role})["token"]


def get(node: Served, path: str, token: str) -> Any:
    request = urllib.request.Request(node.url(path),
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def delete(node: Served, path: str, token: str) -> Any:
    request = urllib.request.Request(node.url(path), method="DELETE",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def subscribed(stack: contextlib.ExitStack, node: Served, token: str,
               channel: str) -> ClientConnection:
    ws = stack.enter_context(connect(f"ws://127.0.0.1:{node.port}/ws?token={token}",
                                     origin=f"http://127.0.0.1:{node.port}"))
    ws.send(json.dumps({"op": "sub", "ref": 1, "ch": channel}))
    reply = json.loads(ws.recv(10))
    assert reply.get("ok") is True, reply
    return ws


def presence_count(ws: ClientConnection, wanted: int) -> None:
    """Read presence events until the room count is ``wanted``."""
    deadline = time.monotonic() + 20
    count = None
    while time.monotonic() < deadline:
        count = next_event(ws, "presence")["data"]["count"]
        if count == wanted:
            return
    raise AssertionError(f"room count {count}, not {wanted}")


def closed_with(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):
        while time.monotonic() < deadline:
            ws.recv(max(0.1, deadline - time.monotonic()))
    return ws.close_code


def test_room_count_online_removal_and_block_across_nodes(nodes):
    a, b = nodes
    host = login(a, "host", "consultant")
    room = a.post("/api/v1/rooms", {"title": "跨节点", "ticket_price": 0,
                                    "question_min_price": 0}, host)["room"]
    a.post(f"/api/v1/rooms/{room['id']}/start", {}, host)
    channel = f"room:{room['id']}"
    students = {name: login(b, name, "student") for name in ("s0", "s1")}
    admin = login(a, "root", "admin")
    for token in students.values():
        order = b.post("/api/v1/orders", {"item": {"kind": "live_ticket",
                                                   "room_id": room["id"]},
                                          "channel": "wallet"}, token)
        assert order["order"]["status"] == "fulfilled", order
    with contextlib.ExitStack() as stack:
        host_ws = subscribed(stack, a, host, channel)
        joined = {name: subscribed(stack, b, token, channel)
                  for name, token in students.items()}
        own = subscribed(stack, b, students["s1"], "user:s1")
        # The host's socket is on node a; the students' on node b: all three counted.
        presence_count(host_ws, 3)
        assert get(a, "/api/v1/admin/users/s1", admin)["user"]["online"] is True
        assert get(a, "/api/v1/admin/users/s0", admin)["user"]["online"] is False

        # The host removes s0 through node a; s0's socket on node b is unsubscribed.
        delete(a, f"/api/v1/rooms/{room['id']}/members/s0", host)
        deadline = time.monotonic() + 10
        while (frame := json.loads(joined["s0"].recv(
                max(0.1, deadline - time.monotonic()))))["op"] != "unsubscribed":
            pass
        assert frame["reason"] == "removed_by_host"
        presence_count(host_ws, 2)

        # An admin blocks s1 through node a: s1's page on node b is closed at once.
        a.post("/api/v1/admin/users/s1/block", {}, admin)
        assert closed_with(own) == 4401
        wait_for(lambda: get(a, "/api/v1/admin/users/s1", admin)["user"]["online"] is False,
                 20, "s1 offline")


def sweep_runs(node: Served) -> int:
    found = re.search(r'kpay_job_runs_total\{job="' + re.escape(SWEEP)
                      + r'",outcome="ok"\} ([0-9.e+]+)', node.get("/metrics"))
    return int(float(found.group(1))) if found else 0


def test_a_periodic_job_runs_once_per_period_across_four_workers(nodes):
    a, b = nodes
    # Every worker schedules the sweep every 2 s; the lease lets one run per period.
    assert len(a.workers()) == 2 and len(b.workers()) == 2
    before = sweep_runs(a) + sweep_runs(b)
    window = 12 * SWEEP_SECONDS
    time.sleep(window)
    runs = sweep_runs(a) + sweep_runs(b) - before
    periods = window / SWEEP_SECONDS
    # Without the lease the four workers would run it about 4 * periods times.
    assert periods / 2 <= runs <= periods + 2, (runs, periods)
