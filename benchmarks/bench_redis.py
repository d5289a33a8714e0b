"""RedisGroup against a local Group and against no coordination, across processes.

    python benchmarks/bench_redis.py [--procs 8] [--threads 8] [--rounds 20] [--work-ms 20] [--speed-runs 5]
    SINGLEFLIGHT_REDIS_URL=redis+cluster://127.0.0.1:7000 python benchmarks/bench_redis.py   # a cluster

First the speed section (benchmarks/_redis_speed.py): the Redis round-trip
time, the uncontended call against a minimal design, and the cross-process
wake-up, each the median of ``--speed-runs`` runs.

N processes x M threads call a function that sleeps ``--work-ms`` (simulated
I/O). Each round is released at once in every process (a Redis barrier, then
a thread barrier) and uses fresh keys: "one key" gives every caller the same
key; "many keys" gives each thread index its own key (the same in every
process, so only processes share it); "distinct" gives every thread of
every process its own key, shared by nobody. Reported: executions (total and per
round), Redis commands per call (INFO commandstats deltas: every command,
including those run inside RedisGroup's Lua scripts, but not the barrier's
nor connection handshakes), round trips per call (the commands a client
sent itself), p50/p99 latency per call, calls per second (wall time of the
run), and the wake-up messages each process's listener received (fan-out:
a process hears only of flights it waits on).

Uses SINGLEFLIGHT_REDIS_URL, or starts a private redis-server on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _redis_speed
else:
    from . import _redis_speed

# The benchmark's own barrier and bookkeeping, and per-connection handshakes.
EXCLUDED = {"cmdstat_blpop", "cmdstat_rpush", "cmdstat_info", "cmdstat_del", "cmdstat_client", "cmdstat_hello"}
# A cluster client's own topology reads.
EXCLUDED |= {"cmdstat_cluster", "cmdstat_command", "cmdstat_ping"}
# Commands a client sends itself (the rest, PUBLISH included, run inside RedisGroup's Lua scripts).
ROUND_TRIPS = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_script", "cmdstat_subscribe", "cmdstat_unsubscribe"}
ROUND_TRIPS |= {"cmdstat_ssubscribe", "cmdstat_sunsubscribe"}


def worker(cfg: dict[str, Any]) -> None:
    from singleflight_sync import Group  # noqa: PLC0415 - workers import what they use
    from singleflight_sync.redis import RedisGroup  # noqa: PLC0415

    r = _redis_speed.control_client(cfg["url"])  # the barrier; a RedisCluster for a cluster URL
    ns, mode, threads, work = cfg["ns"], cfg["mode"], cfg["threads"], cfg["work_ms"] / 1000
    group: Any = None
    if mode == "group":
        group = Group()
    elif mode == "redis":
        group = RedisGroup(cfg["url"], namespace=ns)
    executions = 0
    count_lock = threading.Lock()

    def fn(key: str) -> str:
        nonlocal executions
        with count_lock:
            executions += 1
        time.sleep(work)
        return key

    latencies: list[float] = []
    for rnd in range(cfg["rounds"]):
        gate = threading.Barrier(threads + 1)

        def call(index: int, rnd: int = rnd, gate: threading.Barrier = gate) -> None:
            if cfg["keys"] == "one":
                key = f"r{rnd}"
            elif cfg["keys"] == "many":
                key = f"r{rnd}:t{index}"
            else:  # "distinct": no other process asks for it
                key = f"r{rnd}:p{os.getpid()}:t{index}"
            gate.wait()
            t0 = time.perf_counter()
            value = fn(key) if group is None else group.do(key, fn, key)
            elapsed = time.perf_counter() - t0
            assert value == key
            with count_lock:
                latencies.append(elapsed)

        pool = [threading.Thread(target=call, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        r.rpush(f"{ns}:ready", os.getpid())
        r.blpop([f"{ns}:go"], timeout=60)
        gate.wait()
        for t in pool:
            t.join()
    received = 0
    if isinstance(group, RedisGroup):
        received = group._listener.received  # the benchmark reads the fan-out
        group.close()
    r.close()
    print(json.dumps({"executions": executions, "latencies": latencies, "received": received}))


def commandstats(client: Any) -> tuple[int, int]:
    """(all commands, round trips) so far, from INFO commandstats (of every master, in a cluster)."""
    stats = _redis_speed.command_stats(client)
    total = sum(v for k, v in stats.items() if k not in EXCLUDED)
    trips = sum(v for k, v in stats.items() if k in ROUND_TRIPS)
    return total, trips


def run(url: str, client: Any, mode: str, keys: str, args: argparse.Namespace) -> dict[str, Any]:
    ns = f"bench-{mode}-{keys}-{time.monotonic_ns()}"
    cfg = {
        "url": url,
        "ns": ns,
        "mode": mode,
        "keys": keys,
        "threads": args.threads,
        "rounds": args.rounds,
        "work_ms": args.work_ms,
    }
    before = commandstats(client)
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(cfg)], stdout=subprocess.PIPE)
        for _ in range(args.procs)
    ]
    for _ in range(args.rounds):
        for _ in range(args.procs):
            if client.blpop([f"{ns}:ready"], timeout=60) is None:
                raise SystemExit("a worker did not reach the barrier")
        client.rpush(f"{ns}:go", *["go"] * args.procs)
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        if p.returncode != 0:
            msg = f"worker failed with {p.returncode}"
            raise SystemExit(msg)
        outs.append(json.loads(out.decode().strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    after = commandstats(client)
    commands, trips = after[0] - before[0], after[1] - before[1]
    latencies = sorted(x for o in outs for x in o["latencies"])
    calls = len(latencies)
    executions = sum(o["executions"] for o in outs)
    return {
        "mode": mode,
        "keys": keys,
        "calls": calls,
        "executions": executions,
        "per_round": executions / args.rounds,
        "cmds_per_call": commands / calls,
        "trips_per_call": trips / calls,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(calls - 1, int(calls * 0.99))] * 1000,
        "calls_per_s": calls / wall,
        "received": max(o["received"] for o in outs),
        "flights": executions,
    }


def start_server() -> tuple[str, subprocess.Popen[bytes]]:
    binary = os.environ.get("SINGLEFLIGHT_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        raise SystemExit("set SINGLEFLIGHT_REDIS_URL or install redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return f"redis://127.0.0.1:{port}/0", proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--speed-runs", type=int, default=5)
    args = parser.parse_args()

    import redis  # noqa: PLC0415 - the worker path must not need it before parsing

    server = None
    url = os.environ.get("SINGLEFLIGHT_REDIS_URL")
    if not url:
        url, server = start_server()
    client = _redis_speed.control_client(url)
    try:
        speed = _redis_speed.report(client, url, runs=args.speed_runs) if args.speed_runs else []
        kinds = ("one", "many", "distinct")
        rows = [run(url, client, mode, keys, args) for keys in kinds for mode in ("none", "group", "redis")]
    finally:
        client.close()
        if server is not None:
            server.terminate()
            server.wait()

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(
        f"Python {sys.version.split()[0]}{'' if gil else ' (free-threaded, GIL off)'}, redis-py {redis.__version__}; "
        f"{args.procs} processes x {args.threads} threads, {args.rounds} rounds, {args.work_ms:g} ms of work"
    )
    header = f"{'keys':<8} {'coordination':<13} {'calls':>6} {'execs':>6} {'execs/round':>11} "
    header += f"{'cmds/call':>9} {'round trips/call':>16} {'p50 ms':>7} {'p99 ms':>7} {'calls/s':>8} "
    header += f"{'wake-ups heard/process':>23}"
    for line in speed:
        print(line)
    print(header)
    print("-" * len(header))
    names = {"none": "none", "group": "Group (local)", "redis": "RedisGroup"}
    for row in rows:
        print(
            f"{row['keys']:<8} {names[row['mode']]:<13} {row['calls']:>6} {row['executions']:>6} "
            f"{row['per_round']:>11.1f} {row['cmds_per_call']:>9.3f} {row['trips_per_call']:>16.3f} "
            f"{row['p50']:>7.1f} {row['p99']:>7.1f} {row['calls_per_s']:>8.0f} "
            + (f"{row['received']:>10} of {row['flights']:<6}" if row["mode"] == "redis" else f"{'':>23}")
        )


if __name__ == "__main__":
    main()
