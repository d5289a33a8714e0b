"""A leader that lost its lease never stores or publishes over a newer flight, and flights are numbered.

Real processes and a real redis-server: the old leader is a subprocess that
is SIGSTOPped past its lease (its renewer stops with it), as a GC pause or a
VM migration would do, and resumed once newer flights have run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from singleflight_sync import singleflight  # noqa: E402 - after the skip
from singleflight_sync.redis import RedisGroup, current_fence  # noqa: E402

OLD_LEADER = r"""
import json, sys
from singleflight_sync.redis import RedisGroup

url, ns = sys.argv[1], sys.argv[2]
group = RedisGroup(url, namespace=ns, lease=0.6, recheck=0.2, linger=30)

def work():
    print("started", flush=True)
    sys.stdin.readline()  # paused (SIGSTOP) and later told to finish
    return "v1"

value = group.do("k", work)
print(json.dumps({"value": value, "lost_leases": group.redis_stats().lost_leases}), flush=True)
group.close()
"""


def wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_paused_leader_neither_overwrites_nor_wakes_newer_flights(redis_url: str, ns: str, client: Any) -> None:
    old = subprocess.Popen(
        [sys.executable, "-c", OLD_LEADER, redis_url, ns],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    groups: list[RedisGroup[Any, Any]] = []
    try:
        assert old.stdout is not None
        assert old.stdin is not None
        assert old.stdout.readline().strip() == "started"
        old.send_signal(signal.SIGSTOP)  # paused past its 0.6 s lease

        # (a) B takes over once the lease has expired, runs flight 2 and lingers v2.
        b = RedisGroup(redis_url, namespace=ns, lease=5, recheck=0.2, linger=30)
        groups.append(b)
        assert b.do("k", lambda: "v2") == "v2"
        assert b.redis_stats().takeovers == 1

        # (b) E runs flight 3 (held), and F waits on flight 3 from another group.
        e = RedisGroup(redis_url, namespace=ns, lease=5, recheck=0.2)
        f = RedisGroup(redis_url, namespace=ns, lease=5, recheck=5)
        groups += [e, f]
        release = threading.Event()
        results: dict[str, Any] = {}
        e_thread = threading.Thread(target=lambda: results.update(e=e.do("k", lambda: release.wait(20) and "v3")))
        e_thread.start()
        wait_for(lambda: e.redis_stats().executions == 1, "E to lead flight 3")
        f_thread = threading.Thread(target=lambda: results.update(f=f.do("k", lambda: "f ran it")))
        f_thread.start()
        wait_for(lambda: f._remote_waits == 1, "F to wait on flight 3")

        # The old leader resumes and finishes flight 1 with v1.
        old.send_signal(signal.SIGCONT)
        old.stdin.write("finish\n")
        old.stdin.flush()
        report = json.loads(old.stdout.readline())
        assert old.wait(15) == 0
        assert report == {"value": "v1", "lost_leases": 1}  # v1 went to its own caller only

        # Nothing of v1 reached Redis: the lingering value is still v2 ...
        late = RedisGroup(redis_url, namespace=ns, linger=30)
        groups.append(late)
        assert late.do("k", lambda: pytest.fail("ran although v2 lingers")) == "v2"
        # ... and F, waiting on flight 3, was not woken with v1.
        assert f_thread.is_alive()
        assert "f" not in results
        release.set()
        e_thread.join(15)
        f_thread.join(15)
        assert results == {"e": "v3", "f": "v3"}
    finally:
        if old.poll() is None:
            old.send_signal(signal.SIGCONT)
            old.kill()
            old.wait(10)
        for stream in (old.stdin, old.stdout):
            if stream is not None:
                stream.close()
        for g in groups:
            g.close()


def test_flights_are_numbered_and_the_function_can_ask(make_group: Any) -> None:
    group = make_group()
    fences: list[int] = []

    @singleflight(group=group)
    def write(symbol: str) -> int:
        fences.append(current_fence())
        return len(fences)

    write("BTC")
    write("BTC")
    write("ETH")
    assert fences[1] == fences[0] + 1  # one key: each flight one higher
    assert fences[2] >= 1
    with pytest.raises(LookupError, match="current_fence"):
        current_fence()


def test_the_fencing_number_lives_under_the_keys_hash_tag(make_group: Any, client: Any) -> None:
    group = make_group()
    group.do("k", int)
    lock, fence = group.redis_key("k", "lock"), group.redis_key("k", "fence")
    tag = lock[lock.index("{") : lock.index("}") + 1]
    assert tag in fence
    assert int(client.get(fence)) == 1
    assert 0 < client.pttl(fence)


def test_finished_flights_are_never_reported_as_lost(make_group: Any, caplog: pytest.LogCaptureFixture) -> None:
    # A renewal every 10 ms races the end of every short flight: a renewal that
    # finds the lock gone because its flight just finished is no loss.
    group = make_group(lease=0.03, recheck=0.01, result_ttl=0.05)
    caplog.set_level("WARNING", logger="singleflight_sync")
    for i in range(100):
        group.do(f"k{i % 5}", lambda i=i: time.sleep(0.005 if i % 2 else 0.012) or i)
    assert group.redis_stats().lost_leases == 0
    assert not [r for r in caplog.records if "expired" in r.getMessage()], caplog.text
