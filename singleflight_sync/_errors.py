"""The exception tree of singleflight_sync.

Every error the library raises on its own account derives from
:class:`SingleFlightError`. Each one carries the key it is about and builds its
message once, in ``__init__``; ``__reduce__`` keeps them picklable so they can
cross a process boundary (``multiprocessing``, the Redis layer).
"""

from __future__ import annotations

from typing import Any

_MAX_KEY_TEXT = 200


def show_key(key: Any) -> str:
    """``repr(key)`` for a message: at most 200 characters, and never raising."""
    try:
        text = repr(key)
    except Exception:
        return f"<{type(key).__qualname__} object; its __repr__ raised>"
    if len(text) > _MAX_KEY_TEXT:
        return text[: _MAX_KEY_TEXT - 3] + "..."
    return text


class SingleFlightError(Exception):
    """Base class of every error raised by singleflight_sync itself."""


class FlightTimeoutError(SingleFlightError, TimeoutError):
    """A follower stopped waiting for a flight after ``timeout`` seconds.

    Only the caller that timed out is affected: the leader keeps running and
    the other followers keep waiting. It is also a builtin :class:`TimeoutError`.
    """

    def __init__(self, key: Any, timeout: float) -> None:
        self.key = key
        self.timeout = timeout
        msg = f"gave up waiting for the flight of key {show_key(key)} after {timeout:g}s; the leader is still running"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.timeout))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, timeout={self.timeout!r})"


class LeaderInterrupted(SingleFlightError):
    """The leader of a flight ended without a result or an ``Exception``.

    Followers get this when the leader was hit by a ``BaseException`` that is
    not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``, a thread or
    greenlet kill), or when the leader lives in the parent of a forked process.
    ``__cause__`` is the original ``BaseException`` when there is one. The
    leader itself re-raises the original unchanged.
    """

    def __init__(self, key: Any, reason: str = "was interrupted") -> None:
        self.key = key
        self.reason = reason
        msg = f"the leader of the flight for key {show_key(key)} {reason}; no result is available"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.reason))


class ReentrantCallError(SingleFlightError, RecursionError):
    """A thread asked for a key whose flight it is leading itself.

    Waiting would deadlock, because the leader would wait for its own result.
    """

    def __init__(self, key: Any) -> None:
        self.key = key
        msg = (
            f"re-entrant call for key {show_key(key)}: this thread is already running the flight for that key "
            "and would wait on itself; call the function directly or use a different key"
        )
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key,))


class WaitCycleError(SingleFlightError, RuntimeError):
    """Joining a flight would close a cycle of threads waiting on each other.

    For example thread A leads key ``"a"`` and waits on ``"b"``, while thread B
    leads ``"b"`` and now asks for ``"a"``. Detected within one :class:`Group`.
    """

    def __init__(self, key: Any, cycle: tuple[Any, ...]) -> None:
        self.key = key
        self.cycle = cycle
        path = " -> ".join(show_key(k) for k in cycle)
        msg = f"waiting on key {show_key(key)} would deadlock: the flights wait on each other ({path})"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.cycle))


class UnhashableKeyError(SingleFlightError, TypeError):
    """A key (or a decorated function's argument) cannot be hashed.

    It is also a builtin :class:`TypeError`. ``key`` is the offending key.
    """

    def __init__(self, key: Any, message: str | None = None) -> None:
        self.key = key
        if message is None:
            message = (
                f"key {show_key(key)} is unhashable ({type(key).__name__}); "
                "pass a hashable key such as a str or a tuple of hashable values"
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, str(self)))
