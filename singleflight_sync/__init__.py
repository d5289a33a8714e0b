"""singleflight_sync: one execution per key for concurrent threads.

When many threads ask for the same thing at the same moment, one of them (the
leader) does the work and the others wait for its result or exception. When
the flight lands the key is dropped: this is not a cache.

Example::

    from singleflight_sync import singleflight

    @singleflight
    def get_price(symbol: str) -> float:
        return exchange.fetch(symbol)  # 200 concurrent callers, 1 fetch
"""

from __future__ import annotations

from ._cache import MISSING, CacheFiller, cache_fill
from ._cachestate import FillerStats
from ._decorator import BoundSingleFlightFunction, SingleFlightFunction, singleflight
from ._errors import (
    FlightTimeoutError,
    LeaderInterrupted,
    ReentrantCallError,
    SingleFlightError,
    UnhashableKeyError,
    WaitCycleError,
)
from ._group import CallInfo, FlightRecord, FlightStats, Group
from ._keys import hashkey, methodkey, typedkey
from ._version import __version__

__all__ = [
    "MISSING",
    "BoundSingleFlightFunction",
    "CacheFiller",
    "CallInfo",
    "FillerStats",
    "FlightRecord",
    "FlightStats",
    "FlightTimeoutError",
    "Group",
    "LeaderInterrupted",
    "ReentrantCallError",
    "SingleFlightError",
    "SingleFlightFunction",
    "UnhashableKeyError",
    "WaitCycleError",
    "__version__",
    "cache_fill",
    "hashkey",
    "methodkey",
    "singleflight",
    "typedkey",
]
