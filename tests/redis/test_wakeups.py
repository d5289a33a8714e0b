"""Wake-ups: per-key channels, outcomes carried in the wake-up, and a listener that reconnects.

Each group has its own listener connection, exactly as a separate process
would, so groups of one test process stand for processes here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flights import lead_and_follow, wait_until

from singleflight_sync.redis._wakeups import INLINE_MAX

if TYPE_CHECKING:
    import redis


def _evalsha_calls(client: redis.Redis) -> int:
    stats: Any = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(stats.get("cmdstat_eval", {}).get("calls", 0))


def test_a_small_outcome_travels_in_the_wake_up(make_group, client):
    """A woken follower sends no command: the leader's finish is the only script run."""
    leader, follower = make_group(recheck=10, result_ttl=10), make_group(recheck=10, result_ttl=10)
    value = {"price": 101.5, "levels": (1, 2, 3)}
    _, got, finish = lead_and_follow(leader, follower, "small", value)
    before = _evalsha_calls(client)
    finish()
    assert sorted(got, key=str) == [("follower", value), ("leader", value)]
    assert _evalsha_calls(client) - before == 1  # the finish script only: no read after the wake-up
    assert follower.redis_stats().remote_shares == 1


def test_a_large_outcome_is_read_after_the_wake_up(make_group, client):
    leader, follower = make_group(recheck=10, result_ttl=10), make_group(recheck=10, result_ttl=10)
    value = "x" * (INLINE_MAX + 1)
    _, got, finish = lead_and_follow(leader, follower, "large", value)
    before = _evalsha_calls(client)
    started = time.monotonic()
    finish()
    assert time.monotonic() - started < 5  # woken by the publish, not the 10 s re-check
    assert sorted(got, key=str) == [("follower", value), ("leader", value)]
    assert _evalsha_calls(client) - before == 2  # the finish, and the follower's read


def test_a_wake_up_reaches_only_processes_that_wait_on_the_key(make_group):
    """Fan-out: a flight wakes the listeners that wait on its key, and no other."""
    leader = make_group()
    waits_on_a, waits_on_b = make_group(recheck=10, result_ttl=10), make_group(recheck=10, result_ttl=10)
    _, got_a, finish_a = lead_and_follow(leader, waits_on_a, "a", "A")
    _, got_b, finish_b = lead_and_follow(leader, waits_on_b, "b", "B")
    for i in range(50):  # flights nobody else waits on
        assert leader.do(f"other-{i}", str, i) == str(i)
    finish_a()
    finish_b()
    assert ("follower", "A") in got_a
    assert ("follower", "B") in got_b
    assert waits_on_a._listener.received == 1
    assert waits_on_b._listener.received == 1
    assert leader._listener.received == 0  # the leader waited on nothing


def test_an_idle_channel_is_left(make_group, client, monkeypatch):
    from singleflight_sync.redis import _wakeups  # noqa: PLC0415

    monkeypatch.setattr(_wakeups, "IDLE_GRACE", 0.05)
    leader, follower = make_group(), make_group(recheck=10, result_ttl=10)
    _, _, finish = lead_and_follow(leader, follower, "k", 1)
    channel = follower.redis_key("k", "done")

    def subscribers() -> int:
        return int(dict(client.pubsub_numsub(channel))[channel.encode()])

    assert subscribers() == 1
    finish()
    # The listener leaves the channel once it has been idle for the grace period
    # (it wakes for it on its own: nothing else happens meanwhile).
    wait_until(lambda: subscribers() == 0, "the idle channel to be left")
    # ... and subscribes again when a caller waits on the key again.
    _, got, finish = lead_and_follow(leader, follower, "k", 2)
    assert subscribers() == 1
    finish()
    assert ("follower", 2) in got


def test_a_killed_listener_connection_resubscribes_and_wakes(make_group, client):
    """The follower is woken by the publish after the listener reconnects, not by its re-check."""
    leader, follower = make_group(recheck=10, result_ttl=10), make_group(recheck=10, result_ttl=10)
    _, got, finish = lead_and_follow(leader, follower, "k", "v")
    channel = follower.redis_key("k", "done")
    assert client.client_kill_filter(_type="pubsub") >= 1
    wait_until(
        lambda: int(dict(client.pubsub_numsub(channel))[channel.encode()]) == 1,
        "the listener to subscribe again",
    )
    started = time.monotonic()
    finish()
    assert time.monotonic() - started < 5
    assert sorted(got) == [("follower", "v"), ("leader", "v")]
