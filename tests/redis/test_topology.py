"""The real topologies the Cluster and Sentinel tests run on: they form, and they fail over."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

redis = pytest.importorskip("redis")

from redis.cluster import RedisCluster  # noqa: E402 - after the skip
from redis.sentinel import Sentinel  # noqa: E402

if TYPE_CHECKING:
    from topology import Cluster, Sentinels

pytestmark = pytest.mark.topology


def test_a_cluster_forms_with_three_masters_and_fails_over(cluster: Cluster) -> None:
    assert len(cluster.masters()) == 3
    rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, socket_timeout=2)
    try:
        for i in range(30):
            rc.set(f"k{i}", i)
        slot = rc.keyslot("k0")
        master = cluster.node_for_slot(slot)
        promoted = cluster.kill_master_and_wait_for_promotion(master)
        assert cluster.node_for_slot(slot) is promoted
        assert len(cluster.masters()) == 3
    finally:
        rc.close()


def test_sentinel_names_the_replica_after_the_master_is_killed(sentinel: Sentinels) -> None:
    s = Sentinel(sentinel.addresses, socket_timeout=1)
    master = s.master_for(sentinel.NAME, socket_timeout=1)
    try:
        master.set("k", "v")
        assert master.wait(1, 2000) == 1  # replicated before the crash
        old_port = sentinel.master.port
        sentinel.kill_master_and_wait_for_failover()
        assert sentinel.current_master_port() != old_port
        assert master.get("k") == b"v"  # the same client, now on the promoted replica
    finally:
        master.close()
        master.connection_pool.disconnect()
        for client in s.sentinels:
            client.close()
