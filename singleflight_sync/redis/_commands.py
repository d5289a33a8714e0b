"""Deadline-bounded commands: a script call that returns within the caller's remaining time.

redis-py bounds a command only by its connection's ``socket_timeout``, fixed
when the client is made (and unset on many clients users pass in), so a
frozen server (SIGSTOP, a VM pause) would hold a caller far past its own
timeout. Here the script runs on a connection taken from the pool of the
server that holds its keys (the deployment says which), with the socket
timeout set to the caller's remaining time and restored after. A connection
whose reply did not arrive in time is dropped, since its reply may still
come. ``bounded`` adds the retries a production deployment needs: a full
pool, a key that moved (``MOVED``/``ASK`` during a reshard), and a failover,
each within the caller's deadline.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,  # noqa: A004 - redis-py's, not the builtin
    MaxConnectionsError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    TimeoutError,  # noqa: A004 - redis-py's, not the builtin
    TryAgainError,
)

from ._deploy import FAILOVER_WINDOW, POOL_WAIT, is_configuration_error

if TYPE_CHECKING:
    from redis.commands.core import Script

    from ._deploy import _Deployment

_NO_COMMAND_NAME = tuple(int(p) for p in redis.__version__.split(".")[:2] if p.isdigit()) >= (5, 3)

# How long a command may take when its caller has no deadline of its own (a
# leader without a timeout): past it, Redis counts as unavailable.
COMMAND_TIMEOUT = 5.0
# How long a leader whose work has finished waits for the script that stores
# and publishes its outcome. Its callers get the outcome either way; a frozen
# server runs the script when it resumes (the lease check keeps that safe).
FINISH_WAIT = 0.25


def run_script(  # noqa: PLR0913 - one script call, where, and how long
    pool: Any, script: Script, keys: list[str], args: list[Any], timeout: float, *, asking: bool = False
) -> Any:
    """Run ``script`` on one of ``pool``'s connections, waiting at most ``timeout`` seconds for its reply."""
    # redis-py 5.3 deprecated the command-name argument that earlier versions require.
    conn: Any = pool.get_connection() if _NO_COMMAND_NAME else pool.get_connection("EVALSHA")
    try:
        conn.connect()
        sock = conn._sock  # the one place redis-py lets a timeout be set per command
        if sock is not None:
            sock.settimeout(max(timeout, 0.001))
        try:
            if asking:  # the slot is being migrated to this node: ask it for this one command
                conn.send_command("ASKING")
                conn.read_response()
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                return conn.read_response()
            except NoScriptError:
                if asking:
                    conn.send_command("ASKING")
                    conn.read_response()
                conn.send_command("EVAL", script.script, len(keys), *keys, *args)
                return conn.read_response()
        finally:
            sock = conn._sock
            if sock is not None:
                sock.settimeout(conn.socket_timeout)
    except BaseException:
        # Timed out or broken: a late reply could be read by the next user of
        # this connection, so it is closed, not reused.
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


def bounded(  # noqa: PLR0913 - one script call and its two bounds
    deploy: _Deployment,
    script: Script,
    keys: list[str],
    argv: list[Any],
    *,
    deadline: float | None,
    reply_wait: float,
) -> Any:
    """Run a script on the server of ``keys[0]``, waiting at most ``reply_wait`` per try and never past ``deadline``.

    Retried within the deadline (else POOL_WAIT seconds): a full pool (a
    client with ``max_connections``), which is pressure, not an outage; a
    ``MOVED`` (the slot map is refreshed) or an ``ASK`` (one command on the
    importing node); and, for Sentinel and Cluster, a lost connection or a
    cluster that is down for a moment, for up to FAILOVER_WINDOW seconds.
    """
    started = time.monotonic()
    limit = (started + POOL_WAIT) if deadline is None else deadline
    failover_limit = min(limit, started + FAILOVER_WINDOW)
    pause = 0.002
    pool: Any = None
    asking = False
    while True:
        wait = reply_wait if deadline is None else min(reply_wait, deadline - time.monotonic())
        try:
            if pool is None:
                pool = deploy.pool_for(keys[0])
            return run_script(pool, script, keys, argv, wait, asking=asking)
        except MaxConnectionsError:
            if time.monotonic() + pause >= limit:
                raise
        except MovedError:
            _refresh(deploy)
            pool, asking = None, False
            continue
        except AskError as exc:
            redirect: Any = exc  # redis-py leaves host and port untyped
            pool, asking = deploy.pool_at(str(redirect.host), int(redirect.port)), True
            continue
        except (ConnectionError, ClusterDownError, TryAgainError, ReadOnlyError) as exc:
            if isinstance(exc, TimeoutError) or is_configuration_error(exc) or not deploy.failover:
                raise
            if time.monotonic() + pause >= failover_limit:
                raise
            # A failover under way: look again where the keys live, shortly.
            _refresh(deploy)
            pool, asking = None, False
            pause = max(pause, 0.05)
        time.sleep(pause)  # a connection is returned, or a replica promoted, within a few round trips
        pause = min(pause * 2, 0.25)


def _refresh(deploy: _Deployment) -> None:
    """Look again where keys live; if no node answers now, the next try finds out."""
    with contextlib.suppress(RedisError):
        deploy.refresh()
