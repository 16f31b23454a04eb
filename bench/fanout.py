"""Fan-out benchmark: kpay's hub against a bare Tornado loop and websockets.broadcast.

    .venv/bin/python bench/fanout.py [--sockets 10000] [--events 100] [--hog] [--workers 1,2]

For each socket count N, each server runs in its own process (bench/fanout_server.py)
with N WebSocket clients subscribed to one channel, spread over client processes
(bench/fanout_client.py); then K events are published one after another. Reported per
server, in the same run over the same N:

- deliveries/s: N*K over the time from the first publish to the last delivery;
- CPU µs per delivery: the server process's own CPU time (user + system) over the
  publish phase, divided by N*K: clients run in other processes, so their CPU does
  not count, whatever the machine's load;
- p50/p99 latency: receive time minus publish time, sampled on every 10th socket;
- KB per idle socket: the server's RSS growth from connecting and subscribing N
  sockets, divided by N;
- publish s: how long the server took to hand all K events to the kernel (when it is
  much shorter than the delivery time, the clients are what is slow);
- client CPU µs per delivery: the client processes' CPU over the same phase, divided
  by N*K (they share the machine's cores with the server).

``--hog`` starts a CPU-burning process beside the server for the whole run (``--hog
2`` two of them), for the figure "with a CPU hog" (docs/performance.md).

``--workers 1,2`` adds a real ``kpay serve --workers n`` for each n (its own
redis-server, the Redis broker, the embedded database; events published into Redis by
the bench): CPU is then summed over the supervisor and all its workers, and the CPU
the bench clients took over the same phase is reported beside it, since on a small
machine they share the cores. Gate (issue 18): two workers spend at most 1.3x one
worker's CPU per delivery.

Only 127.0.0.1 is used. Numbers on a shared machine are noisy; the ratios against
the baselines measured in the same run are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVERS = ("hub", "tornado", "websockets")
HOG = "while True: pass"


class Child:
    """A child process spoken to in lines over stdin/stdout."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=HERE.parent)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, word: str, timeout: float) -> list[str]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no {word!r} within {timeout:.0f}s")
        line = self.process.stdout.readline()
        head, _, rest = line.partition(" ")
        if head.strip() != word:
            raise RuntimeError(f"expected {word!r}, got {line[:200]!r}")
        return [rest] if word == "done" else rest.split()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def stats(server: Child) -> tuple[int, float, int]:
    server.send("stats")
    subscribers, cpu, rss = server.expect("stats", 30)
    return int(subscribers), float(cpu), int(rss)


def run_one(kind: str, sockets: int, events: int, client_procs: int,
            sample_every: int, timeout: float) -> dict[str, Any]:
    server = Child(str(HERE / "fanout_server.py"), kind)
    clients: list[Child] = []
    try:
        port, token, channel = server.expect("ready", 120)
        time.sleep(0.5)
        _, _, rss_before = stats(server)
        shares = [sockets // client_procs + (i < sockets % client_procs)
                  for i in range(client_procs)]
        clients = [Child(str(HERE / "fanout_client.py"), port, token, str(n), str(events),
                         str(sample_every), channel) for n in shares]
        for client in clients:
            client.expect("connected", timeout)
        deadline = time.monotonic() + timeout
        while stats(server)[0] < sockets:
            if time.monotonic() > deadline:
                raise TimeoutError("not every socket subscribed")
            time.sleep(0.1)
        time.sleep(0.5)
        _, cpu_before, rss_idle = stats(server)
        client_cpu_before = cpu_of(client.process.pid for client in clients)
        started = time.time()
        server.send(f"publish {events}")
        (publish_seconds,) = server.expect("published", timeout)
        reports = [json.loads(client.expect("done", timeout)[0]) for client in clients]
        _, cpu_after, _ = stats(server)
        client_cpu = cpu_of(client.process.pid for client in clients) - client_cpu_before
    finally:
        server.stop()
        for client in clients:
            client.process.kill()
            client.process.wait()
    deliveries = sum(r["received"] for r in reports)
    wall = max(r["last"] for r in reports) - started
    latencies = sorted(x for r in reports for x in r["latencies"])
    return {
        "server": kind, "sockets": sockets, "events": events, "deliveries": deliveries,
        "deliveries_per_second": deliveries / wall,
        "cpu_us_per_delivery": (cpu_after - cpu_before) * 1e6 / deliveries,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "kb_per_idle_socket": (rss_idle - rss_before) / sockets / 1024,
        "server_cpu_s": cpu_after - cpu_before, "client_cpu_s": client_cpu,
        "wall_s": wall,
        "publish_seconds": float(publish_seconds),
        "client_cpu_us_per_delivery": sum(r["cpu"] for r in reports) * 1e6 / deliveries,
        "load": os.getloadavg()[0],
    }


def cpu_of(pids: Any) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    model = "?"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                      if line.startswith("Model name")), "?")
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def report(results: list[dict[str, Any]]) -> None:
    print(f"\n{'sockets':>7} {'server':<11} {'deliv/s':>10} {'CPU µs/deliv':>12} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'KB/idle sock':>12} {'publish s':>9} "
          f"{'client µs/deliv':>15} {'load':>5}")
    for r in results:
        print(f"{r['sockets']:>7} {r['server']:<11} {r['deliveries_per_second']:>10,.0f} "
              f"{r['cpu_us_per_delivery']:>12.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['kb_per_idle_socket']:>12.1f} {r['publish_seconds']:>9.2f} "
              f"{r['client_cpu_us_per_delivery']:>15.1f} {r['load']:>5.1f}")
    print()
    for sockets in sorted({r["sockets"] for r in results}):
        by_server = {r["server"]: r for r in results if r["sockets"] == sockets}
        report_workers(sockets, by_server)
        hub = by_server.get("hub")
        if hub is None:
            continue
        for baseline in ("tornado", "websockets"):
            if baseline in by_server:
                other = by_server[baseline]
                cpu = other["cpu_us_per_delivery"] / hub["cpu_us_per_delivery"]
                speed = hub["deliveries_per_second"] / other["deliveries_per_second"]
                memory = hub["kb_per_idle_socket"] / other["kb_per_idle_socket"]
                print(f"{sockets:>5} sockets, {baseline:<10}: CPU per delivery "
                      f"{baseline}/hub = {cpu:.2f}x, deliveries/s hub/{baseline} = "
                      f"{speed:.2f}x, memory per idle socket hub/{baseline} = {memory:.2f}x")
        if "websockets" in by_server:
            # The gate of issue 18 (docs/performance.md, "Hub fan-out").
            met = hub["cpu_us_per_delivery"] <= by_server["websockets"]["cpu_us_per_delivery"]
            print(f"{sockets:>5} sockets: gate hub CPU per delivery <= websockets': "
                  f"{'met' if met else 'NOT met'}")


def report_workers(sockets: int, by_server: dict[str, dict[str, Any]]) -> None:
    """kpay serve with n workers: CPU per delivery against one worker, and what the
    bench clients took meanwhile (they share the machine's cores)."""
    one = by_server.get("workers:1")
    for kind, r in sorted(by_server.items()):
        if not kind.startswith("workers:"):
            continue
        share = r["client_cpu_s"] / (r["wall_s"] * (os.cpu_count() or 1)) * 100
        print(f"{sockets:>5} sockets, {kind}: kpay CPU {r['server_cpu_s']:.2f}s, bench "
              f"clients CPU {r['client_cpu_s']:.2f}s ({share:.0f}% of the machine over "
              f"{r['wall_s']:.2f}s)")
        if one is not None and r is not one:
            ratio = r["cpu_us_per_delivery"] / one["cpu_us_per_delivery"]
            verdict = "ok" if ratio <= 1.3 else "OVER the 1.3x gate"
            print(f"{sockets:>5} sockets, {kind}/workers:1 CPU per delivery = {ratio:.2f}x "
                  f"({verdict}); deliveries/s {kind}/workers:1 = "
                  f"{r['deliveries_per_second'] / one['deliveries_per_second']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", default="10000",
                        help="comma-separated socket counts (default 10000)")
    parser.add_argument("--events", type=int, default=100, help="events per run (100)")
    parser.add_argument("--servers", default="hub,websockets",
                        help="which of hub,tornado,websockets to run (hub,websockets)")
    parser.add_argument("--hog", type=int, nargs="?", const=1, default=0,
                        help="CPU-burning processes beside the server (--hog: 1)")
    parser.add_argument("--workers", default="",
                        help="also run kpay serve with these worker counts, e.g. 1,2")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--sample-every", type=int, default=10,
                        help="measure latency on every n-th socket (10)")
    # 10,000 sockets each authenticated against the embedded database take minutes to
    # connect on a busy machine.
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds any one step may take (300)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    counts = [int(n) for n in args.sockets.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    servers += [f"workers:{int(n)}" for n in args.workers.split(",") if n]
    print(f"machine: {machine()}")
    print(f"settings: sockets {counts}, {args.events} events, servers {servers}, "
          f"{args.client_procs} client processes, latency on every {args.sample_every}th "
          f"socket, {args.hog} CPU hog(s)")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hog)]
    results = []
    try:
        for sockets in counts:
            for kind in servers:
                print(f"running {kind} with {sockets} sockets ...", flush=True)
                results.append(run_one(kind, sockets, args.events, args.client_procs,
                                       args.sample_every, args.timeout))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "hogs": args.hog,
                                               "results": results}, indent=2))


if __name__ == "__main__":
    main()
