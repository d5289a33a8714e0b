"""Deployment: the redis-py client a group coordinates on, from a client or a URL.

A group built from a URL owns its client (short timeouts, few retries, a
blocking pool of a known size) and closes it; a client the user passes in
stays the user's. It also tells a configuration error (a wrong password, an
ACL denial, a TLS mistake) from an outage.
"""

from __future__ import annotations

import ssl

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError, ResponseError
from redis.retry import Retry

# A group built from a URL holds at most POOL_SIZE connections for its
# commands, plus one for its pub/sub listener. A command waits up to
# POOL_WAIT seconds for a free connection before that counts as unavailable.
POOL_SIZE = 64
POOL_WAIT = 5.0


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


def _client_from(value: object) -> tuple[redis.Redis, bool]:
    """The client to use, and whether the group created it (and so closes it)."""
    if isinstance(value, str):
        if not value:
            raise ValueError("client_or_url must be a redis.Redis client or a non-empty URL, got ''")
        # Short timeouts and few retries: a dead server must turn into a
        # fallback (or an error) quickly, not stall every caller.
        # A blocking pool of POOL_SIZE connections: when every connection is
        # busy (hundreds of distinct keys at once), a command waits for one
        # instead of failing; pool pressure is not an outage.
        pool = redis.BlockingConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType] - redis-py's stubs
            value,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
        )
        return redis.Redis(connection_pool=pool), True
    if isinstance(value, redis.Redis):
        if value.get_connection_kwargs().get("decode_responses"):  # pyright: ignore[reportUnknownMemberType]
            msg = "client_or_url must be a client with decode_responses=False: results are stored as bytes"
            raise ValueError(msg)
        return value, False
    msg = f"client_or_url must be a redis.Redis client or a URL string, got {type(value).__name__}"
    raise TypeError(msg)
