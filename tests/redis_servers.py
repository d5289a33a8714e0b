"""A private redis-server for the tests that need one (the Redis suite, the price service under Redis).

The URL comes from ``SINGLEFLIGHT_REDIS_URL`` (CI starts the server). Without
it a private ``redis-server`` is started on a free port, if the binary exists
(``SINGLEFLIGHT_REDIS_SERVER`` or ``redis-server`` on PATH). With neither the
tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


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
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc`` and wait for it; SIGKILL it if it is still there after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def own_server(why: str) -> Iterator[RedisServer]:
    """A private server for the block, stopped after; skip (fail under CI) with ``why`` if there is no binary."""
    binary = server_binary()
    if binary is None:
        unavailable(why)
    server = RedisServer(binary)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
