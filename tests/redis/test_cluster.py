"""RedisGroup on a real Redis Cluster: 3 masters with a replica each, formed by redis-cli.

Every key of one flight (lease, fencing counter, results, linger) and its
wake-up channel share one hash tag, so each script runs on one slot, and
wake-ups ride sharded pub/sub (SPUBLISH/SSUBSCRIBE) on that slot's master.
Worker processes are real processes; a failover is a real SIGKILL.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

redis = pytest.importorskip("redis")

from failover_worker import failover_round  # noqa: E402 - tests/redis is on sys.path
from flights import lead_and_follow  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402 - after the skip

from singleflight_sync.redis import RedisGroup  # noqa: E402
from singleflight_sync.redis._keys import _Names, key_name  # noqa: E402

if TYPE_CHECKING:
    from topology import Cluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.topology]

ROOT = str(Path(__file__).resolve().parents[2])

# One process of the 5 x 20 test: in round j, thread t calls key 5t + j, as
# thread t of every other process does; each round starts at a barrier shared
# through Redis.
WORKER = r"""
import json, os, sys, threading, time, uuid
from redis.cluster import RedisCluster
from singleflight_sync.redis import RedisGroup

url, ns, threads, per_thread, work_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
host, port = url.split("//")[1].split(",")[0].split(":")
control = RedisCluster(host=host, port=int(port))
group = RedisGroup(url, namespace=ns, timeout=30)

def work(key):
    control.incr(f"{ns}:execs:{key}")
    time.sleep(work_s)
    return {"key": key, "token": uuid.uuid4().hex, "pid": os.getpid()}

results = {}
lock = threading.Lock()
gate = threading.Barrier(threads + 1)
done = threading.Barrier(threads + 1)

def run(t):
    for j in range(per_thread):
        gate.wait()  # one round: every process's thread t calls the same key at once
        key = f"k{t * per_thread + j}"
        value = group.do(key, work, key)
        with lock:
            results.setdefault(key, []).append(value["token"])
        done.wait()  # the round ends when every thread of this process has its value

pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for t in pool:
    t.start()
for _ in range(per_thread):
    control.rpush(f"{ns}:ready", os.getpid())
    control.blpop([f"{ns}:go"], timeout=60)
    gate.wait()
    done.wait()
for t in pool:
    t.join()
stats = group.redis_stats()._asdict()
group.close()
print(json.dumps({"results": results, "stats": stats}))
"""


def _url(cluster: Cluster) -> str:
    return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in cluster.startup_nodes[:2])


def _client(cluster: Cluster) -> Any:
    host, port = cluster.startup_nodes[0]
    return RedisCluster(host=host, port=port, socket_timeout=5)


def test_distinct_flights_spread_over_every_master(shared_cluster: Cluster) -> None:
    """10,000 keys: their flights land on all three masters, about a third each."""
    rc = _client(shared_cluster)
    try:
        per_node = Counter(rc.get_node_from_key(_Names("ns", key_name(f"user:{i}")).lock).name for i in range(10_000))
    finally:
        rc.close()
    assert len(per_node) == 3, per_node
    assert min(per_node.values()) > 2_800, per_node  # 3,333 each on average


def test_five_processes_twenty_threads_one_execution_per_flight(shared_cluster: Cluster, ns: str) -> None:
    keys, threads, per_thread = 100, 20, 5
    url = _url(shared_cluster)
    rc = _client(shared_cluster)
    env = {"PYTHONPATH": ROOT}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, ns, str(threads), str(per_thread), "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**_environ(), **env},
        )
        for _ in range(5)
    ]
    try:
        for _ in range(per_thread):
            for _ in procs:  # every process is parked at the round's barrier
                assert rc.blpop([f"{ns}:ready"], timeout=60) is not None
            rc.rpush(f"{ns}:go", *["go"] * len(procs))
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=90)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
        executions = {f"k{i}": int(rc.get(f"{ns}:execs:k{i}") or 0) for i in range(keys)}
        masters = Counter(rc.get_node_from_key(_Names(ns, key_name(f"k{i}")).lock).name for i in range(keys))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        rc.close()
    assert len(masters) == 3, masters  # the keys live on every master
    stats = [out["stats"] for out in outs]
    assert set(executions.values()) == {1}, ({k: n for k, n in executions.items() if n != 1}, json.dumps(stats))
    for i in range(keys):
        tokens = {token for out in outs for token in out["results"][f"k{i}"]}
        assert len(tokens) == 1, (i, tokens)  # every caller in every process got the same value
    assert sum(out["stats"]["remote_shares"] for out in outs) == keys * 4  # 4 processes follow each flight
    assert sum(out["stats"]["fallbacks"] for out in outs) == 0


def _environ() -> dict[str, str]:
    import os  # noqa: PLC0415

    return dict(os.environ)


def test_a_follower_listens_only_on_the_keys_master(shared_cluster: Cluster, ns: str) -> None:
    """Sharded wake-ups: a waiting process subscribes on the master of the key's slot, nowhere else."""
    url = _url(shared_cluster)
    with RedisGroup(url, namespace=ns) as leader, RedisGroup(url, namespace=ns, recheck=10, result_ttl=10) as follower:
        _, got, finish = lead_and_follow(leader, follower, "k", "v")
        channel = follower.redis_key("k", "done")
        rc = _client(shared_cluster)
        try:
            owner = rc.get_node_from_key(channel)
            counts = {node.name: _shard_subscribers(node.port, channel) for node in rc.get_primaries()}
        finally:
            rc.close()
        started_wait = time.monotonic()
        finish()
        assert time.monotonic() - started_wait < 5  # woken by the sharded publish, not the 10 s re-check
        assert sorted(got) == [("follower", "v"), ("leader", "v")]
        assert counts[owner.name] == 1
        assert sum(counts.values()) == 1
        assert follower._listener.received == 1


def test_one_process_waits_on_keys_of_every_master_at_once(shared_cluster: Cluster, ns: str) -> None:
    """A follower process waiting on many keys at once subscribes to each key's shard and is woken by each."""
    url = _url(shared_cluster)
    keys = [f"many-{i}" for i in range(12)]
    with RedisGroup(url, namespace=ns) as leader, RedisGroup(url, namespace=ns, recheck=10, result_ttl=10) as follower:
        release = threading.Event()
        started = threading.Barrier(len(keys) + 1)

        def work(key: str) -> str:
            started.wait(30)
            assert release.wait(30)
            return key

        got: list[str] = []
        leads = [threading.Thread(target=leader.do, args=(k, work, k)) for k in keys]
        for t in leads:
            t.start()
        started.wait(30)
        follows = [threading.Thread(target=lambda k=k: got.append(follower.do(k, str, "wrong"))) for k in keys]
        for t in follows:
            t.start()
        deadline = time.monotonic() + 10
        while not all(follower._listener.live(follower.redis_key(k, "done").encode()) for k in keys):
            assert time.monotonic() < deadline, "not every key's shard channel was subscribed"
            time.sleep(0.005)
        released_at = time.monotonic()
        release.set()
        for t in leads + follows:
            t.join(30)
        assert time.monotonic() - released_at < 5  # woken by the publishes, not the 10 s re-check
    assert sorted(got) == sorted(keys)
    assert follower._listener.received == len(keys)
    rc = _client(shared_cluster)
    try:
        masters = {rc.get_node_from_key(follower.redis_key(k, "done")).name for k in keys}
    finally:
        rc.close()
    assert len(masters) == 3


def test_a_master_killed_mid_flight(cluster: Cluster, ns: str) -> None:
    """SIGKILL the master of the flight's slot while followers in two processes wait: none hangs or errs."""
    url = _url(cluster)
    control = _client(cluster)
    channel = _Names(ns, key_name("victim")).done
    owner = cluster.node_for_slot(control.keyslot(channel))
    try:
        seen = failover_round(
            url,
            ns,
            control,
            waiting=lambda: _shard_subscribers(owner.port, channel),
            kill=lambda: cluster.kill_master_and_wait_for_promotion(owner),
        )
    finally:
        control.close()
    print(
        f"\ncluster failover: replica promoted {seen['failed_over']:.2f}s after the SIGKILL, last caller answered "
        f"after {seen['answered']:.2f}s, {seen['executions']} execution(s)"
    )


def _shard_subscribers(port: int, channel: str) -> int:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # [channel, count]
        return int(reply[1])
    finally:
        client.close()


def test_flights_run_on_while_their_slot_is_resharded(cluster: Cluster, ns: str) -> None:
    """redis-cli --cluster reshard moves the flights' slot to another master while three groups run them.

    MOVED and ASK (and TRYAGAIN while the slot's keys are split) are retried
    within each caller's deadline. No caller fails, every value comes from an
    execution, and executions never overlap: the lease holds across the move.
    """
    rc = _client(cluster)
    source = cluster.masters()[0]
    slots = rc.execute_command("CLUSTER", "SLOTS")
    first = min(int(start) for start, _end, master, *_ in slots if int(master[1]) == source.port)
    # A key whose slot is the first one of its master: reshard moves the lowest slots first.
    key = next(f"r{i}" for i in range(1_000_000) if rc.keyslot(_Names(ns, key_name(f"r{i}")).lock) == first)
    target = next(m for m in cluster.masters() if m.port != source.port)
    ids = {n.port: n.cmd("CLUSTER", "MYID").strip() for n in (source, target)}

    intervals: list[tuple[float, float, str]] = []
    results: list[Any] = []
    lock = threading.Lock()
    stop = threading.Event()

    def work() -> str:
        start = time.monotonic()
        time.sleep(0.03)
        token = f"{start:.6f}"
        with lock:
            intervals.append((start, time.monotonic(), token))
        return token

    def caller(group: RedisGroup) -> None:
        while not stop.is_set():
            try:
                value: Any = group.do(key, work)
            except Exception as exc:  # reported below: no caller may fail
                value = exc
            with lock:
                results.append(value)

    url = _url(cluster)
    groups = [RedisGroup(url, namespace=ns, timeout=20) for _ in range(3)]
    threads = [threading.Thread(target=caller, args=(g,)) for g in groups for _ in range(3)]
    try:
        for t in threads:
            t.start()
        cli = [
            "redis-cli", "--cluster", "reshard", f"127.0.0.1:{source.port}",
            "--cluster-from", ids[source.port], "--cluster-to", ids[target.port],
            "--cluster-slots", "1", "--cluster-yes",
        ]  # fmt: skip
        out = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert cluster.node_for_slot(first) is target  # the slot moved
        time.sleep(0.3)  # flights go on on the new master for a moment (a duration, not a synchronisation)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for g in groups:
            g.close()
        rc.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    assert set(results) <= {token for _, _, token in intervals}
    ordered = sorted(intervals)
    for (_, end, _), (start, _, _) in itertools.pairwise(ordered):
        assert start >= end, "two executions of one key overlapped"
    assert len(results) > len(intervals)  # flights were shared, across the groups too
