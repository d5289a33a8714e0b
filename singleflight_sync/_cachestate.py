"""What every CacheFiller of one cache shares in a process: invalidations, retry backoff, counters.

Fillers of one cache (the same ``scope``) share one :class:`Shared`, found
in a registry by scope; Django makes a cache object per thread, and the
wrapper in :mod:`singleflight_sync.django` a filler per cache object, so the
state cannot live on the filler. The default refresh executor lives here
too. A forked child gets fresh locks and a new executor.
"""

from __future__ import annotations

import os
import random
import threading
import weakref
from collections import OrderedDict, deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, NamedTuple

__all__ = ["FillerStats", "Shared", "default_executor", "rng", "shared_for"]

# Invalidations remembered per cache, so that a rebuild can ask "was my key
# invalidated since I started?". A rebuild that started more than this many
# invalidations ago cannot tell, and does not store (it still returns its
# value to its callers).
RECENT = 4096
# Keys with a retry backoff remembered per cache; the oldest is dropped
# first (losing a backoff costs one early retry, nothing else).
BACKOFF_KEYS = 4096
# Threads of the default refresh executor, shared by every filler.
REFRESH_THREADS = 4

# The jitter of retries and the XFetch draws come from a generator of our
# own, so that they never consume the application's seeded global random
# stream (nor change it under a test framework that watches it). Reseeded in
# a forked child, so that processes forked together do not retry together.
rng = random.Random()  # noqa: S311 - spreading work, not a secret


class FillerStats(NamedTuple):
    """Counters of a cache's fillers in this process (see :meth:`CacheFiller.stats`)."""

    hits: int
    """Reads that returned a fresh value."""
    stale_hits: int
    """Reads that returned a value past ``refresh_after`` (starting its refresh), or past ``ttl`` while backing off."""
    waits: int
    """Callers that waited for a rebuild (a miss, an expired entry, an early draw without ``refresh_after``)."""
    refreshes_started: int
    """Background refreshes whose build this process ran (with a ``RedisGroup``, only the process that built)."""
    refreshes_failed: int
    """Rebuilds and refreshes whose failure was hidden by serving the last good value."""


class _Key:
    """A key hashed once, outside any lock, so that a dict keyed by it never runs ``__hash__`` under ours."""

    __slots__ = ("h", "key")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.h = hash(key)

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and (other.key is self.key or other.key == self.key)


_EVERY_KEY: Any = object()  # an invalidation of every key (clear())


class Shared:
    """One cache's invalidations, retry backoffs and counters in this process."""

    def __init__(self) -> None:
        # _lock protects every field below. It is held for a few deque, dict
        # and counter operations: never while calling the cache, a build, a
        # hook or an executor. Keys are hashed before it is taken (_Key); a
        # key's __eq__ runs under it only to compare with a backoff entry of
        # the same hash.
        self._lock = threading.Lock()
        self._seq = 0  # invalidations so far
        self._recent: deque[tuple[int, Any]] = deque(maxlen=RECENT)  # (seq, key) of the latest ones
        self._backoff: OrderedDict[_Key, tuple[int, float]] = OrderedDict()  # key -> (failures, retry at)
        self._counts = [0, 0, 0, 0, 0]  # in FillerStats order

    # -- invalidations -------------------------------------------------------------------

    def mark(self) -> int:
        """The invalidation count now: what a rebuild compares against when it is about to store."""
        with self._lock:
            return self._seq

    def invalidate(self, key: Any) -> None:
        """Record that ``key`` was invalidated (``_EVERY_KEY``: all keys)."""
        with self._lock:
            self._seq += 1
            self._recent.append((self._seq, key))

    def invalidated_since(self, key: Any, mark: int) -> bool:
        """Whether ``key`` was invalidated after :meth:`mark` returned ``mark``."""
        with self._lock:
            if self._seq == mark:
                return False
            if not self._recent or self._recent[0][0] > mark + 1:
                return True  # some invalidations since then are forgotten: assume ours was one
            later = [k for seq, k in self._recent if seq > mark]
        # Compared outside the lock: a key's __eq__ is user code.
        return any(k is _EVERY_KEY or k is key or k == key for k in later)

    # -- retry backoff -------------------------------------------------------------------

    def retry_at(self, key: _Key) -> float | None:
        """When ``key`` may be rebuilt again after failures, or None when it is not backing off."""
        with self._lock:
            record = self._backoff.get(key)
        return None if record is None else record[1]

    def failed(self, key: _Key, now: float, first: float, cap: float) -> tuple[int, float]:
        """Record a failed build of ``key``; return the failures in a row and the delay before the next try.

        The delay doubles with each failure from ``first`` up to ``cap``, and
        is drawn in its upper half (jitter), so that processes that failed
        together do not retry together.
        """
        jitter = 0.5 + 0.5 * rng.random()
        with self._lock:
            failures = self._backoff.pop(key, (0, 0.0))[0] + 1
            delay = min(cap, first * 2.0 ** min(failures - 1, 64)) * jitter
            self._backoff[key] = (failures, now + delay)
            while len(self._backoff) > BACKOFF_KEYS:
                self._backoff.popitem(last=False)
        return failures, delay

    def succeeded(self, key: _Key) -> None:
        """Forget ``key``'s failures."""
        with self._lock:
            if self._backoff:
                self._backoff.pop(key, None)

    # -- counters --------------------------------------------------------------------------

    def count(self, field: int) -> None:
        with self._lock:
            self._counts[field] += 1

    def stats(self) -> FillerStats:
        with self._lock:
            return FillerStats(*self._counts)

    def reset_stats(self) -> None:
        with self._lock:
            self._counts = [0, 0, 0, 0, 0]

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


HITS, STALE_HITS, WAITS, REFRESHES_STARTED, REFRESHES_FAILED = range(5)

# _registry_lock protects _registry (a WeakValueDictionary is not
# thread-safe). Scopes are wrapped in _Key, hashed before it is taken; a
# scope's __eq__ runs under it only against a registered scope of the same hash.
_registry_lock = threading.Lock()
_registry: weakref.WeakValueDictionary[_Key, Shared] = weakref.WeakValueDictionary()


def shared_for(scope: Any) -> Shared:
    """The state shared by every filler of the cache named ``scope`` in this process."""
    wrapped = _Key(scope)
    with _registry_lock:
        state = _registry.get(wrapped)
        if state is None:
            state = _registry[wrapped] = Shared()
        return state


# _executor_lock protects _executor, created on first use.
_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def default_executor() -> Executor:
    """The executor of refreshes when a filler is given none: a few threads shared by every filler."""
    global _executor  # noqa: PLW0603 - one lazily created pool per process
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(REFRESH_THREADS, thread_name_prefix="singleflight-refresh")
        return _executor


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child: a lock held by another
    # parent thread would never be released, and the pool's threads are gone.
    global _registry_lock, _executor_lock, _executor  # noqa: PLW0603 - replaced, not reused
    _registry_lock = threading.Lock()
    _executor_lock = threading.Lock()
    _executor = None
    rng.seed()
    for state in list(_registry.values()):
        state._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
