"""Deployment modes: which server a key's commands and wake-ups go to, as a small strategy object.

``_Deployment`` serves one Redis server, or the master a Sentinel names
(redis-py's Sentinel pool finds the current master on every new
connection); ``_ClusterDeployment`` routes each key to the master that owns
its slot and uses sharded pub/sub there. The group and the listener ask the
strategy and hold no mode-specific code. It also builds the client from a
URL (``redis://``, ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``)
and tells a configuration error (a wrong password, an ACL denial, a TLS
mistake) from an outage.
"""

from __future__ import annotations

import ssl
import urllib.parse
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

# A group built from a URL holds at most POOL_SIZE connections for its
# commands (per node, in a cluster), plus its listener's. A command waits up
# to POOL_WAIT seconds for a free connection before that counts as unavailable.
POOL_SIZE = 64
POOL_WAIT = 5.0
# How long a caller keeps retrying through a failover (Sentinel promoting a
# replica, a cluster master replaced) before the on_unavailable policy
# applies; never past the caller's own deadline.
FAILOVER_WINDOW = 5.0

_URL_OPTIONS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}


def is_configuration_error(exc: BaseException) -> bool:
    """Whether a redis-py error means "fix the settings" (password, ACL, TLS), not "Redis is down"."""
    if isinstance(exc, (AuthenticationError, AuthorizationError, NoPermissionError)):
        return True
    if isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in {"NOAUTH", "WRONGPASS", "NOPERM"}:
        return True
    seen: BaseException | None = exc
    for _ in range(8):  # a TLS failure hides in the cause chain of a ConnectionError
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, ssl.SSLZeroReturnError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Deployment:
    """One server, or a Sentinel-managed master: every command and wake-up on the client's own pool."""

    publish = "PUBLISH"  # the command the finish script wakes waiters with
    sharded = False  # whether a subscribe command may name channels of one slot only
    subscribe = "subscribe"  # the listener's subscribe, unsubscribe and message types
    unsubscribe = "unsubscribe"
    message = "message"

    def __init__(self, client: Any, *, failover: bool) -> None:
        self.client = client
        # Whether a lost connection may be a failover worth riding out (Sentinel, Cluster).
        self.failover = failover

    def pool_for(self, key: str) -> Any:  # noqa: ARG002 - one server holds every key
        """The connection pool whose server holds ``key``."""
        return self.client.connection_pool

    def pool_at(self, host: str, port: int) -> Any:  # noqa: ARG002 - one server: always the same pool
        return self.client.connection_pool

    def refresh(self) -> None:
        """Forget where keys live (after MOVED, a failover): the next command looks again."""

    def pubsub_for(self, channel: bytes) -> tuple[Hashable, Callable[[], Any]]:  # noqa: ARG002 - one server
        """Which connection ``channel``'s wake-ups arrive on (an identity), and how to open it."""
        return "server", self.client.pubsub

    def close(self) -> None:
        self.client.close()
        # A pool the group built stays open after Redis.close(): disconnect it
        # too, and a Sentinel pool's connections to the sentinels, so that no
        # socket outlives the group.
        pool = self.client.connection_pool
        pool.disconnect()
        manager = getattr(pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


class _ClusterDeployment(_Deployment):
    """Redis Cluster: a key's commands go to the master of its slot, its wake-ups ride sharded pub/sub there."""

    publish = "SPUBLISH"
    sharded = True
    subscribe = "ssubscribe"
    unsubscribe = "sunsubscribe"
    message = "smessage"

    def _lookup(self, find: Callable[[], Any], what: str) -> Any:
        """The node ``find()`` names, looking again after a slot-map refresh if it names none now."""
        try:
            node = find()
            if node is None or node.redis_connection is None:
                self.refresh()
                node = find()
        except RedisClusterException as exc:  # not a RedisError: told as the outage it is
            raise redis.ConnectionError(str(exc)) from exc
        if node is None or node.redis_connection is None:
            msg = f"no cluster node serves {what}"
            raise redis.ConnectionError(msg)
        return node

    def _node(self, key: str | bytes) -> Any:
        return self._lookup(lambda: self.client.get_node_from_key(key), f"the slot of {key!r}")

    def pool_for(self, key: str) -> Any:
        return self._node(key).redis_connection.connection_pool

    def pool_at(self, host: str, port: int) -> Any:
        node = self._lookup(lambda: self.client.get_node(host=host, port=port), f"{host}:{port}")
        return node.redis_connection.connection_pool

    def refresh(self) -> None:
        try:
            self.client.nodes_manager.initialize()
        except RedisClusterException as exc:  # no node answers: not a RedisError in redis-py
            raise redis.ConnectionError(str(exc)) from exc

    def pubsub_for(self, channel: bytes) -> tuple[Hashable, Callable[[], Any]]:
        node = self._node(channel)
        return node.name, node.redis_connection.pubsub

    def close(self) -> None:
        self.client.close()


# What a redis-py call can raise when Redis is unreachable or refuses: a
# cluster's client raises RedisClusterException, which is not a RedisError.
REDIS_ERRORS = (RedisError, RedisClusterException)


def deployment_for(client: Any) -> _Deployment:
    """The strategy for ``client``: a cluster, a Sentinel-managed master (rides out failovers), or one server."""
    if isinstance(client, RedisCluster):
        return _ClusterDeployment(client, failover=True)
    return _Deployment(client, failover=isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool))


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), 2)


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts: list[tuple[str, int]] = []
    for part in netloc.rpartition("@")[2].split(","):
        host, _, port = part.partition(":")
        hosts.append((host or "127.0.0.1", int(port) if port else default_port))
    return hosts


def _client_from_url(url: str) -> Any:
    parts = urllib.parse.urlsplit(url)
    password = urllib.parse.unquote(parts.password) if parts.password else None
    username = urllib.parse.unquote(parts.username) if parts.username else None
    if parts.scheme == "redis+cluster":
        # One or more startup nodes; the client finds the others.
        node_type: Any = ClusterNode  # untyped in redis-py
        nodes = [node_type(host, port) for host, port in _hosts(parts.netloc, 6379)]
        return RedisCluster(
            startup_nodes=nodes, username=username, password=password, max_connections=POOL_SIZE, **_URL_OPTIONS
        )
    if parts.scheme == "redis+sentinel":
        # redis+sentinel://host:port[,host:port]/<master name>[/<db>]
        path = [p for p in parts.path.split("/") if p]
        if not path:
            msg = f"a redis+sentinel:// URL names the master: redis+sentinel://host:port/<name>[/db], got {url!r}"
            raise ValueError(msg)
        db = int(path[1]) if len(path) > 1 else 0
        sentinel: Any = Sentinel(_hosts(parts.netloc, 26379), sentinel_kwargs=dict(_URL_OPTIONS), **_URL_OPTIONS)
        return sentinel.master_for(
            path[0], db=db, username=username, password=password, retry=_retry(), max_connections=POOL_SIZE
        )
    # Short timeouts and few retries: a dead server must turn into a fallback
    # (or an error) quickly, not stall every caller. A blocking pool of
    # POOL_SIZE connections: when every connection is busy (hundreds of
    # distinct keys at once), a command waits for one instead of failing;
    # pool pressure is not an outage.
    pool = redis.BlockingConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType] - redis-py's stubs
        url, max_connections=POOL_SIZE, timeout=POOL_WAIT, retry=_retry(), **_URL_OPTIONS
    )
    return redis.Redis(connection_pool=pool)


def _client_from(value: object) -> tuple[Any, bool]:
    """The client to use, and whether the group created it (and so closes it)."""
    if isinstance(value, str):
        if not value:
            raise ValueError("client_or_url must be a redis.Redis client or a non-empty URL, got ''")
        return _client_from_url(value), True
    if isinstance(value, (redis.Redis, RedisCluster)):
        client: Any = value  # redis-py leaves RedisCluster.get_connection_kwargs untyped
        if client.get_connection_kwargs().get("decode_responses"):
            msg = "client_or_url must be a client with decode_responses=False: results are stored as bytes"
            raise ValueError(msg)
        return value, False
    msg = (
        "client_or_url must be a redis.Redis or redis.cluster.RedisCluster client, or a URL string, "
        f"got {type(value).__name__}"
    )
    raise TypeError(msg)
