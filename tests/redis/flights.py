"""Flights held open across groups, for the RedisGroup tests: a leader that runs until released, a follower that waits.

Each group has its own connections and listener, as a separate process
would, so two groups of one test process stand for two processes.
"""

from __future__ import annotations

import threading
import time
from typing import Any


def wait_until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def remote_waits(group: Any) -> int:
    with group._lock:
        return int(group._remote_waits)


def lead_and_follow(leader: Any, follower: Any, key: str, value: Any) -> tuple[threading.Event, list[Any], Any]:
    """Start a flight of ``key`` in ``leader`` that runs until released, and a follower in ``follower``.

    Returns once the follower waits on the flight (subscribed to the key's
    wake-ups); ``finish()`` releases the work and joins both callers, whose
    ``("leader" | "follower", value)`` pairs land in the returned list.
    """
    release = threading.Event()
    started = threading.Event()

    def work() -> Any:
        started.set()
        assert release.wait(10)
        return value

    got: list[Any] = []
    lead = threading.Thread(target=lambda: got.append(("leader", leader.do(key, work))))
    lead.start()
    assert started.wait(10)
    follow = threading.Thread(target=lambda: got.append(("follower", follower.do(key, lambda: "follower ran it"))))
    follow.start()
    wait_until(lambda: remote_waits(follower) == 1, "the follower to wait on the flight")

    def finish() -> None:
        release.set()
        lead.join(10)
        follow.join(10)

    return release, got, finish
