"""Benchmark: what wechat_notify costs the database when many users are told at once
(``app.tell_users``: the drip sweep tells its 08:00 wave 500 at a time), counted by
collection with a pymongo ``CommandListener``.

    .venv/bin/python bench/wechat_notify_batch.py [--users 500]

Set-up (not measured): an embedded SecantusDB in a temp dir and the real kpay app with
only wechat_notify, pointed at the local fake of WeChat's message API
(plugins/wechat_notify/fake.py); ``--users`` users signed in with WeChat, each of them
consenting to the room reminder's subscription template. Measured, for one wave of
``lesson_unlocked`` (template messages) and one of ``room_starting`` (subscription
messages, so the consents are read too): every command sent from the start of
``app.tell_users(wave)`` until the fake got every message and every send record holds
WeChat's answer, by collection. The core's part (the saved notifications) is listed
apart from wechat_notify's (the users' openids, the consents, the send records).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pymongo import monitoring  # noqa: E402 (after the path set-up above)

SECRET = "bench-notify-secret-Q4mW8zR1tY6uP3kX9vB2nC7j"  # random-looking: dev is off
SENDS = "wechat_notify_sends"
KINDS = {
    "lesson_unlocked": {"mode": "template", "template_id": "TPL_LESSON",
                        "fields": {"thing1": "course_title", "thing2": "lesson_title",
                                   "time3": "time"}},
    "room_starting": {"mode": "subscribe", "template_id": "SUB_ROOM",
                      "fields": {"thing1": "title", "thing2": "body"}},
}


class CommandsByCollection(monitoring.CommandListener):
    """Counts the commands of every client made after it is registered (the app's),
    by (command, collection)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def started(self, event: Any) -> None:
        target = event.command.get(event.command_name)
        self.counts[event.command_name, target if isinstance(target, str) else "-"] += 1

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


COMMANDS = CommandsByCollection()
monitoring.register(COMMANDS)


async def wave_cost(app: Any, fake: Any, wave: list[Any]) -> tuple[Counter, float]:
    """The commands (by command and collection) and seconds of telling ``wave``,
    until the fake got each message and each record holds its answer."""
    expected = len(fake.sent) + len(wave)
    before = Counter(COMMANDS.counts)
    updates = COMMANDS.counts["update", SENDS] + len(wave)
    started = time.perf_counter()
    await app.tell_users(wave)
    deadline = started + 120
    while len(fake.sent) < expected or COMMANDS.counts["update", SENDS] < updates:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{len(fake.sent)} of {expected} messages reached the fake")
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    return COMMANDS.counts - before, elapsed


def report(name: str, users: int, spent: Counter, seconds: float) -> None:
    ours = {key: n for key, n in spent.items()
            if key[1] in ("users", SENDS, "wechat_notify_consents")}
    core = {key: n for key, n in spent.items() if key not in ours}
    forwarding = sum(n for (command, where), n in ours.items()
                     if not (command == "update" and where == SENDS))
    answers = ours.get(("update", SENDS), 0)
    print(f"{name}: {users} told in {seconds:.2f} s")
    print(f"  wechat_notify: {forwarding} round trips to record the sends "
          f"({forwarding / users:.3f} per notification) + {answers} to store WeChat's "
          f"answers ({answers / users:.2f} per notification)")
    print(f"    {dict(sorted(ours.items()))}")
    print(f"  the core (saved notifications and the rest): {sum(core.values())} "
          f"{dict(sorted(core.items()))}")


async def run(args: argparse.Namespace, uri: str) -> None:
    from kpay.core.app import KPay, load_settings
    from kpay.core.telling import Told
    from plugins.wechat_notify import sends
    from plugins.wechat_notify.fake import FakeWeChatMessages

    fake = FakeWeChatMessages()
    await fake.start()
    settings, pm = load_settings(None, overrides={
        "server": {"host": "127.0.0.1", "port": 0},
        "mongodb": {"uri": uri, "database": "bench_notify"},
        "dev": {"enabled": False},
        "scheduler": {"enabled": False}, "plugins": {"enabled": ["wechat_notify"]},
        "logging": {"level": "WARNING"},
        # The users' standing poll (a find every 5 s) stays out of the round trips.
        "auth": {"secret": SECRET, "standing_cache_seconds": 300},
        "wechat_notify": fake.settings(kinds=KINDS, http_timeout_seconds=10.0),
    })
    app = KPay(settings, pm, uri, var_dir=tempfile.mkdtemp(prefix="kpay-bench-var-"))
    await app.start()
    try:
        await app.rollups.backfill
        users = [(await app.users.sign_in_wechat(f"o_{i}", "学员"))["_id"]
                 for i in range(args.users)]
        for user in users:
            await sends.record_consent(app, user, "SUB_ROOM", True)
        lessons = [Told(user, "lesson_unlocked", {
            "course_id": "c1", "lesson_id": "l1", "course_title": "写作课",
            "lesson_title": "第一讲", "lesson_number": 1}) for user in users]
        rooms = [Told(user, "room_starting", {"room_id": "r1", "title": "面试直播",
                                              "body": "15 分钟后开始"}) for user in users]
        for name, wave in (("lesson_unlocked (template)", lessons),
                           ("room_starting (subscribe)", rooms)):
            spent, seconds = await wave_cost(app, fake, wave)
            report(name, len(wave), spent, seconds)
    finally:
        await app.stop()
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args()
    from kpay.core.store import run_on_scratch_database

    run_on_scratch_database(lambda uri: run(args, uri), "kpay-bench-notify-")


if __name__ == "__main__":
    main()
