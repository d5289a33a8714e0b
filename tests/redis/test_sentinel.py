"""RedisGroup behind Sentinel: a master, a replica and 3 sentinels, real processes and a real SIGKILL.

The group finds the master through the sentinels (``redis+sentinel://`` or a
client from ``Sentinel.master_for()``). When the master dies mid-flight,
callers retry through Sentinel for up to the failover window (5 s, within
their own deadline) instead of falling back at the first connection error.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

redis = pytest.importorskip("redis")

from failover_worker import failover_round  # noqa: E402 - tests/redis is on sys.path
from redis.sentinel import Sentinel  # noqa: E402

from singleflight_sync.redis import RedisGroup  # noqa: E402
from singleflight_sync.redis._deploy import _client_from_url  # noqa: E402
from singleflight_sync.redis._keys import _Names, key_name  # noqa: E402

if TYPE_CHECKING:
    from topology import Sentinels

pytestmark = [pytest.mark.timeout(120), pytest.mark.topology]


def test_a_group_from_a_sentinel_url_or_client(sentinel: Sentinels, ns: str) -> None:
    """Both ways in share flights: one execution for a caller of each."""
    sentinels = Sentinel(sentinel.addresses, socket_timeout=2)
    client = sentinels.master_for(sentinel.NAME, socket_timeout=2)
    release, started = threading.Event(), threading.Event()
    runs: list[str] = []

    def work(who: str) -> str:
        runs.append(who)
        started.set()
        assert release.wait(30)
        return "v"

    with RedisGroup(sentinel.url, namespace=ns) as by_url, RedisGroup(client, namespace=ns) as by_client:
        got: list[str] = []
        lead = threading.Thread(target=lambda: got.append(by_url.do("k", work, "url")))
        lead.start()
        assert started.wait(30)
        follow = threading.Thread(target=lambda: got.append(by_client.do("k", work, "client")))
        follow.start()
        deadline = time.monotonic() + 10
        while not _waiting(by_client):  # the second group waits on the first one's flight
            assert time.monotonic() < deadline
            time.sleep(0.005)
        release.set()
        lead.join(30)
        follow.join(30)
    client.close()
    for s in sentinels.sentinels:
        s.close()
    assert got == ["v", "v"]
    assert runs == ["url"]


def _waiting(group: Any) -> bool:
    with group._lock:
        return bool(group._remote_waits)


def test_the_master_killed_mid_flight(sentinel: Sentinels, ns: str) -> None:
    """SIGKILL the master while followers in two processes wait: they ride out the failover."""
    control = _client_from_url(sentinel.url)
    channel = _Names(ns, key_name("victim")).done

    def waiting() -> int:
        return int(dict(control.pubsub_numsub(channel)).get(channel.encode(), 0))

    try:
        seen = failover_round(
            sentinel.url, ns, control, waiting=waiting, kill=sentinel.kill_master_and_wait_for_failover
        )
    finally:
        control.close()
    print(
        f"\nsentinel failover: the sentinels named the replica {seen['failed_over']:.2f}s after the SIGKILL, "
        f"last caller answered after {seen['answered']:.2f}s, {seen['executions']} execution(s)"
    )
