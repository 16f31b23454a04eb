"""``kpay serve --workers 2``: a real supervisor with two worker processes on one port,
the embedded database (started once, by the supervisor) and a redis-server.

One server serves the whole module; the tests run in file order and the last ones
kill a worker, replace both (SIGHUP) and stop the server (SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.core.test_cli import KPAY, ROOT, clean_environ, free_port


class Served:
    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=10) as response:
            body = response.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def post(self, path: str, body: dict, token: str = "") -> Any:
        request = urllib.request.Request(
            self.url(path), json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def workers(self) -> dict[int, str]:
        """pid -> slot of the supervisor's live worker processes."""
        found = subprocess.run(["pgrep", "-a", "-P", str(self.process.pid)],
                               capture_output=True, text=True).stdout
        return {int(line.split()[0]): re.search(r"--slot (\d+)", line).group(1)
                for line in found.splitlines() if "kpay.core.workers" in line}

    def nodes(self, tries: int = 60) -> set[str]:
        """The nodes seen answering /healthz in ``tries`` requests."""
        return {self.get("/healthz")["node"] for _ in range(tries)}


def wait_for(condition: Any, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or condition}")


@pytest.fixture(scope="module")
def served(tmp_path_factory, redis_url) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("workers")
    config = folder / "workers.toml"
    # No [mongodb] uri: the embedded database, in its own folder.
    config.write_text(f"""
[server]
workers = 2
shutdown_timeout_seconds = 5

[mongodb]
embedded_path = "{folder / 'db'}"

[dev]
enabled = true

[realtime]
broker = "redis"
redis_url = "{redis_url}"
redis_prefix = "tw{uuid.uuid4().hex[:8]}:"
""")
    port = free_port()
    log = folder / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(KPAY), "--config", str(config), "serve", "--port",
                                    str(port)], cwd=ROOT, env=clean_environ(folder),
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Served(process, port, log)
    try:
        wait_for(lambda: "2 workers on port" in log.read_text(), 120, "two workers")
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            for pid in server.workers():
                subprocess.run(["kill", "-9", str(pid)])


def test_more_than_one_worker_needs_the_redis_broker(tmp_path):
    result = subprocess.run([sys.executable, "server.py", "--workers", "2", "--port", "0"],
                            cwd=ROOT, env=clean_environ(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "[server] workers = 2 needs [realtime] broker" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "257", '"many"', "true"])
def test_a_bad_worker_count_is_named(tmp_path, value):
    config = tmp_path / "bad.toml"
    config.write_text(f"[server]\nworkers = {value}\n")
    result = subprocess.run([str(KPAY), "--config", str(config), "serve"], cwd=ROOT,
                            env=clean_environ(tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert '[server] workers: Value error, a number from 1 to 256, or "auto"' in result.stderr


@pytest.mark.parametrize("value", ["²", "0", "257", " 2"])
def test_a_bad_workers_option_is_named(tmp_path, value):
    # "²" passes str.isdigit() but not int(): it is named like any other bad count.
    result = subprocess.run([str(KPAY), "serve", "--workers", value], cwd=ROOT,
                            env=clean_environ(tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "--workers: a number from 1 to 256, or auto" in result.stderr, result.stderr


def test_both_workers_answer_and_metrics_sum_them(served):
    assert len(served.workers()) == 2
    before = healthz_count(served.get("/metrics"))
    # The kernel hands each connection to either worker, not in turns: ask until both
    # answered (a quiet worker can take many in a row).
    nodes: set[str] = set()
    asked = 0
    while len(nodes) < 2 and asked < 800:
        nodes |= served.nodes(40)
        asked += 40
    # Worker i is node <node_id>/w<i>: two nodes, one port.
    assert {node.rsplit("/", 1)[1] for node in nodes} == {"w0", "w1"}
    assert len({node.rsplit("/", 1)[0] for node in nodes}) == 1
    # Whichever worker answers /metrics counts the requests both served.
    assert healthz_count(served.get("/metrics")) - before == asked


def healthz_count(metrics: str) -> int:
    found = re.search(r'kpay_http_requests_total\{method="GET",route="/healthz",'
                      r'status="200"\} ([0-9.e+]+)', metrics)
    return int(float(found.group(1))) if found else 0


def test_an_event_published_in_one_worker_reaches_sockets_in_the_other(served):
    token = served.post("/api/v1/dev/login", {"user_id": "host1", "role": "consultant"})["token"]
    room = served.post("/api/v1/rooms", {"title": "workers", "ticket_price": 0,
                                         "question_min_price": 0}, token)["room"]
    channel = f"room:{room['id']}"
    sockets = []
    with contextlib.ExitStack() as stack:
        # Sockets until both workers hold some (the kernel hands each accept to either).
        for _ in range(40):
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{served.port}/ws?token={token}",
                                             origin=f"http://127.0.0.1:{served.port}"))
            ws.send(json.dumps({"op": "sub", "ref": 1, "ch": channel}))
            assert json.loads(ws.recv(10))["ok"] is True
            sockets.append(ws)
            held = {}
            for _ in range(20):
                health = served.get("/healthz")
                held[health["node"]] = health["sockets"]
            if len(held) == 2 and all(held.values()):
                break
        assert len(held) == 2 and all(held.values()), held
        # One worker takes the request and publishes; every socket, on both, gets it.
        served.post(f"/api/v1/rooms/{room['id']}/start", {}, token)
        for ws in sockets:
            assert next_event(ws, "room_state")["ch"] == channel


def next_event(ws: Any, kind: str) -> dict:
    """The next event of ``kind`` (presence events come and go meanwhile)."""
    deadline = time.monotonic() + 10
    while True:
        frame = json.loads(ws.recv(max(0.1, deadline - time.monotonic())))
        if frame.get("type") == kind:
            return frame


def test_a_killed_worker_is_restarted_in_its_slot(served):
    before = served.workers()
    pid, slot = next(iter(before.items()))
    subprocess.run(["kill", "-9", str(pid)], check=True)
    after = wait_for(lambda: (lambda w: w if len(w) == 2 and pid not in w else None)(
        served.workers()), 60, "a restarted worker")
    assert sorted(after.values()) == sorted(before.values())
    wait_for(lambda: f"worker w{slot} (pid {pid}) exited" in served.log.read_text(), 10)
    wait_for(lambda: len(served.nodes(30)) == 2, 90, "both workers answering")


def test_sighup_replaces_the_workers_one_at_a_time_while_healthz_answers(served):
    before = served.workers()
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def probe() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                served.get("/healthz")
                answered += 1
            except OSError as e:
                failures.append(repr(e))
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        served.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "workers replaced" in served.log.read_text(), 180, "the replacement")
    finally:
        stop.set()
        prober.join()
    after = served.workers()
    assert len(after) == 2 and not set(after) & set(before)
    assert failures == [] and answered > 20
    # One at a time: each old worker is told to stop only once its replacement is up.
    replacing = served.log.read_text().split("replacing 2 workers one at a time")[1]
    steps = [("started", int(new)) if new else ("stopped", int(old)) for new, old in
             re.findall(r"worker w\d (?:started \(pid (\d+)\)|\(pid (\d+)\) stopped)",
                        replacing)]
    assert [what for what, _ in steps] == ["started", "stopped", "started", "stopped"]
    assert {pid for what, pid in steps if what == "started"} == set(after)
    assert {pid for what, pid in steps if what == "stopped"} == set(before)


def test_sigterm_stops_everything_cleanly(served):
    workers = served.workers()
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(60) == 0
    for pid in workers:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
    assert served.log.read_text().count("kpay stopping") >= 2
