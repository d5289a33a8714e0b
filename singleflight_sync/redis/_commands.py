"""Deadline-bounded commands: a script call that returns within the caller's remaining time.

redis-py bounds a command only by its connection's ``socket_timeout``, fixed
when the client is made (and unset on many clients users pass in), so a
frozen server (SIGSTOP, a VM pause) would hold a caller far past its own
timeout. Here the script runs on a connection taken from the client's pool
whose socket timeout is set to the caller's remaining time, and restored
after. A connection whose reply did not arrive in time is dropped, since its
reply may still come.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from redis.commands.core import Script

_NO_COMMAND_NAME = tuple(int(p) for p in redis.__version__.split(".")[:2] if p.isdigit()) >= (5, 3)

# How long a command may take when its caller has no deadline of its own (a
# leader without a timeout): past it, Redis counts as unavailable.
COMMAND_TIMEOUT = 5.0
# How long a leader whose work has finished waits for the script that stores
# and publishes its outcome. Its callers get the outcome either way; a frozen
# server runs the script when it resumes (the lease check keeps that safe).
FINISH_WAIT = 0.25


def run_script(client: redis.Redis, script: Script, keys: list[str], args: list[Any], timeout: float) -> Any:
    """Run ``script`` on one of ``client``'s connections, waiting at most ``timeout`` seconds for its reply."""
    pool = client.connection_pool
    # redis-py 5.3 deprecated the command-name argument that earlier versions require.
    conn: Any = pool.get_connection() if _NO_COMMAND_NAME else pool.get_connection("EVALSHA")  # pyright: ignore[reportUnknownMemberType]
    try:
        conn.connect()
        sock = conn._sock  # the one place redis-py lets a timeout be set per command
        if sock is not None:
            sock.settimeout(max(timeout, 0.001))
        try:
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)  # pyright: ignore[reportUnknownMemberType]
            try:
                return conn.read_response()
            except NoScriptError:
                conn.send_command("EVAL", script.script, len(keys), *keys, *args)  # pyright: ignore[reportUnknownMemberType]
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
