"""RedisGroup across real processes: subprocesses running redis_worker.py."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
import traceback
from typing import Any

import pytest

if importlib.util.find_spec("redis") is None and not os.environ.get("CI"):
    pytest.skip("redis-py is not installed (pip install -e '.[redis]')", allow_module_level=True)

from singleflight_sync.redis import RemoteFlightError
from singleflight_sync.redis._keys import _Names, key_name


def wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Poll a condition on the server (never a fixed sleep) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def subscribers(client: Any, channel: str) -> int:
    return int(dict(client.pubsub_numsub(channel))[channel.encode()])


def test_five_processes_twenty_threads_one_execution_per_flight(redis_url, ns, client, spawn):
    procs, threads, flights = 5, 20, 10
    config = {"url": redis_url, "ns": ns, "key": "herd", "threads": threads, "flights": flights, "work": {"sleep": 0.2}}
    workers = [spawn(config) for _ in range(procs)]
    for _ in range(flights):
        for _ in range(procs):  # every process is parked at the barrier
            assert client.blpop([f"{ns}:ready"], timeout=30) is not None, "a worker did not reach the barrier"
        client.rpush(f"{ns}:go", *["go"] * procs)
    outputs = [w.result(timeout=60) for w in workers]

    assert int(client.get(f"{ns}:execs")) == flights
    for flight in range(flights):
        outcomes = [o for out in outputs for o in out["results"][flight]]
        assert len(outcomes) == procs * threads
        assert all("ok" in o for o in outcomes), outcomes
        values = {json.dumps(o["ok"], sort_keys=True) for o in outcomes}
        assert len(values) == 1, f"flight {flight}: callers got {len(values)} different values"
        assert outcomes[0]["ok"]["flight"] == flight
    stats = [out["stats"] for out in outputs]
    assert sum(s["executions"] for s in stats) == flights
    assert sum(s["calls"] for s in stats) == procs * threads * flights
    # Every caller either led its process's flight or joined it locally.
    assert sum(s["local_shares"] for s in stats) + procs * flights == procs * threads * flights
    assert sum(s["remote_shares"] for s in stats) == (procs - 1) * flights
    assert sum(s["fallbacks"] for s in stats) == 0


def test_killed_leader_is_taken_over_within_the_lease(redis_url, ns, client, spawn):
    lease = 1.0
    # recheck is long on purpose: the followers must wake when the lease's
    # remaining time (PTTL) runs out, not on a periodic re-check.
    config = {
        "url": redis_url,
        "ns": ns,
        "key": "victim",
        "lease": lease,
        "recheck": 5.0,
        "result_ttl": 5.0,
        "work": {"hang_first": True},
    }
    leader = spawn({**config, "barrier": False})
    assert client.blpop([f"{ns}:started"], timeout=30) is not None  # the leader holds the lease, mid-work
    followers = [spawn(config) for _ in range(2)]
    for _ in followers:
        assert client.blpop([f"{ns}:ready"], timeout=30) is not None
    client.rpush(f"{ns}:go", "go", "go")
    # Both followers listen on the key's wake-up channel; they read the lease
    # right after subscribing, long before it expires.
    channel = _Names(ns, key_name("victim")).done
    wait_for(lambda: subscribers(client, channel) >= 2, "the followers to wait on the lease")

    killed_at = time.time()
    leader.kill()
    outputs = [f.result(timeout=30) for f in followers]

    assert int(client.get(f"{ns}:execs")) == 2  # the killed run and exactly one takeover
    outcomes = [out["results"][0][0] for out in outputs]
    assert all("ok" in o for o in outcomes), outcomes
    assert outcomes[0]["ok"] == outcomes[1]["ok"]
    took_over_after = outcomes[0]["ok"]["at"] - killed_at
    assert took_over_after <= lease + 0.2, f"takeover took {took_over_after:.3f}s after the kill"
    assert sum(out["stats"]["takeovers"] for out in outputs) == 1


def test_work_longer_than_the_lease_runs_once(redis_url, ns, client, spawn, make_group):
    config = {"url": redis_url, "ns": ns, "key": "long", "lease": 0.3, "barrier": False}
    leader = spawn({**config, "work": {"announce": True, "sleep": 1.2}})
    assert client.blpop([f"{ns}:started"], timeout=30) is not None
    group = make_group(lease=0.3, recheck=0.2)

    def must_not_run(flight: int) -> None:
        client.incr(f"{ns}:execs")
        msg = "the follower ran the work although the leader's lease was renewed"
        raise AssertionError(msg)

    value = group.do("long", must_not_run, 0)
    out = leader.result()
    assert value == out["results"][0][0]["ok"]
    assert int(client.get(f"{ns}:execs")) == 1
    assert out["stats"]["lost_leases"] == 0
    assert group.redis_stats().remote_shares == 1


def test_leader_exception_reaches_other_processes(redis_url, ns, client, spawn, make_group):
    config = {"url": redis_url, "ns": ns, "key": "fails", "barrier": False}
    leader = spawn({**config, "work": {"block": True, "raise": "boom 42"}})
    assert client.blpop([f"{ns}:started"], timeout=30) is not None
    group = make_group()
    caught: list[BaseException] = []

    def follow() -> None:
        try:
            group.do("fails", lambda flight: pytest.fail("the follower must not run the work"), 0)
        except BaseException as exc:
            caught.append(exc)

    t = threading.Thread(target=follow)
    t.start()
    wait_for(lambda: group._remote_waits == 1, "the follower to wait on the lease")
    client.rpush(f"{ns}:release", "go")
    t.join(30)
    out = leader.result()

    assert out["results"][0][0] == {"error": "ValueError", "message": "boom 42", "at": out["results"][0][0]["at"]}
    [exc] = caught
    assert isinstance(exc, RemoteFlightError)
    assert exc.remote_type == "ValueError"
    assert exc.remote_message == "boom 42"
    assert "ValueError: boom 42" in exc.remote_traceback
    assert "in work" in exc.remote_traceback  # the leader's own frames, as text
    assert "ValueError: boom 42" in str(exc)
    assert "in work" in "".join(traceback.format_exception(exc))  # printed with the leader's traceback
    assert int(client.get(f"{ns}:execs")) == 1


def test_rerun_policy_runs_the_work_again_after_a_remote_error(redis_url, ns, client, spawn, make_group):
    config = {"url": redis_url, "ns": ns, "key": "flaky", "barrier": False, "on_error": "rerun"}
    leader = spawn({**config, "work": {"block": True, "raise_first": "first try fails"}})
    assert client.blpop([f"{ns}:started"], timeout=30) is not None
    group = make_group(on_error="rerun")
    values: list[Any] = []

    def rerun(flight: int) -> str:
        client.incr(f"{ns}:execs")
        return "second try"

    t = threading.Thread(target=lambda: values.append(group.do("flaky", rerun, 0)))
    t.start()
    wait_for(lambda: group._remote_waits == 1, "the follower to wait on the lease")
    client.rpush(f"{ns}:release", "go")
    t.join(30)
    out = leader.result()

    assert out["results"][0][0]["error"] == "ValueError"
    assert values == ["second try"]
    assert int(client.get(f"{ns}:execs")) == 2
    assert group.redis_stats().takeovers == 1


def test_lost_publish_from_another_process(redis_url, ns, client, spawn, make_group):
    recheck = 0.3
    config = {"url": redis_url, "ns": ns, "key": "quiet", "barrier": False, "work": {"block": True}}
    leader = spawn(config, env={"SINGLEFLIGHT_REDIS_DROP_PUBLISH": "1"})
    assert client.blpop([f"{ns}:started"], timeout=30) is not None
    group = make_group(recheck=recheck)
    done: list[Any] = []
    follower = threading.Thread(target=lambda: done.append((group.do("quiet", str, "wrong"), time.time())))
    follower.start()
    wait_for(lambda: group._remote_waits == 1, "the follower to wait on the lease")
    client.rpush(f"{ns}:release", "go")
    out = leader.result()
    follower.join(10)
    leader_value = out["results"][0][0]["ok"]
    [(value, finished_at)] = done
    assert value == leader_value
    assert finished_at - leader_value["at"] <= recheck + 0.2, "the follower did not re-check within the bound"
    assert int(client.get(f"{ns}:execs")) == 1
