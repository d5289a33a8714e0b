"""A hand-written reference singleflight: one ``Future`` per call, nothing else.

The simplest correct implementation, to tell what the library's features cost:
a lock, a dict key -> Future, the leader runs the function and publishes the
outcome, followers wait on the future. No timeouts, no cycle detection, no
stats, no per-follower exception copies, no key normalisation.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any


class ReferenceGroup:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # protects _futures and joined
        self._futures: dict[Any, Future[Any]] = {}
        # Followers that joined so far; only the follower path pays for it.
        # The wake-up and memory benchmarks read it to know everyone waits.
        self.joined = 0

    def do(self, key: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            fut = self._futures.get(key)
            if fut is None:
                fut = self._futures[key] = Future()
                leader = True
            else:
                self.joined += 1
                leader = False
        if not leader:
            return fut.result()
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:
            with self._lock:
                del self._futures[key]
            fut.set_exception(exc)
            raise
        with self._lock:
            del self._futures[key]
        fut.set_result(value)
        return value
