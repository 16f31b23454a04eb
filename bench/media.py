"""Benchmark: serving paid media through a signed URL (with a range) against serving
the same file as a plain static file (Tornado's StaticFileHandler), in the same run.

    .venv/bin/python bench/media.py [--size-mib 8] [--range-kib 256] [--requests 400]
                                    [--concurrency 1,8]

Set-up (not part of the results): an embedded SecantusDB in a temp dir, the real kpay
app (dev off, local storage, no plugins but a one-line resource rule that lets the
bench user view ``bench:1``) on a free port, and beside it in the same process a bare
Tornado application serving the media folder with ``StaticFileHandler`` on another
port. One audio file of ``--size-mib`` MiB is stored as media.

Measured, for each ``--concurrency`` (requests in flight at once, one client in this
process): ``--requests`` GETs of a random ``--range-kib`` KiB range (206), and of the
whole file (200), through

- ``static``: ``/files/<id>/original`` from StaticFileHandler (the baseline: no checks);
- ``signed``: ``/media/s/<token>`` from kpay: signature, expiry on the app clock, the
  media document (one find by ``_id``), ``app.access.allowed`` (the user's standing,
  cached, and the rule), then the bytes read in a thread in 256 KiB blocks.

It prints requests per second, p50 and p99 latency, and the ratio signed/static.
Client and servers share one process (and this machine's cores): the ratio is what
to read, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kpay import hookimpl  # noqa: E402 (after the path set-up above)

SECRET = "bench-media-secret-Q4vX8mT2kL9wR6nB3zH7dJ5p"  # random-looking: dev is off


class BenchResources:
    """Owns ``bench:<id>``: the bench user may view it (no database read)."""

    @hookimpl
    def register_collections(self, app: Any) -> list[str]:
        return []

    @hookimpl
    def register_resources(self, app: Any) -> list[Any]:
        from kpay.core.access import ResourceRule

        return [ResourceRule("bench", lambda app, ident: "author",
                             lambda app, user, action, ident: user.id == "listener",
                             actions=("view",))]


async def measure(fetch: Any, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """``requests`` calls of ``fetch()``, ``concurrency`` at a time: (seconds, latencies)."""
    latencies: list[float] = []
    left = iter(range(requests))

    async def worker() -> None:
        for _ in left:
            started = time.perf_counter()
            await fetch()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def summary(seconds: float, latencies: list[float]) -> str:
    latencies = sorted(latencies)
    return (f"{len(latencies) / seconds:8,.0f}/s  p50 {statistics.median(latencies) * 1000:6.2f} ms"
            f"  p99 {latencies[int(len(latencies) * 0.99)] * 1000:6.2f} ms")


async def run(args: argparse.Namespace, uri: str) -> None:
    import tornado.httpclient
    import tornado.web

    from kpay.core.app import KPay, load_settings

    var = tempfile.mkdtemp(prefix="kpay-bench-media-")
    settings, pm = load_settings(None, overrides={
        "server": {"host": "127.0.0.1", "port": 0},
        "mongodb": {"uri": uri, "database": "bench_media"},
        "auth": {"secret": SECRET}, "dev": {"enabled": False},
        "scheduler": {"enabled": False}, "plugins": {"enabled": []},
        "logging": {"level": "WARNING"}, "limits": {"enabled": False},
        "media": {"path": os.path.join(var, "media")},
    })
    pm.add(BenchResources(), "bench_resources")
    app = KPay(settings, pm, uri, var_dir=var)
    await app.start()
    await app.users.sign_in("listener", "student", "听众")

    size = args.size_mib * 1_048_576
    source = Path(var) / "source.bin"
    source.write_bytes(random.Random(1).randbytes(size))
    media_id = "md" + "0" * 22
    await app.media.storage.put_file(f"{media_id}/original", source, "audio/mpeg")
    await app.media.collection.insert_one({
        "_id": media_id, "owner_id": "author", "kind": "audio", "purpose": "lesson",
        "content_type": "audio/mpeg", "size": size, "files": {"original": size},
        "status": "ready", "created_at": app.clock.now()})
    static_app = tornado.web.Application([(r"/files/(.*)", tornado.web.StaticFileHandler,
                                           {"path": str(app.media.root / "files")})])
    static_server = static_app.listen(0, "127.0.0.1")
    static_port = next(iter(static_server._sockets.values())).getsockname()[1]

    signed = app.media.signed_url(media_id, user_id="listener", resource="bench:1",
                                  ttl=3600)
    urls = {"static": f"http://127.0.0.1:{static_port}/files/{media_id}/original",
            "signed": f"http://127.0.0.1:{app.port}" + signed[signed.index("/media/"):]}
    client = tornado.httpclient.AsyncHTTPClient(max_clients=64)
    span = args.range_kib * 1024
    rng = random.Random(2)

    def ranged(url: str) -> Any:
        async def fetch() -> None:
            start = rng.randrange(0, size - span)
            response = await client.fetch(url, headers={
                "Range": f"bytes={start}-{start + span - 1}"})
            assert response.code == 206 and len(response.body) == span

        return fetch

    def whole(url: str) -> Any:
        async def fetch() -> None:
            response = await client.fetch(url, request_timeout=120)
            assert response.code == 200 and len(response.body) == size

        return fetch

    print(f"file {args.size_mib} MiB, ranges of {args.range_kib} KiB, "
          f"{args.requests} requests per cell (whole file: a tenth)")
    print(f"{'measure':38} {'static (baseline)':44} {'signed':44} ratio")
    for concurrency in args.concurrency:
        for label, make, count in (("range", ranged, args.requests),
                                   ("whole file", whole, max(10, args.requests // 10))):
            # Warm both up, then measure each twice interleaved and keep the better run.
            results: dict[str, tuple[float, list[float]]] = {}
            for name in ("static", "signed"):
                await measure(make(urls[name]), 10, concurrency)
            for _ in range(2):
                for name in ("static", "signed"):
                    seconds, latencies = await measure(make(urls[name]), count, concurrency)
                    best = results.get(name)
                    if best is None or seconds < best[0]:
                        results[name] = (seconds, latencies)
            rates = {name: len(lat) / sec for name, (sec, lat) in results.items()}
            print(f"{label + f', {concurrency} at once':38} "
                  f"{summary(*results['static']):44} {summary(*results['signed']):44} "
                  f"{rates['static'] / rates['signed']:.2f}x")
    static_server.stop()
    await app.stop()
    shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=8)
    parser.add_argument("--range-kib", type=int, default=256)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=lambda text: [int(n) for n in text.split(",")],
                        default=[1, 8])
    args = parser.parse_args()
    from kpay.core.store import run_on_scratch_database

    run_on_scratch_database(lambda uri: run(args, uri), "kpay-bench-media-db-")


if __name__ == "__main__":
    main()
