"""Load test: many students and consultants use a running kpay through its public API.

    .venv/bin/python bench/loadtest.py --url http://127.0.0.1:8888 --duration 60 --users 200
    .venv/bin/python bench/loadtest.py --start-server --duration 60 --users 200
    make loadtest [URL=http://127.0.0.1:8888] [DURATION=60] [USERS=200]

Set-up, through the public API of a dev-mode deployment (docs/api.md "Dev mode"):
users ``lt<run>-s<n>`` and ``lt<run>-c<n>`` log in with ``POST /api/v1/dev/login``;
each consultant sets a per-minute rate, opens and starts a live room with chat and
free questions, and publishes a course of five lessons (as far as the deployment has
those plugins' routes); each student's wallet is topped
up through a WeChat Pay order paid with ``POST /api/v1/dev/orders/{id}/pay``. A
deployment without dev mode is refused unless ``--tokens FILE`` gives tokens of
existing users (``{"students": [...], "consultants": [...]}``, e.g. from ``kpay
token``); their wallets must then be funded, and the top-up action is left out.

Then every user runs until the duration is over (or Ctrl-C): a weighted, random mix of
actions with an exponential think time between them, each action timed (table in
docs/performance.md "Load test"). Every user has its own socket on ``user:<id>``, so
per-user rate limits apply as in production; a 429 is counted apart and the user waits
its Retry-After. Login limits are per client IP, and all users come from this one
machine: ``--start-server`` raises ``[limits] login_burst`` on the server it starts;
against another deployment the set-up waits at its login rate (it says so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadtest_client import Api, Refused, http_client
from loadtest_report import Stats, problems, render
from loadtest_server import dev_server
from loadtest_users import STARTING_BALANCE, WEIGHTS, Consultant, Student

MAX_USERS = 5000
RAMP_SECONDS = 10.0  # students start over the first min(this, duration / 6, think) seconds


class Run:
    """One load test: options, users and the shared state of their world."""

    def __init__(self, url: str, users: int, duration: float, think: float,
                 consult_seconds: float, seed: int | None = None,
                 weights: dict[str, int] | None = None) -> None:
        self.url, self.users, self.duration = url.rstrip("/"), users, duration
        self.weights = weights or WEIGHTS
        self.think, self.consult_seconds = think, consult_seconds
        self.ramp = min(RAMP_SECONDS, duration / 6, think)
        self.random = random.Random(seed)
        self.prefix = f"lt{int(time.time()) % 10**6:06d}"
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.http = http_client(users)
        self.dev = False
        self.students: list[Student] = []
        self.consultants: list[Consultant] = []
        self.rooms: list[str] = []
        self.courses: list[str] = []
        self.free: list[Consultant] = []  # consultants not in a consultation now
        self.paths: set[str] = set()
        self.failed_once = False  # the first client-side failure's traceback is shown
        self.login_limited = False  # the set-up said that logins wait for the limit

    def api(self, token: str) -> Api:
        return Api(self.http, self.url, token)

    async def pause(self, seconds: float) -> None:
        """Sleep, woken early by the end of the run."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass

    async def act(self, action: str, work: Callable[[], Awaitable[Any]]) -> bool:
        """Run and time one action; a 429 makes the user wait its Retry-After."""
        started = time.perf_counter()
        try:
            await work()
        except Refused as refused:
            self.stats.record(action, time.perf_counter() - started, refused.outcome)
            if refused.outcome == "rate_limited":
                await self.pause(refused.retry_after)
            return False
        except Exception as error:  # any failure of the client is counted, never hidden
            self.stats.record(action, time.perf_counter() - started,
                              f"client {type(error).__name__}")
            if not self.failed_once:
                self.failed_once = True
                traceback.print_exc()
            return False
        self.stats.record(action, time.perf_counter() - started, None)
        return True


async def log_in(run: Run, user_id: str, role: str) -> str:
    """A dev login, waiting out the login limit (per client IP) as a person would."""
    while True:
        try:
            return (await run.api("").post("/api/v1/dev/login",
                                           {"user_id": user_id, "role": role}))["token"]
        except Refused as refused:
            if refused.outcome != "rate_limited":
                raise
            if not run.login_limited:
                run.login_limited = True
                print(f"set-up: the login limit (per client IP) answered 429; the other logins"
                      f" wait for it, {refused.retry_after:g} s each (on a dev server, "
                      "KPAY_LIMITS__LOGIN_BURST=500 avoids this)", file=sys.stderr, flush=True)
            await asyncio.sleep(refused.retry_after)


async def set_up(run: Run, tokens: dict[str, list[str]] | None) -> None:
    # The plugins' routes this deployment has: the set-up and the mix use only those.
    run.paths = set((await run.api("").get("/api/v1/openapi.json"))["paths"])
    try:
        await run.api("").get("/api/v1/dev/clock")
        run.dev = True
    except Refused as refused:
        if refused.status != 404:
            raise
    consultants = max(2, run.users // 20)
    if tokens is None:
        if not run.dev:
            raise SystemExit(
                f"{run.url} is not in dev mode (GET /api/v1/dev/clock is 404): the set-up "
                "logs users in with /api/v1/dev/login. Against such a deployment pass "
                "--tokens FILE with tokens of existing users, {\"students\": [...], "
                "\"consultants\": [...]} (kpay token --user U --role R), funded wallets.")
        gate = asyncio.Semaphore(20)

        async def one(user_id: str, role: str) -> tuple[str, str]:
            async with gate:
                return user_id, await log_in(run, user_id, role)

        print(f"set-up: logging in {run.users} students and {consultants} consultants (the "
              "server's login limit per client IP applies)", file=sys.stderr, flush=True)
        logins = await asyncio.gather(
            *(one(f"{run.prefix}-c{n}", "consultant") for n in range(consultants)),
            *(one(f"{run.prefix}-s{n}", "student") for n in range(run.users)))
        pairs = {"consultants": logins[:consultants], "students": logins[consultants:]}
    else:
        pairs = {kind: [((await run.api(token).get("/api/v1/me"))["id"], token)
                        for token in tokens.get(kind, [])[:MAX_USERS]]
                 for kind in ("consultants", "students")}
        if not pairs["students"]:
            raise SystemExit("--tokens: no \"students\" tokens")
    run.consultants = [Consultant(run, *pair) for pair in pairs["consultants"]]
    await asyncio.gather(*(c.set_up(n) for n, c in enumerate(run.consultants)))
    run.students = [Student(run, *pair) for pair in pairs["students"][:run.users]]
    if run.dev:
        gate = asyncio.Semaphore(20)

        async def fund(student: Student) -> None:
            async with gate:
                await student.topup(STARTING_BALANCE)

        await asyncio.gather(*(fund(s) for s in run.students))


async def db_commands(run: Run) -> dict[str, float] | None:
    """The server's ``kpay_db_commands_total`` by command (docs/operations.md,
    "Metrics"), or None when /metrics is not served to this client."""
    try:
        text = (await run.http.fetch(f"{run.url}/metrics", raise_error=False)).body
    except (OSError, HTTPClientError):
        return None
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families((text or b"").decode(errors="replace")):
        for sample in family.samples:
            if sample.name == "kpay_db_commands_total":
                counts[sample.labels.get("command", "?")] = sample.value
    return counts or None


async def tidy(run: Run) -> None:
    """End the rooms the run opened and close every socket."""
    for consultant in run.consultants:
        if consultant.room:
            try:
                await consultant.api.post(f"/api/v1/rooms/{consultant.room}/end", {})
            except (Refused, OSError) as error:
                print(f"could not end room {consultant.room}: {error}", file=sys.stderr)
    for user in [*run.students, *run.consultants]:
        if user.socket:
            user.socket.close()
    run.http.close()


async def run_load(url: str, users: int = 20, duration: float = 60.0, think: float = 5.0,
                   consult_seconds: float = 75.0, tokens: dict[str, list[str]] | None = None,
                   seed: int | None = None, cpu: Callable[[], dict[str, float]] | None = None,
                   weights: dict[str, int] | None = None, catch_sigint: bool = False
                   ) -> dict[str, Any]:
    """Set up, run the mix for ``duration`` seconds (or until SIGINT, with
    ``catch_sigint``) and return the report (bench/loadtest_report.py)."""
    run = Run(url, users, duration, think, consult_seconds, seed, weights)
    loop = asyncio.get_running_loop()

    def stop_early() -> None:
        # Once: a second Ctrl-C is Python's own KeyboardInterrupt, for a run that hangs.
        run.stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    if catch_sigint:
        loop.add_signal_handler(signal.SIGINT, stop_early)
    try:
        await set_up(run, tokens)
        print(f"running {len(run.students)} students and {len(run.consultants)} consultants "
              f"for {duration:g} s (Ctrl-C stops early)", file=sys.stderr, flush=True)
        before = cpu() if cpu else None
        run.stats = Stats()  # the set-up is not measured
        for user in [*run.students, *run.consultants]:
            if user.socket:
                user.socket.stats = run.stats
        commands_before = await db_commands(run)
        client_cpu = time.process_time()
        tasks = [asyncio.ensure_future(u.live()) for u in [*run.consultants, *run.students]]
        await run.pause(duration)
        run.stop.set()
        run.stats.stopped()
        # In-flight actions finish (each request is bounded by its timeout).
        results = await asyncio.gather(*tasks, return_exceptions=True)
        crashed = [r for r in results if isinstance(r, BaseException)]
        for error in crashed:  # a user that stopped early is an error of the run
            run.stats.record("user_stopped", 0.0, f"client {type(error).__name__}")
        extra: dict[str, Any] = {
            "users": len(run.students), "consultants": len(run.consultants),
            "crashed_users": len(crashed),
            "client_cpu_seconds": round(time.process_time() - client_cpu, 1)}
        if crashed:
            print(f"{len(crashed)} users stopped early: {crashed[0]!r}", file=sys.stderr)
        commands_after = await db_commands(run) if commands_before else None
        if commands_before and commands_after:
            extra["db_commands"] = {name: int(count - commands_before.get(name, 0))
                                    for name, count in sorted(commands_after.items())
                                    if count > commands_before.get(name, 0)}
        report = run.stats.report(**extra)
        if before is not None:
            after = cpu()
            kpay = after["kpay"] - before["kpay"]
            report["server_cpu"] = {
                "kpay_seconds": kpay, "database_seconds": after["database"] - before["database"],
                "kpay_ms_per_action": 1000 * kpay / max(1, report["total"]["count"])}
        return report
    finally:
        if catch_sigint:
            loop.remove_signal_handler(signal.SIGINT)
        await tidy(run)


async def main(args: argparse.Namespace, tokens: dict[str, list[str]] | None
               ) -> dict[str, Any]:
    kwargs = dict(users=args.users, duration=args.duration, think=args.think,
                  consult_seconds=args.consult_seconds, tokens=tokens, seed=args.seed,
                  catch_sigint=True)
    if args.url:
        return await run_load(args.url, **kwargs)
    async with dev_server(login_burst=args.users * 2 + 50) as server:
        return await run_load(server.url, cpu=server.cpu_seconds, **kwargs)


def bounded(low: float, high: float, kind: type = float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value
    return parse


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running deployment, e.g. http://127.0.0.1:8888")
    where.add_argument("--start-server", action="store_true",
                       help="start a dev server on a scratch database for the run")
    parser.add_argument("--users", type=bounded(1, MAX_USERS, int), default=200)
    parser.add_argument("--duration", type=bounded(1, 3600), default=60.0, help="seconds")
    parser.add_argument("--think", type=bounded(0.05, 600), default=5.0,
                        help="mean seconds between one user's actions")
    parser.add_argument("--consult-seconds", type=bounded(0, 3600), default=75.0,
                        help="how long a consultation runs once accepted")
    parser.add_argument("--tokens", help="JSON file of tokens, for a deployment without dev")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    report = asyncio.run(main(args, json.loads(Path(args.tokens).read_text())
                              if args.tokens else None))
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1))
    sys.exit(1 if problems(report, []) else 0)
