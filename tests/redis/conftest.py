"""Real Redis servers for the RedisGroup tests.

``redis_url`` (in ``tests/conftest.py``) is the session's server; the
fixtures here add a private server per test, a namespace, clients, groups and
worker processes. ``tests/redis_servers.py`` says where servers come from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

from redis_servers import RedisServer, own_server

WORKER = Path(__file__).with_name("redis_worker.py")


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A server of this test's own, which it may stop and restart."""
    with own_server(
        "no redis-server binary (set SINGLEFLIGHT_REDIS_SERVER) for a test that restarts a server"
    ) as server:
        yield server


@pytest.fixture
def ns() -> str:
    """A namespace of this test's own, so tests never share keys."""
    return f"sftest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    import redis  # noqa: PLC0415

    c = redis.Redis.from_url(redis_url, socket_timeout=60)  # BLPOP waits longer than the default 5 s
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def make_group(redis_url: str, ns: str) -> Iterator[Callable[..., Any]]:
    """Build RedisGroups (default: this test's server and namespace) and close them after the test."""
    from singleflight_sync.redis import RedisGroup  # noqa: PLC0415

    made: list[RedisGroup] = []

    def make(url: str | None = None, **options: Any) -> RedisGroup:
        options.setdefault("namespace", ns)
        group = RedisGroup(url or redis_url, **options)
        made.append(group)
        return group

    try:
        yield make
    finally:
        for group in made:
            group.close()


class Worker:
    """A redis_worker.py subprocess; ``result()`` parses the JSON line it prints."""

    def __init__(self, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )

    def result(self, timeout: float = 30) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            msg = f"worker exited with {self.proc.returncode}:\n{err.decode(errors='replace')}"
            raise AssertionError(msg)
        return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Worker]]:
    """Start worker subprocesses; any still running at the end are killed."""
    workers: list[Worker] = []

    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> Worker:
        worker = Worker(config, env)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()


# Cluster and Sentinel topologies (tests/redis/topology.py).
from topology import cluster, sentinel, shared_cluster  # noqa: E402, F401 - fixtures, registered by import
