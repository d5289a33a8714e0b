"""Deployment: the redis-py client a group coordinates on, from a client or a URL.

A group built from a URL owns its client (short timeouts, few retries) and
closes it; a client the user passes in stays the user's.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def _client_from(value: object) -> tuple[redis.Redis, bool]:
    """The client to use, and whether the group created it (and so closes it)."""
    if isinstance(value, str):
        if not value:
            raise ValueError("client_or_url must be a redis.Redis client or a non-empty URL, got ''")
        # Short timeouts and few retries: a dead server must turn into a
        # fallback (or an error) quickly, not stall every caller.
        client: redis.Redis = redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType] - redis-py's stubs
            value,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
        )
        return client, True
    if isinstance(value, redis.Redis):
        if value.get_connection_kwargs().get("decode_responses"):  # pyright: ignore[reportUnknownMemberType]
            msg = "client_or_url must be a client with decode_responses=False: results are stored as bytes"
            raise ValueError(msg)
        return value, False
    msg = f"client_or_url must be a redis.Redis client or a URL string, got {type(value).__name__}"
    raise TypeError(msg)
