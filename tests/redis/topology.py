"""Real Redis topologies for the tests: a 3-master cluster with replicas, and Sentinel.

Every server is a ``redis-server`` process on 127.0.0.1 with its own port,
directory, pid file and log, started here and stopped by pid when the
fixture ends (failures included). Nothing is mocked: a cluster is formed
with ``redis-cli --cluster create``, and a failover is a real SIGKILL of a
master followed by the replica's promotion.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from redis_servers import free_port, server_binary, stop_process, unavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

NODE_TIMEOUT_MS = 1000


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis wants it <= 55535."""
    for _ in range(200):
        port = random.randint(20000, 55535)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    msg = "no free port pair for a cluster node"
    raise RuntimeError(msg)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a server-side state (a cluster forming, a promotion) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(0.05)


def _command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One command through redis-cli; '' when the server does not answer."""
    cli = shutil.which("redis-cli") or "redis-cli"
    try:
        out = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            timeout=timeout,
            check=False,
            text=True,
        )
    except subprocess.TimeoutExpired:
        return ""
    return out.stdout


class Node:
    """One redis-server (or sentinel) process with its own port, dir, pid file and log."""

    def __init__(
        self, binary: str, root: Path, name: str, args: list[str], *, sentinel: bool = False, port: int | None = None
    ) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.log = self.dir / "server.log"
        self.pidfile = self.dir / "server.pid"
        self.args = args
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.sentinel:
            conf = self.dir / "sentinel.conf"
            if not conf.exists():
                conf.write_text("\n".join([f"port {self.port}", "bind 127.0.0.1", *self.args]) + "\n")
            cmd = [self.binary, str(conf), "--sentinel"]
        else:
            cmd = [self.binary, "--port", str(self.port), *self.args]
        cmd += ["--dir", str(self.dir), "--pidfile", str(self.pidfile), "--logfile", str(self.log)]
        cmd += ["--daemonize", "no", "--bind", "127.0.0.1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._answers, 10, f"redis-server on port {self.port} (log {self.log})")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            msg = f"redis-server on port {self.port} exited with {self.proc.returncode}; log: {self.log}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crashed master, no goodbye to its replicas."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a test may have frozen it
            stop_process(self.proc)
        self.proc = None

    def cmd(self, *args: str) -> str:
        return _command(self.port, *args)


class Cluster:
    """A Redis Cluster of 3 masters with one replica each, formed by redis-cli."""

    def __init__(self, binary: str, root: Path) -> None:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--save", "", "--appendonly", "no",
            "--cluster-config-file", "nodes.conf",
            # Sync replicas at once (not after the default 5 s diskless delay),
            # and let a replica take over whatever its data's age.
            "--repl-diskless-sync-delay", "0",
            "--cluster-replica-validity-factor", "0",
            "--loglevel", "notice",
        ]  # fmt: skip
        self.nodes = [Node(binary, root, f"cluster-{i}", args, port=cluster_port()) for i in range(6)]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        cli = shutil.which("redis-cli") or "redis-cli"
        out = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            msg = f"redis-cli --cluster create failed: {out.stdout}\n{out.stderr}"
            raise RuntimeError(msg)
        _wait(self._ok_everywhere, 30, "cluster_state:ok on every node")
        _wait(self._replicas_in_sync, 30, "every replica in sync with its master")

    def _replicas_in_sync(self) -> bool:
        roles = [n.cmd("INFO", "replication") for n in self.nodes]
        replicas = [r for r in roles if "role:slave" in r]
        return len(replicas) == 3 and all("master_link_status:up" in r for r in replicas)

    def _ok_everywhere(self) -> bool:
        return all("cluster_state:ok" in n.cmd("CLUSTER", "INFO") for n in self.nodes if n.alive)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes if n.alive]

    @property
    def url(self) -> str:
        node = next(n for n in self.nodes if n.alive)
        return f"redis://127.0.0.1:{node.port}/0"

    def role(self, node: Node) -> str:
        for line in node.cmd("ROLE").splitlines():
            return line.strip()
        return ""

    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.alive and self.role(n) == "master"]

    def node_for_slot(self, slot: int) -> Node:
        """The master serving ``slot`` now, by CLUSTER SHARDS/SLOTS of a live node."""
        import redis  # noqa: PLC0415

        for n in self.nodes:
            if not n.alive:
                continue
            try:
                c = redis.Redis(port=n.port, socket_timeout=2)
                slots = c.execute_command("CLUSTER", "SLOTS")
                c.close()
            except redis.RedisError:
                continue
            for start, end, master, *_ in slots:
                if int(start) <= slot <= int(end):
                    port = int(master[1])
                    return next(x for x in self.nodes if x.port == port)
        msg = f"no live node serves slot {slot}"
        raise RuntimeError(msg)

    def kill_master_and_wait_for_promotion(self, master: Node, timeout: float = 30) -> Node:
        """SIGKILL ``master``; return its replica once the cluster promoted it and is ok again."""
        # INFO replication on a replica names its master's port.
        replica = None
        for n in self.nodes:
            if n is not master and n.alive and f"master_port:{master.port}" in n.cmd("INFO", "replication"):
                replica = n
        if replica is None:
            msg = f"no replica of the master on port {master.port}"
            raise RuntimeError(msg)
        master.kill()
        _wait(lambda: self.role(replica) == "master", timeout, f"the replica on port {replica.port} promoted")
        _wait(self._ok_everywhere, timeout, "cluster_state:ok after the failover")
        return replica

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Sentinels:
    """A master, one replica and 3 sentinels (quorum 2) watching them as ``mymaster``."""

    NAME = "mymaster"

    def __init__(self, binary: str, root: Path) -> None:
        plain = ["--save", "", "--appendonly", "no", "--loglevel", "notice", "--repl-diskless-sync-delay", "0"]
        self.master = Node(binary, root, "master", plain)
        self.replica = Node(binary, root, "replica", [*plain, "--replicaof", "127.0.0.1", str(self.master.port)])
        conf = [
            f"sentinel monitor {self.NAME} 127.0.0.1 {self.master.port} 2",
            f"sentinel down-after-milliseconds {self.NAME} {NODE_TIMEOUT_MS}",
            f"sentinel failover-timeout {self.NAME} 10000",
            f"sentinel parallel-syncs {self.NAME} 1",
        ]
        self.sentinels = [Node(binary, root, f"sentinel-{i}", conf, sentinel=True) for i in range(3)]

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        _wait(
            lambda: "master_link_status:up" in self.replica.cmd("INFO", "replication"),
            20,
            "the replica in sync with its master",
        )
        for s in self.sentinels:
            s.start()
        _wait(self._watched, 20, "every sentinel watching the master with its replica and the other sentinels")

    def _watched(self) -> bool:
        for s in self.sentinels:
            info = s.cmd("SENTINEL", "MASTER", self.NAME)
            lines = info.splitlines()
            fields = dict(zip(lines[::2], lines[1::2], strict=False))
            if fields.get("num-slaves") != "1" or fields.get("num-other-sentinels") != "2":
                return False
        return True

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.NAME}/0"

    def current_master_port(self) -> int:
        for s in self.sentinels:
            out = s.cmd("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.NAME).split()
            if len(out) == 2:
                return int(out[1])
        msg = "no sentinel names a master"
        raise RuntimeError(msg)

    def _all_agree_on(self, port: int) -> Callable[[], bool]:
        def agreed() -> bool:
            for s in self.sentinels:
                lines = s.cmd("SENTINEL", "MASTER", self.NAME).splitlines()
                fields = dict(zip(lines[::2], lines[1::2], strict=False))
                if fields.get("port") != str(port) or fields.get("flags") != "master":
                    return False
            return True

        return agreed

    def kill_master_and_wait_for_failover(self, timeout: float = 30) -> None:
        """SIGKILL the master; return once the sentinels name the replica and it is a master."""
        old = self.master
        old.kill()
        _wait(self._all_agree_on(self.replica.port), timeout, "every sentinel to name the promoted replica")
        _wait(lambda: "role:master" in self.replica.cmd("INFO", "replication"), timeout, "the replica to be master")
        self.master, self.replica = self.replica, old

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()


def _binary() -> str:
    binary = server_binary()
    if binary is None or shutil.which("redis-cli") is None:
        unavailable("a cluster or sentinel test needs redis-server and redis-cli")
    return binary  # type: ignore[return-value]


def _running(kind: type[Cluster | Sentinels], prefix: str) -> Iterator[Any]:
    """Start a topology in a directory of its own; stop it (by pid) and remove the directory after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    topology = kind(_binary(), root)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[Cluster]:
    """One cluster for the whole run, for the tests that kill nothing and move no slot."""
    yield from _running(Cluster, "sf-cluster-")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A fresh 3-master cluster with a replica per master; a test may kill its nodes."""
    yield from _running(Cluster, "sf-cluster-")


@pytest.fixture
def sentinel() -> Iterator[Sentinels]:
    """A fresh master, replica and 3 sentinels; a test may kill the master."""
    yield from _running(Sentinels, "sf-sentinel-")
