"""RedisGroup's speed next to the Redis round-trip time: the uncontended call and the cross-process wake-up.

Used by ``bench_redis.py``. Every figure is measured in the same run as the
round-trip time (redis-py ``PING``, interleaved with the calls), and each is
the median over several runs.

* **Uncontended call on a new key**: ``RedisGroup.do()`` against a minimal
  design written here with the same round trips (one acquire script, the
  work, one finish script), calls interleaved one by one.
* **Cross-process wake-up**: from the leader's ``do()`` returning in this
  process to the follower's ``do()`` returning in another process, which
  was waiting on the flight (it reports, through Redis, once it waits).
"""

from __future__ import annotations

import cProfile
import json
import pstats
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# A minimal design, for comparison only: no fencing, no deadlines, no codec.
_MIN_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return 1
"""
_MIN_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', 5000)
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1
"""


class MinimalGroup:
    """The least a cross-process singleflight does for an uncontended flight: two scripts."""

    def __init__(self, client: Any, ns: str) -> None:
        self._client = client
        self._ns = ns
        self._acquire = client.register_script(_MIN_ACQUIRE)
        self._finish = client.register_script(_MIN_FINISH)
        self._serial = 0

    def do(self, key: str, fn: Any, *args: Any) -> Any:
        self._serial += 1
        token = str(self._serial)
        base = f"{self._ns}:{{{key}}}"
        if self._acquire(keys=[base + ":lock"], args=[token, 10_000]) != 0:
            raise RuntimeError("the benchmark's keys are new: never held")
        value = fn(*args)
        self._finish(keys=[base + ":lock", base + ":result", base + ":done"], args=[token, json.dumps(value)])
        return value


def control_client(url: str) -> Any:
    """The benchmark's own client (barriers, INFO, PING): a RedisCluster for a ``redis+cluster://`` URL."""
    import redis  # noqa: PLC0415 - only the benchmark's processes need it
    from redis.cluster import ClusterNode, RedisCluster  # noqa: PLC0415

    if url.startswith("redis+cluster://"):
        hosts = [h.split(":") for h in url.split("//", 1)[1].split("/", maxsplit=1)[0].split(",")]
        nodes = [ClusterNode(host, int(port)) for host, port in hosts]
        return RedisCluster(startup_nodes=nodes, socket_timeout=120)
    return redis.Redis.from_url(url, socket_timeout=120)  # BLPOP at a barrier waits up to 60 s


def command_stats(client: Any) -> dict[str, int]:
    """Calls per command so far (INFO commandstats), summed over the masters of a cluster."""
    nodes = [n.redis_connection for n in client.get_primaries()] if hasattr(client, "get_primaries") else [client]
    total: dict[str, int] = {}
    for node in nodes:
        for name, v in node.info("commandstats").items():
            total[name] = total.get(name, 0) + int(v["calls"])
    return total


def _server_commands(client: Any) -> int:
    stats = command_stats(client)
    return sum(v for k, v in stats.items() if k not in {"cmdstat_info", "cmdstat_ping"})


def uncontended(client: Any, url: str, *, calls: int, runs: int) -> dict[str, float]:
    """Medians over ``runs`` runs of ``calls`` interleaved calls: RedisGroup, the minimal design, PING."""
    from singleflight_sync.redis import RedisGroup  # noqa: PLC0415

    ns = f"bench-speed-{time.monotonic_ns()}"
    group = RedisGroup(url, namespace=ns)
    minimal = MinimalGroup(client, ns + "-min")
    sequence = iter(range(10**9))
    group.do(f"warm-{next(sequence)}", int)
    minimal.do(f"warm-{next(sequence)}", int)
    ours: list[float] = []
    theirs: list[float] = []
    pings: list[float] = []
    clock = time.perf_counter
    for _ in range(runs):
        a: list[float] = []
        b: list[float] = []
        p: list[float] = []
        for _ in range(calls):
            t0 = clock()
            client.ping()
            t1 = clock()
            group.do(f"k{next(sequence)}", int, 7)
            t2 = clock()
            minimal.do(f"k{next(sequence)}", int, 7)
            t3 = clock()
            p.append(t1 - t0)
            a.append(t2 - t1)
            b.append(t3 - t2)
        ours.append(statistics.median(a))
        theirs.append(statistics.median(b))
        pings.append(statistics.median(p))
    # Server commands per flight (those inside the scripts included) and
    # Python function calls per do(), each over 200 more flights.
    before = _server_commands(client)
    for _ in range(200):
        group.do(f"k{next(sequence)}", int, 7)
    commands = (_server_commands(client) - before) / 200
    before = _server_commands(client)
    for _ in range(200):
        minimal.do(f"k{next(sequence)}", int, 7)
    minimal_commands = (_server_commands(client) - before) / 200
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(200):
        group.do(f"k{next(sequence)}", int, 7)
    profiler.disable()
    python_calls = pstats.Stats(profiler).total_calls / 200  # type: ignore[attr-defined]
    group.close()
    return {
        "rtt_us": statistics.median(pings) * 1e6,
        "ours_us": statistics.median(ours) * 1e6,
        "minimal_us": statistics.median(theirs) * 1e6,
        "ratio": statistics.median(o / m for o, m in zip(ours, theirs, strict=True)),
        "commands": commands,
        "minimal_commands": minimal_commands,
        "python_calls": python_calls,
    }


_FOLLOWER = r"""
import json, sys, threading, time
from singleflight_sync.redis import RedisGroup
sys.path.insert(0, sys.argv[4])
from _redis_speed import control_client

url, ns, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = control_client(url)
group = RedisGroup(url, namespace=ns, recheck=10, result_ttl=10)
ends = []
for i in range(rounds):
    key = f"wake-{i}"
    def report():
        # The follower counts itself in _remote_waits once it has read the
        # lease with the key's channel subscribed, just before it waits.
        while True:
            with group._lock:
                if group._remote_waits:
                    break
            time.sleep(0.0005)
        r.rpush(f"{ns}:waiting", i)
    threading.Thread(target=report, daemon=True).start()
    r.blpop([f"{ns}:held"], timeout=30)  # the leader holds key's lease
    value = group.do(key, lambda: "follower ran it")
    ends.append(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process
    assert value == key, value
group.close()
print(json.dumps(ends))
"""


def wakeup(client: Any, url: str, *, rounds: int) -> dict[str, float]:
    """Cross-process wake-up: leader's do() returning here -> follower's do() returning there."""
    from singleflight_sync.redis import RedisGroup  # noqa: PLC0415

    ns = f"bench-wake-{time.monotonic_ns()}"
    group = RedisGroup(url, namespace=ns)
    follower = subprocess.Popen(
        [sys.executable, "-c", _FOLLOWER, url, ns, str(rounds), str(Path(__file__).resolve().parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    returned: list[float] = []
    pings: list[float] = []
    for i in range(rounds):
        release = threading.Event()
        key = f"wake-{i}"

        def work(release: threading.Event = release, key: str = key) -> str:
            client.rpush(f"{ns}:held", 1)
            release.wait(30)
            return key

        done: list[float] = []

        def lead(work: Any = work, key: str = key, done: list[float] = done) -> None:
            group.do(key, work)
            done.append(time.monotonic())

        leader = threading.Thread(target=lead)
        leader.start()
        if client.blpop([f"{ns}:waiting"], timeout=30) is None:
            raise SystemExit("the follower did not wait")
        t0 = time.perf_counter()
        client.ping()
        pings.append(time.perf_counter() - t0)
        release.set()
        leader.join()
        returned.append(done[0])
    out, _ = follower.communicate(timeout=60)
    group.close()
    ends = json.loads(out.strip().splitlines()[-1])
    gaps = sorted(e - s for s, e in zip(returned, ends, strict=True))
    rtt = statistics.median(pings)
    return {
        "rtt_us": rtt * 1e6,
        "p50_us": statistics.median(gaps) * 1e6,
        "p90_us": gaps[int(len(gaps) * 0.9)] * 1e6,
        "p50_rtt": statistics.median(gaps) / rtt,
    }


def report(client: Any, url: str, *, runs: int) -> list[str]:
    """The speed lines of bench_redis.py's output."""
    u = uncontended(client, url, calls=400, runs=runs)
    w = [wakeup(client, url, rounds=60) for _ in range(runs)]
    rtt = statistics.median(x["rtt_us"] for x in w)
    wake = statistics.median(x["p50_us"] for x in w)
    wake90 = statistics.median(x["p90_us"] for x in w)
    wake_rtt = statistics.median(x["p50_rtt"] for x in w)
    uncontended_line = (
        f"uncontended do() on a new key: RedisGroup {u['ours_us']:.0f} us, minimal design {u['minimal_us']:.0f} us, "
        f"ratio {u['ratio']:.2f}x (= {u['ours_us'] / u['rtt_us']:.1f} RTT vs {u['minimal_us'] / u['rtt_us']:.1f} RTT)"
    )
    commands_line = (
        f"  server commands per flight: RedisGroup {u['commands']:.1f}, minimal design {u['minimal_commands']:.1f}; "
        f"round trips per flight: 2; Python function calls per do(): {u['python_calls']:.0f}"
    )
    wake_line = (
        f"cross-process wake-up (leader's do() returns -> follower's do() returns): p50 {wake:.0f} us "
        f"= {wake_rtt:.2f} RTT (RTT {rtt:.0f} us), p90 {wake90:.0f} us"
    )
    return [
        f"round trip (redis-py PING, interleaved): {u['rtt_us']:.0f} us",
        uncontended_line,
        commands_line,
        wake_line,
    ]
