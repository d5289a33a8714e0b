"""A process of the failover tests: ``python failover_worker.py <url> <ns> leader|follower <threads>``.

The leader runs the work of key "victim" until the test sets ``<ns>:release``;
followers start at a barrier (``<ns>:ready``/``<ns>:go``) and join the leader's
flight. Every execution counts in ``<ns>:execs`` and pushes its token to
``<ns>:tokens``. The URL is a ``redis+cluster://`` or ``redis+sentinel://`` one;
the last line printed is JSON: ``{"results": [...], "stats": {...}}``.

``failover_round`` is the test side: it starts a leader and two follower
processes, kills the server under them, releases the work and checks that
every caller got a value from one of at most two executions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = str(Path(__file__).resolve().parents[2])


def main(url: str, ns: str, role: str, threads: int) -> None:
    from redis.exceptions import RedisError  # noqa: PLC0415

    from singleflight_sync.redis import RedisGroup  # noqa: PLC0415 - imported only when run
    from singleflight_sync.redis._deploy import _client_from_url  # noqa: PLC0415

    control = _client_from_url(url)  # a RedisCluster, or the master a Sentinel names
    group = RedisGroup(url, namespace=ns, timeout=40)

    def work() -> str:
        control.incr(f"{ns}:execs")
        token = uuid.uuid4().hex
        control.rpush(f"{ns}:tokens", token)
        control.rpush(f"{ns}:started", os.getpid())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the test releases the work through Redis, from another process
            try:
                if control.get(f"{ns}:release"):
                    break
            except RedisError:
                pass  # the server is failing over: this scaffolding waits it out, as the work of a user would
            time.sleep(0.01)
        return token

    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            value: dict[str, Any] = {"ok": group.do("victim", work), "at": time.time()}
        except Exception as exc:  # reported to the test, which fails on it
            value = {"error": f"{type(exc).__name__}: {exc}", "at": time.time()}
        with lock:
            results.append(value)

    if role == "follower":
        control.rpush(f"{ns}:ready", os.getpid())
        control.blpop([f"{ns}:go"], timeout=60)
    pool = [threading.Thread(target=call) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stats = group.redis_stats()._asdict()
    group.close()
    control.close()
    print(json.dumps({"results": results, "stats": stats}))


def failover_round(
    url: str, ns: str, control: Any, *, waiting: Callable[[], int], kill: Callable[[], object]
) -> dict[str, Any]:
    """Kill the server under a running flight with followers in two processes; return what happened.

    ``waiting()`` counts the follower processes subscribed to the flight's
    wake-ups; ``kill()`` kills the server and returns once the failover is
    done. Asserts that every caller got a value from one of the executions,
    that there were at most two, and that each process's callers agree.
    """
    env = {**os.environ, "PYTHONPATH": ROOT}

    def spawn(role: str, threads: int) -> subprocess.Popen[str]:
        cmd = [sys.executable, __file__, url, ns, role, str(threads)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    procs = [spawn("leader", 1)]
    try:
        assert control.blpop([f"{ns}:started"], timeout=60) is not None  # the leader holds the lease, mid-work
        procs += [spawn("follower", 5), spawn("follower", 5)]
        for _ in range(2):
            assert control.blpop([f"{ns}:ready"], timeout=60) is not None
        control.rpush(f"{ns}:go", "go", "go")
        deadline = time.monotonic() + 30
        while waiting() < 2:  # both follower processes wait on the flight
            assert time.monotonic() < deadline, "the followers did not subscribe"
            time.sleep(0.01)
        killed_at = time.time()
        kill()
        failed_over = time.time() - killed_at
        deadline = time.monotonic() + 30
        while True:  # the control client rides out the failover too
            try:
                control.set(f"{ns}:release", 1)
                break
            except Exception:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            outs.append(json.loads(out.strip().splitlines()[-1]))
        executions = int(control.get(f"{ns}:execs"))
        tokens = {t.decode() for t in control.lrange(f"{ns}:tokens", 0, -1)}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = [r for out in outs for r in out["results"]]
    assert len(results) == 11
    assert all("ok" in r for r in results), results  # no caller hung past its timeout or failed
    assert {r["ok"] for r in results} <= tokens  # every value came from one of the executions
    assert executions <= 2, executions
    for out in outs[1:]:  # the followers of one process share one local flight: one value
        assert len({r["ok"] for r in out["results"]}) == 1
    answered = max(r["at"] for r in results) - killed_at
    return {"failed_over": failed_over, "answered": answered, "executions": executions}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
