"""Pool pressure is not an outage, and a configuration mistake is an error, not a quiet fallback.

Real redis-servers: one with requirepass and an ACL user without the
group's commands; hundreds of real threads on distinct keys.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

redis = pytest.importorskip("redis")

from singleflight_sync.redis import RedisConfigurationError, RedisGroup  # noqa: E402
from singleflight_sync.redis._deploy import POOL_SIZE  # noqa: E402

if TYPE_CHECKING:
    from redis_servers import RedisServer


def _many_distinct_keys(group: RedisGroup[Any, Any], n: int) -> list[Any]:
    start = threading.Barrier(n)
    hold = threading.Event()
    results: list[Any] = [None] * n

    def call(i: int) -> None:
        start.wait(30)
        results[i] = group.do(f"key-{i}", lambda: hold.wait(30) and i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    # Every flight is leading at once (its work holds) before any finishes.
    deadline = threading.Event()
    while group.redis_stats().executions < n and not deadline.wait(0.005):
        pass
    hold.set()
    for t in threads:
        t.join(60)
    return results


def test_300_distinct_keys_from_a_url_make_no_fallback(
    redis_url: str, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="singleflight_sync")
    with RedisGroup(redis_url, namespace=ns) as group:
        results = _many_distinct_keys(group, 300)
        stats = group.redis_stats()
        assert results == list(range(300))
        assert (stats.executions, stats.fallbacks, stats.lost_leases) == (300, 0, 0)
        assert group.client.connection_pool.max_connections == POOL_SIZE
    assert not [r for r in caplog.records if "could not store" in r.getMessage()], caplog.text
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()], caplog.text


def test_a_users_small_pool_is_pressure_not_an_outage(redis_url: str, ns: str) -> None:
    client = redis.Redis.from_url(redis_url, max_connections=8)
    try:
        with RedisGroup(client, namespace=ns) as group:
            results = _many_distinct_keys(group, 100)
            stats = group.redis_stats()
            assert results == list(range(100))
            assert (stats.fallbacks, stats.lost_leases) == (0, 0)
    finally:
        client.close()


def _clients_seen_by(server: RedisServer) -> int:
    admin = redis.Redis(port=server.port)
    try:
        return int(admin.info("clients")["connected_clients"]) - 1  # not this one
    finally:
        admin.close()


def test_closing_a_url_group_closes_every_connection_it_opened(private_server: RedisServer, ns: str) -> None:
    with RedisGroup(private_server.url, namespace=ns) as group:
        assert _many_distinct_keys(group, 20) == list(range(20))
        assert _clients_seen_by(private_server) > 1  # the listener and the pooled connections
    # The server notices a closed socket at once; poll briefly for it to count.
    give_up = time.monotonic() + 5.0
    while _clients_seen_by(private_server) and time.monotonic() < give_up:
        threading.Event().wait(0.01)
    assert _clients_seen_by(private_server) == 0


@pytest.fixture
def secured(private_server: RedisServer) -> RedisServer:
    admin = redis.Redis(port=private_server.port)
    admin.config_set("requirepass", "s3cret")
    admin = redis.Redis(port=private_server.port, password="s3cret")
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+get", "+ping")
    admin.close()
    return private_server


@pytest.mark.parametrize("policy", ["local", "raise"])
def test_a_wrong_password_is_a_configuration_error(secured: RedisServer, ns: str, policy: str) -> None:
    runs: list[int] = []
    with RedisGroup(f"redis://:wrong@127.0.0.1:{secured.port}/0", namespace=ns, on_unavailable=policy) as group:
        with pytest.raises(RedisConfigurationError, match="password") as info:
            group.do("k", lambda: runs.append(1))
        assert isinstance(info.value.__cause__, redis.exceptions.AuthenticationError)
        assert runs == []  # never a quiet per-process fallback
        assert group.redis_stats().fallbacks == 0


def test_an_acl_denial_is_a_configuration_error(secured: RedisServer, ns: str) -> None:
    with RedisGroup(f"redis://reader:pw@127.0.0.1:{secured.port}/0", namespace=ns) as group:
        with pytest.raises(RedisConfigurationError, match="ACL") as info:
            group.do("k", int)
        assert "NOPERM" in str(info.value) or "no permissions" in str(info.value)


def test_the_right_password_works(secured: RedisServer, ns: str) -> None:
    with RedisGroup(f"redis://:s3cret@127.0.0.1:{secured.port}/0", namespace=ns) as group:
        assert group.do("k", lambda: 5) == 5


def test_tls_mistakes_are_classified_as_configuration() -> None:
    import ssl  # noqa: PLC0415

    from singleflight_sync.redis._deploy import is_configuration_error  # noqa: PLC0415

    error = redis.exceptions.ConnectionError("Error connecting: certificate verify failed")
    error.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert is_configuration_error(error)
    assert not is_configuration_error(redis.exceptions.ConnectionError("Connection refused"))
    assert is_configuration_error(redis.exceptions.AuthenticationError("invalid password"))
