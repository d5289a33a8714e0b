"""The corners of submit, do_async, fork and accounting: no hang, one landing, honest stats.

Each test holds its threads with events (never sleeps) and uses real
executors, real event loops and a real fork.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import tracemalloc
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from helpers import ExcThread, wait_until

from singleflight_sync import FlightTimeoutError, Group, LeaderInterrupted

if TYPE_CHECKING:
    from collections.abc import Callable


def balanced(group: Group[Any, Any]) -> None:
    s = group.stats()
    assert s.in_flight == 0, s
    assert s.calls == s.executions + s.shared + s.timeouts + s.abandoned, s


class RejectingExecutor(Executor):
    """Fails every job's future with an error, without running the job."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(self.error)
        return future


class LaterExecutor(Executor):
    """Keeps the jobs; the test fails, cancels or runs them when it chooses."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.jobs.append((future, fn, args))
        return future


class InlineExecutor(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


# -- 1. an executor that ends a job without running it ------------------------------


def test_a_job_failed_by_its_executor_lands_the_flight_for_every_caller() -> None:
    group: Group[str, int] = Group()
    later = LaterExecutor()
    ran = threading.Event()
    first = group.submit(later, "k", ran.set)
    second = group.submit(later, "k", ran.set)  # joins the same flight
    assert group.stats().shared == 0
    ((job_future, _, _),) = later.jobs
    rejection = RuntimeError("queue full")
    job_future.set_exception(rejection)  # never ran
    for handle in (first, second):
        error = handle.exception(10)
        assert isinstance(error, LeaderInterrupted)
        assert error.__cause__ is rejection
    assert not ran.is_set()
    assert not group.in_flight("k")
    assert group.do("k", lambda: 7) == 7  # a new flight
    balanced(group)


def test_an_executor_that_rejects_every_job_never_strands_a_key() -> None:
    group: Group[str, int] = Group()
    error = ValueError("rejected")
    handle = group.submit(RejectingExecutor(error), "k", int)
    got = handle.exception(10)
    assert isinstance(got, LeaderInterrupted)
    assert got.__cause__ is error
    assert len(group) == 0
    assert group.do("k", int) == 0


def test_submit_refuses_a_process_pool_before_anyone_joins() -> None:
    group: Group[str, int] = Group()
    with ProcessPoolExecutor(1) as pool:
        with pytest.raises(TypeError, match="ProcessPoolExecutor"):
            group.submit(pool, "k", int)
    assert len(group) == 0
    assert group.stats().calls == 0


# -- 2. do_async when the loop's default executor drops the job ----------------------


def test_do_async_lands_when_the_default_executor_drops_the_job() -> None:
    group: Group[str, int] = Group()
    blocker = threading.Event()
    started = threading.Event()

    async def main() -> BaseException | None:
        pool = ThreadPoolExecutor(1)
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        # Occupy the only worker, so the flight's job waits in the queue.
        busy = pool.submit(lambda: (started.set(), blocker.wait(10)))
        assert started.wait(10)  # blocks the loop for a moment: nothing else runs on it yet
        task = asyncio.ensure_future(group.do_async("k", int))
        while not group.in_flight("k"):  # noqa: ASYNC110 - observes the group's state, nothing to await
            await asyncio.sleep(0)
        pool.shutdown(wait=False, cancel_futures=True)  # drops the queued flight job
        blocker.set()
        busy.result(10)
        try:
            await asyncio.wait_for(task, 10)
        except LeaderInterrupted as exc:
            return exc
        return None

    error = asyncio.run(main())
    assert isinstance(error, LeaderInterrupted)
    assert not group.in_flight("k")
    balanced(group)


# -- 4. fork with a forgotten flight in progress --------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_completes_handles_of_forgotten_flights() -> None:
    group: Group[str, int] = Group()
    later = LaterExecutor()
    handle = group.submit(later, "k", int)
    assert group.forget("k")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            error = handle.exception(5)
            ok = isinstance(error, LeaderInterrupted) and group.do("k", lambda: 3) == 3
            os.write(write, b"ok" if ok else repr(error).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert answer == b"ok"
    later.jobs[0][1](*later.jobs[0][2])  # the parent's flight still runs here
    assert handle.result(10) == 0


# -- 6. the coroutine that starts a do_async flight leads it --------------------------


def test_the_coroutine_that_starts_a_flight_is_not_timed_out() -> None:
    group: Group[str, int] = Group(timeout=0.05)
    release = threading.Event()

    def slow() -> int:
        release.wait(10)
        return 5

    async def main() -> int:
        task = asyncio.ensure_future(group.do_async("k", slow))
        follower = asyncio.ensure_future(group.do_async("k", slow))
        with pytest.raises(FlightTimeoutError):
            await follower  # a follower is timed out...
        release.set()
        return await task  # ...the leader is not

    assert asyncio.run(main()) == 5
    s = group.stats()
    assert (s.calls, s.executions, s.timeouts, s.shared) == (2, 1, 1, 0)
    balanced(group)


# -- 7. an inline executor and a BaseException ---------------------------------------


def test_an_interrupt_in_inline_work_lands_the_flight_once() -> None:
    group: Group[str, int] = Group()

    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        group.submit(InlineExecutor(), "k", interrupted)
    s = group.stats()
    assert (s.executions, s.errors, s.in_flight) == (1, 1, 0)
    assert group.do("k", int) == 0


# -- 9. stats match what callers saw --------------------------------------------------


def test_cancelled_async_waits_are_never_counted_as_shared() -> None:
    group: Group[str, int] = Group()
    release = threading.Event()
    leader = ExcThread(group.do, "k", lambda: release.wait(10) and 1)
    leader.start()
    wait_until(lambda: group.in_flight("k"))

    async def main() -> None:
        for _ in range(50):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(group.do_async("k", int), 0.001)

    asyncio.run(main())
    release.set()
    leader.join(10)
    s = group.stats()
    assert s.shared == 0, s
    assert s.abandoned == 50, s
    balanced(group)


def test_a_timeout_after_forget_is_a_timeout() -> None:
    group: Group[str, int] = Group(timeout=0.01)
    release = threading.Event()
    leader = ExcThread(group.do, "k", lambda: release.wait(10) and 1)
    leader.start()
    wait_until(lambda: group.in_flight("k"))

    async def follower() -> None:
        task = asyncio.ensure_future(group.do_async("k", int))
        await asyncio.sleep(0)
        group.forget("k")
        with pytest.raises(FlightTimeoutError):
            await task

    asyncio.run(follower())
    with pytest.raises(FlightTimeoutError):
        _thread_timeout_after_forget(group)
    release.set()
    leader.join(10)
    s = group.stats()
    assert s.timeouts == 2, s
    assert s.shared == 0, s
    balanced(group)


def _thread_timeout_after_forget(group: Group[str, int]) -> None:
    release = threading.Event()
    leader = ExcThread(group.do, "t", lambda: release.wait(10) and 1)
    leader.start()
    wait_until(lambda: group.in_flight("t"))
    follower = ExcThread(group.call, "t", int, timeout=0.05)
    follower.start()
    wait_until(lambda: group.stats().calls >= 4)
    group.forget("t")
    try:
        follower.join(10)
    finally:
        release.set()
        leader.join(10)


# -- 10. memory stays flat while callers give up on a long flight ---------------------


def test_abandoned_waits_leave_nothing_behind_on_a_long_flight() -> None:
    group: Group[str, int] = Group()
    release = threading.Event()
    leader = ExcThread(group.do, "k", lambda: release.wait(60) and 1)
    leader.start()
    wait_until(lambda: group.in_flight("k"))

    def thread_waits(n: int) -> None:
        for _ in range(n):
            with pytest.raises(FlightTimeoutError):
                group.call("k", int, timeout=1e-6)

    async def async_waits(n: int) -> None:
        for _ in range(n):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(group.do_async("k", int), 0)

    thread_waits(200)  # warm up every code path and cache
    asyncio.run(async_waits(200))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        thread_waits(10_000)
        asyncio.run(async_waits(10_000))
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if "singleflight_sync" in str(s))
    release.set()
    leader.join(10)
    print(f"memory kept by 20,000 abandoned waits: {grown} bytes", file=sys.stderr)
    assert grown < 16_384, f"{grown} bytes kept by 20,000 abandoned waits"
    balanced(group)
