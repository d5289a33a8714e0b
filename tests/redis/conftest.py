"""Real Redis servers for the RedisGroup tests.

The URL comes from ``SINGLEFLIGHT_REDIS_URL`` (CI starts the server). Without
it a private ``redis-server`` is started on a free port, if the binary exists
(``SINGLEFLIGHT_REDIS_SERVER`` or ``redis-server`` on PATH). With neither the
tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WORKER = Path(__file__).with_name("redis_worker.py")


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI: a missing server must never pass quietly there."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def server_binary() -> str | None:
    return os.environ.get("SINGLEFLIGHT_REDIS_SERVER") or shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server process on 127.0.0.1, without persistence."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--daemonize", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:  # wait for the server to answer PING, not for a fixed time
            if self.proc.poll() is not None:
                msg = f"redis-server exited with {self.proc.returncode} on port {self.port}"
                raise RuntimeError(msg)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                msg = f"redis-server did not answer on port {self.port} within 10s"
                raise RuntimeError(msg)
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("SINGLEFLIGHT_REDIS_URL")
    if url:
        yield url
        return
    binary = server_binary()
    if binary is None:
        unavailable("no SINGLEFLIGHT_REDIS_URL and no redis-server binary to start one")
    server = RedisServer(binary)  # type: ignore[arg-type]
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A server of this test's own, which it may stop and restart."""
    binary = server_binary()
    if binary is None:
        unavailable("no redis-server binary (set SINGLEFLIGHT_REDIS_SERVER) for a test that restarts a server")
    server = RedisServer(binary)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
from topology import cluster, sentinel  # noqa: E402, F401 - fixtures, registered by import
