"""Thread and polling helpers shared by the core test-suite."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

DEADLINE = 10.0


class ExcThread(threading.Thread):
    """A thread whose ``join()`` re-raises the worker's exception.

    ``result`` holds the target's return value. The worker's exception is kept
    only until ``join()`` hands it over, so the thread object does not pin it.
    """

    def __init__(self, target: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, daemon=True)
        self._fn: Callable[..., Any] | None = target
        self._fn_args = args
        self._fn_kwargs = kwargs
        self.result: Any = None
        self.exc: BaseException | None = None

    def run(self) -> None:
        fn = self._fn
        assert fn is not None
        try:
            self.result = fn(*self._fn_args, **self._fn_kwargs)
        except BaseException as exc:
            self.exc = exc
        finally:
            self._fn = None
            self._fn_args = ()
            self._fn_kwargs = {}

    def join(self, timeout: float | None = DEADLINE) -> None:
        super().join(timeout)
        if self.is_alive():
            msg = f"thread {self.name} did not finish within {timeout}s"
            raise AssertionError(msg)
        exc, self.exc = self.exc, None
        if exc is not None:
            try:
                raise exc
            finally:
                exc = None


def start(target: Callable[..., Any], *args: Any, **kwargs: Any) -> ExcThread:
    """Create and start an :class:`ExcThread`."""
    t = ExcThread(target, *args, **kwargs)
    t.start()
    return t


def wait_until(predicate: Callable[[], object], timeout: float = DEADLINE, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds.

    Used only to observe state the code under test publishes (a follower has
    registered, a leader is in its function), never as a stand-in for an event.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(0.0005)


def followers_of(group: Any, key: Any) -> int:
    """The follower count of the flight now mapped to ``key`` (0 if none)."""
    h = hash(key)
    with group._lock:
        flight = group._flight_of(h, key)
        return 0 if flight is None else int(flight.followers)


def waiting_count(group: Any) -> int:
    with group._lock:
        return len(group._waiting)


def blocked_in_follow(ident: int) -> bool:
    """Whether thread ``ident`` is parked inside ``Group._follow`` (waiting on a flight)."""
    frame = sys._current_frames().get(ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return "_follow" in names and names[0] == "wait"


class Gate:
    """A function a leader runs that blocks until released, then returns or raises.

    ``entered`` is set when the function starts; ``calls`` counts executions.
    """

    def __init__(self, value: Any = None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.value = value
        self.error: BaseException | None = None
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        self.entered.set()
        if not self.release.wait(DEADLINE):
            msg = "gate was never released"
            raise AssertionError(msg)
        if self.error is not None:
            err, self.error = self.error, None
            try:
                raise err
            finally:
                err = None  # the traceback holds this frame: no cycle through ``err``
        return self.value

    def finish(self, value: Any = None) -> None:
        self.value = value
        self.release.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.release.set()
