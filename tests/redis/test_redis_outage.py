"""RedisGroup when the Redis server goes away mid-flight and comes back."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from typing import Any

import pytest

if importlib.util.find_spec("redis") is None and not os.environ.get("CI"):
    pytest.skip("redis-py is not installed (pip install -e '.[redis]')", allow_module_level=True)

from singleflight_sync.redis import RedisGroup, RedisUnavailableError


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


@pytest.mark.parametrize("policy", ["local", "raise"])
def test_server_restart_mid_flight(private_server, ns, policy):
    leader_group = RedisGroup(private_server.url, namespace=ns, recheck=0.2, on_unavailable=policy)
    follower_group = RedisGroup(private_server.url, namespace=ns, recheck=0.2, on_unavailable=policy)
    try:
        started, release = threading.Event(), threading.Event()

        def slow() -> str:
            started.set()
            assert release.wait(20)
            return "from the leader"

        led: list[Any] = []
        leader = threading.Thread(target=lambda: led.append(leader_group.do("k", slow)))
        leader.start()
        assert started.wait(10)
        followed: list[Any] = []

        def follow() -> None:
            try:
                followed.append(follower_group.do("k", lambda: "run locally"))
            except Exception as exc:
                followed.append(exc)

        follower = threading.Thread(target=follow)
        follower.start()
        wait_for(lambda: follower_group._remote_waits == 1, "the follower to wait on Redis")

        private_server.stop()
        follower.join(10)
        assert not follower.is_alive(), "the follower hung while Redis was down"
        [outcome] = followed
        if policy == "local":
            assert outcome == "run locally"
            assert follower_group.redis_stats().fallbacks == 1
        else:
            assert isinstance(outcome, RedisUnavailableError)
            assert "cannot coordinate the flight for key 'k' on Redis" in str(outcome)
            assert follower_group.redis_stats().fallbacks == 0

        private_server.start()  # same port, empty: the lease is gone
        release.set()
        leader.join(10)
        assert led == ["from the leader"], "the leader must keep its own result"
        assert leader_group.redis_stats().lost_leases == 1

        # Back to normal on the restarted server (and not a cache: each call runs).
        assert leader_group.do("after", lambda: "fresh") == "fresh"
        assert follower_group.do("after", lambda: "again") == "again"
        assert follower_group.redis_stats().fallbacks == (1 if policy == "local" else 0)
    finally:
        leader_group.close()
        follower_group.close()


def test_server_down_before_the_flight(private_server, ns):
    group = RedisGroup(private_server.url, namespace=ns, on_unavailable="local")
    strict = RedisGroup(private_server.url, namespace=ns, on_unavailable="raise")
    try:
        private_server.stop()
        assert group.do("k", str, 1) == "1"
        with pytest.raises(RedisUnavailableError):
            strict.do("k", str, 1)
        with pytest.raises(RedisUnavailableError):
            strict.forget("k")
        assert group.forget("k") is False  # logged, not raised
        private_server.start()
        assert strict.do("k", str, 2) == "2"
    finally:
        group.close()
        strict.close()
