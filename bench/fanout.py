"""Fan-out benchmark: kpay's hub against a bare Tornado loop and websockets.broadcast.

    .venv/bin/python bench/fanout.py [--sockets 10000] [--events 100] [--rounds 2]
                                     [--hog] [--workers 1,2]

For each socket count N, each server runs in its own process (bench/fanout_server.py)
with N WebSocket clients subscribed to one channel, spread over client processes
(bench/fanout_client.py); then K events are published one after another. The servers
are interleaved: ``--rounds R`` runs each R times, every other round in reverse order
(hub, websockets, websockets, hub for R = 2), so none always runs first or after the
same neighbour. Reported per server and round, then as the median over the rounds (with
the position the server had in each round), in the same run over the same N:

- deliveries/s: N*K over the time from the first publish to the last delivery;
- CPU µs per delivery: the server process's own CPU time (user + system) over the
  publish phase, divided by N*K: clients run in other processes, so their CPU does
  not count, whatever the machine's load;
- p50/p99 latency: receive time minus publish time, sampled on every 10th socket;
- KB per idle socket: the server's RSS growth from connecting and subscribing N
  sockets, divided by N;
- publish s: how long the server took to hand all K events to the kernel (when it is
  much shorter than the delivery time, the clients are what is slow);
- pass ms (median) and max pass: how long one event's write to all N sockets took
  in the server, and GC ms: the garbage collector's pauses in the server over the
  publish phase (``gc.callbacks``); for ``workers:<n>`` a pass is only the publish
  into Redis;
- late % and late p99: the share of sampled deliveries read after their event's pass
  had ended, and the p99 of how long after (0 for those read during it): latency that
  is not the server reaching the socket, but a client behind or the kernel holding a
  frame back;
- server % and clients %: the server's CPU over the publish phase in % of one core,
  the bench clients' in % of the whole machine (they share its cores);
- client CPU µs per delivery: the client processes' CPU over the same phase, divided
  by N*K (they share the machine's cores with the server).

``--hog`` starts a CPU-burning process beside the server for the whole run (``--hog
2`` two of them), for the figure "with a CPU hog" (docs/performance.md).

Events go out back to back: each as soon as the one before is written to every socket,
so a server faster than its clients runs ahead of them and its latency includes the
backlog it built. ``--interval MS`` publishes one every MS milliseconds instead, on a
fixed schedule, so latency is each event's own fan-out as long as both keep up.

No server pings its sockets unless ``--ping S`` asks for keep-alive pings every S
seconds in each (the hub's one pass over every socket, websockets' task per
connection, Tornado's ``websocket_ping_interval``); the clients answer them.

``--workers 1,2`` adds a real ``kpay serve --workers n`` for each n (its own
redis-server, the Redis broker, the embedded database; events published into Redis by
the bench): CPU is then summed over the supervisor and all its workers, and the CPU
the bench clients took over the same phase is reported beside it, since on a small
machine they share the cores. Gate (issue 18): two workers spend at most 1.3x one
worker's CPU per delivery.

Only 127.0.0.1 is used. Numbers on a shared machine are noisy; the ratios against
the baselines measured in the same run are what to compare, and for wall-clock figures
(deliveries/s, latency) their medians over several rounds. The gates are judged on the
medians; the output also says in how many rounds the hub's gate held on its own.
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
HOG = "while True: pass"
#: Replies that carry one JSON document rather than words.
JSON_REPLIES = ("done", "published")


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
        return [rest] if word in JSON_REPLIES else rest.split()

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
            sample_every: int, timeout: float, ping: float,
            interval: float) -> dict[str, Any]:
    server = Child(str(HERE / "fanout_server.py"), kind, str(ping))
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
        server.send(f"publish {events} {interval}")
        published = json.loads(server.expect("published", timeout)[0])
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
    late = after_the_pass(reports, published.pop("passes_ms"), published.pop("first_event"))
    return {
        "server": kind, "sockets": sockets, "events": events, "deliveries": deliveries,
        "deliveries_per_second": deliveries / wall,
        "cpu_us_per_delivery": (cpu_after - cpu_before) * 1e6 / deliveries,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "after_pass_share": sum(1 for x in late if x > 0) / len(late),
        "after_pass_p99_ms": percentile(late, 0.99),
        "kb_per_idle_socket": (rss_idle - rss_before) / sockets / 1024,
        "server_cpu_s": cpu_after - cpu_before, "client_cpu_s": client_cpu,
        "wall_s": wall,
        "publish_seconds": published.pop("seconds"), **published,
        "client_cpu_us_per_delivery": sum(r["cpu"] for r in reports) * 1e6 / deliveries,
        "load": os.getloadavg()[0],
    }


def percentile(ordered: list[float], q: float) -> float:
    return ordered[max(int(len(ordered) * q) - 1, 0)]


def after_the_pass(reports: list[dict[str, Any]], passes_ms: list[float],
                   first_event: int) -> list[float]:
    """For each sampled delivery, how many ms after the server finished writing its
    event to every socket (its pass) the client read it, 0 when during the pass; sorted.

    Splits latency in two: a delivery read during its pass waited for the server to
    reach its socket; one read after it waited for something else, a client behind on
    its reading or a frame the kernel held back.
    """
    return sorted(max(latency * 1000 - passes_ms[event - first_event], 0.0)
                  for r in reports for latency, event in zip(r["latencies"], r["events"],
                                                             strict=True))


def client_share(r: dict[str, Any]) -> float:
    """The bench clients' CPU over the publish phase, in % of the whole machine."""
    return r["client_cpu_s"] / (r["wall_s"] * (os.cpu_count() or 1)) * 100


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


def run_order(servers: list[str], rounds: int) -> list[tuple[int, int, str]]:
    """(round, position in the round, server) in the order to run them.

    Every round runs each server once, every other round in reverse (hub, websockets,
    then websockets, hub: ABBA), so no server always runs first, on a machine the run
    before it has just warmed or loaded, and each has the same mean position.
    """
    order = []
    for number in range(1, rounds + 1):
        kinds = servers if number % 2 else servers[::-1]
        order += [(number, position, kind) for position, kind in enumerate(kinds, 1)]
    return order


def medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's runs at one socket count folded into the median of each figure."""
    folded = {key: statistics.median(r[key] for r in rows)
              for key, value in rows[0].items()
              if isinstance(value, int | float) and key not in ("round", "position")}
    folded["server"], folded["sockets"] = rows[0]["server"], rows[0]["sockets"]
    folded["order"] = ",".join(str(r["position"]) for r in rows)
    return folded


def report(results: list[dict[str, Any]]) -> None:
    print(f"\n{'sockets':>7} {'round':>5} {'#':>2} {'server':<11} {'deliv/s':>9} "
          f"{'CPU µs/deliv':>12} {'p50 ms':>7} {'p99 ms':>7} {'pass ms':>7} {'max pass':>8} "
          f"{'late %':>6} {'late p99':>8} {'GC ms':>6} {'server %':>8} {'clients %':>9} "
          f"{'KB/idle sock':>12} {'publish s':>9} {'client µs/deliv':>15} {'load':>5}")
    for r in results:
        # A workers:<n> run's publish phase is only the publishing into Redis.
        server_share = ("-" if r["server"].startswith("workers:")
                        else f"{r['server_cpu_s'] / r['publish_seconds'] * 100:.0f}")
        print(f"{r['sockets']:>7} {r['round']:>5} {r['position']:>2} {r['server']:<11} "
              f"{r['deliveries_per_second']:>9,.0f} {r['cpu_us_per_delivery']:>12.1f} "
              f"{r['p50_ms']:>7.0f} {r['p99_ms']:>7.0f} {r['pass_ms_p50']:>7.0f} "
              f"{r['pass_ms_max']:>8.0f} {r['after_pass_share'] * 100:>6.1f} "
              f"{r['after_pass_p99_ms']:>8.0f} {r['gc_ms']:>6.1f} {server_share:>8} "
              f"{client_share(r):>9.0f} {r['kb_per_idle_socket']:>12.1f} "
              f"{r['publish_seconds']:>9.2f} {r['client_cpu_us_per_delivery']:>15.1f} "
              f"{r['load']:>5.1f}")
    rounds = max(r["round"] for r in results)
    print(f"\nmedians over {rounds} round(s); order: the server's position in each round")
    print(f"{'sockets':>7} {'server':<11} {'order':<9} {'deliv/s':>10} {'CPU µs/deliv':>12} "
          f"{'p50 ms':>8} {'p99 ms':>8}")
    summary = []
    for sockets in sorted({r["sockets"] for r in results}):
        kinds = dict.fromkeys(r["server"] for r in results if r["sockets"] == sockets)
        for kind in kinds:
            m = medians([r for r in results if r["sockets"] == sockets and r["server"] == kind])
            summary.append(m)
            print(f"{sockets:>7} {kind:<11} {m['order']:<9} {m['deliveries_per_second']:>10,.0f} "
                  f"{m['cpu_us_per_delivery']:>12.1f} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f}")
    print()
    for sockets in sorted({m["sockets"] for m in summary}):
        by_server = {m["server"]: m for m in summary if m["sockets"] == sockets}
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
                      f"{speed:.2f}x, memory per idle socket hub/{baseline} = {memory:.2f}x, "
                      f"p99 hub-{baseline} = {hub['p99_ms'] - other['p99_ms']:+.0f} ms "
                      "(medians)")
        if "websockets" in by_server:
            # The gate of issue 18 (docs/performance.md, "Hub fan-out"), on the medians,
            # and how many rounds it held in on their own.
            met = hub["cpu_us_per_delivery"] <= by_server["websockets"]["cpu_us_per_delivery"]
            cpu = {(r["round"], r["server"]): r["cpu_us_per_delivery"]
                   for r in results if r["sockets"] == sockets}
            held = sum(1 for n in range(1, rounds + 1)
                       if cpu[n, "hub"] <= cpu[n, "websockets"])
            print(f"{sockets:>5} sockets: gate hub CPU per delivery <= websockets': "
                  f"{'met' if met else 'NOT met'} (medians; held in {held} of {rounds} "
                  "rounds)")


def report_workers(sockets: int, by_server: dict[str, dict[str, Any]]) -> None:
    """kpay serve with n workers: CPU per delivery against one worker, and what the
    bench clients took meanwhile (they share the machine's cores)."""
    one = by_server.get("workers:1")
    for kind, r in sorted(by_server.items()):
        if not kind.startswith("workers:"):
            continue
        print(f"{sockets:>5} sockets, {kind}: kpay CPU {r['server_cpu_s']:.2f}s, bench "
              f"clients CPU {r['client_cpu_s']:.2f}s ({client_share(r):.0f}% of the machine over "
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
                        help="which of hub,hub-nagle,tornado,websockets to run "
                             "(hub,websockets)")
    parser.add_argument("--hog", type=int, nargs="?", const=1, default=0,
                        help="CPU-burning processes beside the server (--hog: 1)")
    parser.add_argument("--workers", default="",
                        help="also run kpay serve with these worker counts, e.g. 1,2")
    parser.add_argument("--rounds", type=int, default=2,
                        help="run every server this many times, every other round in "
                             "reverse order (2: hub, websockets, websockets, hub)")
    parser.add_argument("--interval", type=float, default=0,
                        help="publish one event every this many ms (0: each as soon as "
                             "the one before is written, the default)")
    parser.add_argument("--ping", type=float, default=0,
                        help="keep-alive pings every this many seconds in the in-process "
                             "servers (0: none, the default)")
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
          f"{args.rounds} round(s), {args.client_procs} client processes, latency on "
          f"every {args.sample_every}th socket, {args.hog} CPU hog(s), pings every "
          f"{args.ping or '-'} s, events every {args.interval or '-'} ms")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hog)]
    results = []
    try:
        for sockets in counts:
            for number, position, kind in run_order(servers, args.rounds):
                print(f"round {number}: running {kind} with {sockets} sockets ...",
                      flush=True)
                result = run_one(kind, sockets, args.events, args.client_procs,
                                 args.sample_every, args.timeout, args.ping, args.interval)
                results.append({"round": number, "position": position, **result})
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
