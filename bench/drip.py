"""Benchmark: the course_drip unlock sweep and lesson list at scale, beside the raw
query rate of the same database in the same run.

    .venv/bin/python bench/drip.py [--enrollments 100000] [--courses 10] [--lessons 30]
                                   [--sweep-budget SECONDS] [--profile]

Set-up (not part of the results): an embedded SecantusDB in a temp dir and the real
kpay app with only course_drip on a free port, its clock moved to 07:00 Beijing time.
``--courses`` published courses of ``--lessons`` daily lessons (lesson n:
``after_days n at 08:00``); the enrollments are bulk-inserted with ``insert_many``,
enrolled at random moments over the last 40 days and brought up to date as if every
earlier sweep had run (lessons already open are marked announced; ``next_unlock_at``
is today's 08:00 for anyone still mid-course). Measured:

- ``sweep before 08:00``: a run with nothing due (what most runs of the job cost);
- ``sweep``: at 08:01, one run of the real sweep job announcing the day's unlocks
  (about 29/40 of the enrollments get one lesson each: the 08:00 wave), in batches of
  ``sweep_batch_size`` (docs/course_drip.md): a ``user:<id>`` push, a saved
  notification and an ``on_user_notification`` call per unlock. ``--sweep-budget``
  stops it after that many seconds and reports how far it got and an extrapolation,
  labelled as such. Its database round trips are counted with a pymongo
  ``CommandListener`` (every command sent while it runs, from any task: an upper
  bound), and the minutes for the whole wave are reported;
- ``lesson list``: ``GET /api/v1/courses/{id}/lessons`` for one student over HTTP,
  one request after another (client and server share this process);
- baselines on the same collection: ``find_one`` by ``_id``, ``update_one`` by
  ``_id`` on enrollments that are not due (before and after the sweep), a
  ``bulk_write`` of 500 such updates (per document), and an indexed range query on
  ``next_unlock_at`` (500 documents, as one batch reads).

Gates (issue 18, same-run ratios): the sweep sends <= 0.01 round trips per unlock and
announces at >= 0.8x the raw ``update_one`` rate measured before it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pymongo import UpdateOne, monitoring  # noqa: E402

from kpay import hookimpl  # noqa: E402 (after the path set-up above)

SECRET = "bench-drip-secret-B7tK1wQ9xM3rV5nZ8dH2gL6p"  # random-looking: dev is off


class AnnouncementCounter:
    """Counts lesson_unlocked notifications through the on_user_notification hook, so
    a sweep stopped by ``--sweep-budget`` still reports how far it got."""

    count = 0

    @hookimpl
    def on_user_notification(self, kind: str) -> None:
        if kind == "lesson_unlocked":
            self.count += 1


class Commands(monitoring.CommandListener):
    """Counts every command the app's client sends (registered globally before the
    client is made); ``count`` is read before and after the measured step."""

    count = 0

    def started(self, event: Any) -> None:
        self.count += 1

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


COMMANDS = Commands()
monitoring.register(COMMANDS)


def phase(text: str) -> None:
    """Progress on stderr, so a slow phase on a busy machine can be told apart."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds else "n/a"


async def timed_loop(step: Any, seconds: float) -> tuple[int, float]:
    """Call ``await step()`` repeatedly for about ``seconds``; (calls, elapsed)."""
    started = time.perf_counter()
    count = 0
    while time.perf_counter() - started < seconds:
        await step()
        count += 1
    return count, time.perf_counter() - started


async def run(args: argparse.Namespace, uri: str) -> None:
    import tornado.httpclient

    from kpay.core.app import KPay, load_settings
    from kpay.core.auth import User
    from plugins.course_drip import courses as course_store
    from plugins.course_drip.enrollments import ENROLLMENTS, activation, states_of
    from plugins.course_drip.release import due_lessons, next_unlock
    from plugins.course_drip.sweep import EPOCH, sweep

    settings, pm = load_settings(None, overrides={
        "server": {"host": "127.0.0.1", "port": 0},
        "mongodb": {"uri": uri, "database": "bench_drip"},
        "dev": {"enabled": False},
        "scheduler": {"enabled": False}, "plugins": {"enabled": ["course_drip"]},
        "logging": {"level": "WARNING"},
        # The lesson list is measured flat out by one student: not the request limits.
        "limits": {"enabled": False},
        # The users' standing poll (a find every 5 s) stays out of the round trips.
        "auth": {"secret": SECRET, "standing_cache_seconds": 300},
    })
    counter = AnnouncementCounter()
    pm.add(counter, "bench_counter")
    app = KPay(settings, pm, uri, var_dir=tempfile.mkdtemp(prefix="kpay-bench-var-"))
    await app.start()
    tz = course_store.zone(app)
    rng = random.Random(7)
    print(f"scale: {args.enrollments:,} enrollments, {args.courses} courses x "
          f"{args.lessons} lessons (daily at 08:00 {tz.key})")

    # -- set-up ------------------------------------------------------------------------
    local_now = app.clock.now().astimezone(tz)
    target = local_now.replace(hour=8, minute=1, second=0, microsecond=0)
    if target - timedelta(minutes=61) <= local_now:
        target += timedelta(days=1)
    # "now" while loading: 07:00, an hour of margin for a slow load (the app clock
    # runs on with real time); the measured sweep is at 08:01 exactly.
    before = target - timedelta(minutes=61)
    app.clock.advance((before - local_now).total_seconds())
    now = app.clock.now()
    courses = []
    for c in range(args.courses):
        body = course_store.CourseIn(title=f"Course {c}", price=990, lessons=[
            course_store.LessonIn(title=f"Day {n}", body=f"Lesson **{n}**\n\n" + "text " * 200,
                                  release={"after_days": n, "at": "08:00"})
            for n in range(args.lessons)])
        # No audio, video, slides or cover: nothing for the media checks to look at.
        course = await course_store.create_course(app, User(f"author{c}", "consultant"), body,
                                                  [{} for _ in body.lessons], {})
        await app.store[course_store.COURSES].update_one(
            {"_id": course["_id"]}, {"$set": {"status": "published"}})
        courses.append(course)
    started = time.perf_counter()
    inserted = 0
    batch: list[dict[str, Any]] = []
    for i in range(args.enrollments):
        course = courses[i % len(courses)]
        enrolled_at = now - timedelta(seconds=rng.uniform(600, 40 * 86400))
        doc = {"_id": f"{course['_id']}:u{i}", "course_id": course["_id"], "user_id": f"u{i}",
               "source": "order", "order_id": f"bench{i}", "rev": 1, "created_at": enrolled_at,
               **activation(course, enrolled_at, tz)}
        # As if every sweep until now had run.
        states = states_of(course, doc, now, tz)
        doc["notified"] = due_lessons(states, set())
        doc["next_unlock_at"] = next_unlock(states, set(doc["notified"]))
        batch.append(doc)
        if len(batch) == 5000:
            await app.store[ENROLLMENTS].insert_many(batch, ordered=False)
            inserted += len(batch)
            batch = []
    if batch:
        await app.store[ENROLLMENTS].insert_many(batch, ordered=False)
        inserted += len(batch)
    load_seconds = time.perf_counter() - started
    print(f"load: {inserted:,} enrollments in {load_seconds:.1f} s "
          f"({rate(inserted, load_seconds)}, insert_many of 5000, state computed in Python)")

    enrollments = app.store[ENROLLMENTS]
    phase("loaded; idle sweep")
    # Before 08:00 nothing is due: what the job costs on most of its runs.
    idle_started = time.perf_counter()
    idle_announced = await sweep(app)
    idle_s = time.perf_counter() - idle_started
    # 08:01: one day's unlocks due.
    app.clock.advance((target - app.clock.now()).total_seconds())
    due_range = {"next_unlock_at": {"$gte": EPOCH, "$lte": app.clock.now()}}
    due_now = await enrollments.count_documents(due_range)

    phase("baselines")
    # -- baselines -------------------------------------------------------------------
    probe_ids = [f"{courses[i % len(courses)]['_id']}:u{i}" for i in
                 rng.sample(range(args.enrollments), min(2000, args.enrollments))]
    cycle = iter(probe_ids * 1000)

    async def find_by_id() -> None:
        await enrollments.find_one({"_id": next(cycle)})

    finds, find_s = await timed_loop(find_by_id, 5)

    async def range_query() -> None:
        await enrollments.find(due_range).sort("next_unlock_at", 1).limit(500).to_list()

    ranges, range_s = await timed_loop(range_query, 5)
    # Writes to enrollments that are not due (finished courses): same documents, same
    # indexes as the sweep writes to; a field nothing reads.
    idle = [e["_id"] async for e in enrollments.find({"next_unlock_at": None}, {"_id": 1})]
    idle_cycle = iter(idle * 1000)

    async def update_by_id() -> None:
        await enrollments.update_one({"_id": next(idle_cycle)}, {"$inc": {"bench_touch": 1}})

    updates, update_s = await timed_loop(update_by_id, 5)

    async def bulk_500() -> None:
        await enrollments.bulk_write([UpdateOne({"_id": next(idle_cycle)},
                                                {"$inc": {"bench_touch": 1}})
                                      for _ in range(500)], ordered=False)

    bulks, bulk_s = await timed_loop(bulk_500, 5)

    phase("sweep")
    # -- the sweep -------------------------------------------------------------------
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    commands_before = COMMANDS.count
    complete = True
    try:
        await asyncio.wait_for(sweep(app), args.sweep_budget or None)
    except TimeoutError:
        complete = False  # stopped part-way: what was announced stays announced, once
    sweep_s = time.perf_counter() - started
    round_trips = COMMANDS.count - commands_before
    announced = counter.count
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    updates_after, update_after_s = await timed_loop(update_by_id, 5)
    again_started = time.perf_counter()
    again = await sweep(app) if complete else 0
    again_s = time.perf_counter() - again_started

    phase("lesson list")
    # -- the lesson list over HTTP ------------------------------------------------------
    student = "u123"
    await app.users.ensure(student, "student")
    token = app.tokens.issue(student, "student")
    url = (f"http://127.0.0.1:{app.port}/api/v1/courses/"
           f"{courses[123 % len(courses)]['_id']}/lessons")
    http = tornado.httpclient.AsyncHTTPClient()
    latencies: list[float] = []

    async def lesson_list() -> None:
        t = time.perf_counter()
        response = await http.fetch(url, headers={"Authorization": f"Bearer {token}"})
        latencies.append(time.perf_counter() - t)
        assert response.code == 200

    lists, list_s = await timed_loop(lesson_list, 5)
    latencies.sort()

    print()
    print(f"{'measure':44} result")
    print(f"{'raw find_one by _id (baseline)':44} {rate(finds, find_s)}")
    print(f"{'raw update_one by _id, same collection':44} {rate(updates, update_s)} before "
          f"the sweep, {rate(updates_after, update_after_s)} after")
    print(f"{'raw bulk_write of 500 update_one, per doc':44} "
          f"{rate(bulks * 500, bulk_s)} ({bulk_s / bulks * 1000:.0f} ms per bulk_write)")
    print(f"{'raw indexed range query, 500 docs':44} "
          f"{ranges / range_s:,.1f}/s ({range_s / ranges * 1000:.1f} ms each)")
    print(f"{'sweep before 08:00 (nothing due yet)':44} {idle_announced} in "
          f"{idle_s * 1000:.1f} ms")
    print(f"{'enrollments due at 08:01':44} {due_now:,}")
    print(f"{'sweep: lessons announced':44} {announced:,} in {sweep_s:.1f} s "
          f"= {rate(announced, sweep_s)}"
          + ("" if complete else f" (stopped by --sweep-budget {args.sweep_budget:.0f} s)"))
    if not complete and announced:
        print(f"{'EXTRAPOLATED: whole sweep of the due ones':44} "
              f"~{due_now / (announced / sweep_s):,.0f} s at that rate")
    if complete:
        print(f"{'the whole 08:00 wave':44} {sweep_s / 60:.2f} minutes")
    if announced:
        per_unlock = round_trips / announced
        print(f"{'sweep round trips (all commands)':44} {round_trips:,} = "
              f"{per_unlock:.4f} per unlock "
              f"[gate <= 0.01: {'PASS' if per_unlock <= 0.01 else 'FAIL'}]")
        ratio = (announced / sweep_s) / (updates / update_s)
        print(f"{'sweep unlocks/s vs raw update_one/s before':44} {ratio:.2f}x "
              f"[gate >= 0.8x: {'PASS' if ratio >= 0.8 else 'FAIL'}]; "
              f"{(announced / sweep_s) / (updates_after / update_after_s):.2f}x "
              f"the rate after")
    if complete:
        print(f"{'sweep again right after (nothing due)':44} {again} in "
              f"{again_s * 1000:.1f} ms")
    print(f"{'GET lessons (30) for one student':44} {rate(lists, list_s)}, "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms")
    await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--courses", type=int, default=10)
    parser.add_argument("--lessons", type=int, default=30)
    parser.add_argument("--sweep-budget", type=float, default=0,
                        help="stop the sweep after this many seconds (0: run it to the end)")
    parser.add_argument("--profile", action="store_true",
                        help="print where the sweep spends its time in this process")
    args = parser.parse_args()
    from kpay.core.store import run_on_scratch_database

    run_on_scratch_database(lambda uri: run(args, uri), "kpay-bench-drip-")


if __name__ == "__main__":
    main()
