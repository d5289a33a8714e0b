"""Read what a :class:`~singleflight_sync.CacheFiller` with envelopes stored, from any code.

A filler with ``refresh_after``, ``stale_if_error`` or ``beta`` stores each
value in an *envelope*, a plain ``dict`` that every cache keeps as it is::

    {"__singleflight_envelope__": 1,    # the format version
     "value": <the value>,
     "created": 1733300000.25,          # time.time() when it was stored
     "duration": 0.104,                 # seconds the build took
     "ttl": 300.0}                      # seconds it may be served; None: no limit

An invalidation leaves a *tombstone*: the same marker with
``"invalidated": <time.time()>`` instead of ``"value"``. Code that reads the
cache directly tells them apart with :func:`is_envelope` and gets the value
with :func:`unwrap`. A later release that changes the format raises the
version number; :func:`unwrap` treats an unknown version as a miss.

Example::

    >>> from singleflight_sync.envelope import is_envelope, unwrap
    >>> raw = {"__singleflight_envelope__": 1, "value": 42, "created": 0.0, "duration": 0.1, "ttl": None}
    >>> is_envelope(raw), unwrap(raw), unwrap("plain"), unwrap({"a": 1})
    (True, 42, 'plain', {'a': 1})
"""

from __future__ import annotations

import time
from typing import Any

from ._envelope import DEAD, MARK, VERSION, Entry, classify, is_envelope, open_envelope

__all__ = ["MARK", "VERSION", "is_envelope", "unwrap"]


def unwrap(raw: Any, default: Any = None, *, now: float | None = None) -> Any:
    """The value in ``raw`` as a plain cache read should see it, or ``default``.

    A plain value is returned as it is. An envelope gives its value until its
    ``ttl`` has passed (at ``now``, by default ``time.time()``); after that,
    and for a tombstone or an unknown format version, ``default``: the entry
    is kept only so that a failing rebuild can fall back on it.
    """
    if not is_envelope(raw):
        return raw
    entry = open_envelope(raw)
    if not isinstance(entry, Entry):
        return default
    now = time.time() if now is None else now
    # Without stale_if_error, past ttl is DEAD: kept for a failing rebuild, not for plain reads.
    if classify(entry, now, refresh_after=None, stale_if_error=0.0, beta=0.0) == DEAD:
        return default
    return entry.value
