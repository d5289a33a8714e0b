"""Share flights across processes through Redis: :class:`RedisGroup`.

Needs redis-py (``pip install 'singleflight-sync[redis]'``); importing
``singleflight_sync`` alone never imports it.

Example::

    from singleflight_sync import singleflight
    from singleflight_sync.redis import RedisGroup

    prices = RedisGroup("redis://localhost:6379/0", namespace="prices", lease=10)

    @singleflight(group=prices)
    def get_price(symbol: str) -> float:
        return exchange.fetch(symbol)  # once across every worker process
"""

from __future__ import annotations

try:
    import redis as _redis_py  # noqa: F401  # pyright: ignore[reportUnusedImport] - fail here, with the install command
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "singleflight_sync.redis needs redis-py: pip install 'singleflight-sync[redis]'"
    raise ImportError(msg) from exc

from ._codec import CodecError, JsonSerializer, PickleSerializer, Serializer
from ._errors import (
    RedisConfigurationError,
    RedisUnavailableError,
    RemoteFlightError,
    ResultSerializationError,
    UnstableKeyError,
    WireFormatError,
)
from ._group import RedisGroup, RedisStats
from ._keys import key_name
from ._lease import current_fence

__all__ = [
    "CodecError",
    "JsonSerializer",
    "PickleSerializer",
    "RedisConfigurationError",
    "RedisGroup",
    "RedisStats",
    "RedisUnavailableError",
    "RemoteFlightError",
    "ResultSerializationError",
    "Serializer",
    "UnstableKeyError",
    "WireFormatError",
    "current_fence",
    "key_name",
]
