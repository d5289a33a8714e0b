"""submit() handles and do_async(): per-caller futures that share one flight."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import weakref
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError  # not the builtin on 3.10
from typing import Any

import pytest
from helpers import Gate, followers_of, start, wait_until

from singleflight_sync import CallInfo, FlightRecord, FlightStats, Group, LeaderInterrupted, UnhashableKeyError

pytestmark = pytest.mark.usefixtures("no_stranded_threads")

G = Group[Any, Any]


class Boom(Exception):
    pass


def never() -> object:
    msg = "a joined caller's function must never run"
    raise AssertionError(msg)


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="sf-test") as ex:
        yield ex


# -- submit ------------------------------------------------------------------------------------------


def test_submit_returns_a_fresh_future_per_caller(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    h1 = group.submit(pool, "k", gate, "ignored-arg")
    assert gate.entered.wait(10)
    h2 = group.submit(pool, "k", never)
    h3 = group.submit(pool, "k", never)
    assert len({id(h1), id(h2), id(h3)}) == 3
    assert all(isinstance(h, Future) for h in (h1, h2, h3))
    assert not any(h.done() for h in (h1, h2, h3))
    assert group.stats() == FlightStats(calls=3, executions=1, shared=0, errors=0, timeouts=0, in_flight=1)
    gate.finish("v")
    assert [h.result(10) for h in (h1, h2, h3)] == ["v"] * 3
    assert gate.calls == 1
    assert group.stats() == FlightStats(calls=3, executions=1, shared=2, errors=0, timeouts=0, in_flight=0)


def test_a_handle_is_counted_as_shared_before_its_caller_sees_the_outcome(group: G, pool: ThreadPoolExecutor) -> None:
    """stats() read by a caller that has its result already counts that result (3.13t raced here)."""
    gate = Gate()
    h1 = group.submit(pool, "k", gate)
    assert gate.entered.wait(10)
    followers = [group.submit(pool, "k", never) for _ in range(2)]
    seen: list[int] = []
    for h in followers:
        # Runs in the leader's thread the moment the handle completes, before anything after it.
        h.add_done_callback(lambda _h: seen.append(group.stats().shared))
    gate.finish("v")
    assert [h.result(10) for h in (h1, *followers)] == ["v"] * 3
    # result() can return before the leader's thread has run the callbacks.
    wait_until(lambda: len(seen) == 2, what="the done callbacks")
    assert seen == [1, 2]


def test_submit_passes_args_and_kwargs(group: G, pool: ThreadPoolExecutor) -> None:
    h = group.submit(pool, "k", lambda a, *, b: (a, b), 1, b=2)
    assert h.result(10) == (1, 2)


def test_cancelling_one_handle_affects_no_other_and_not_the_flight(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    leader_handle = group.submit(pool, "k", gate)
    assert gate.entered.wait(10)
    joined = group.submit(pool, "k", never)
    cancelled = group.submit(pool, "k", never)
    blocking = start(group.call, "k", never)
    wait_until(lambda: followers_of(group, "k") == 3)
    assert cancelled.cancel()
    assert cancelled.cancelled()
    assert group.in_flight("k")
    assert not leader_handle.done()
    assert not joined.done()
    gate.finish("v")
    assert leader_handle.result(10) == "v"
    assert joined.result(10) == "v"
    blocking.join()
    assert blocking.result == CallInfo("v", False, True)
    with pytest.raises(CancelledError):
        cancelled.result(0)
    assert gate.calls == 1
    assert len(group) == 0


def test_cancelling_the_leaders_handle_does_not_stop_the_flight(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    leader_handle = group.submit(pool, "k", gate)
    assert gate.entered.wait(10)
    follower = start(group.do, "k", never)
    wait_until(lambda: followers_of(group, "k") == 1)
    assert leader_handle.cancel()
    gate.finish("still delivered")
    follower.join()
    assert follower.result == "still delivered"


def test_waiting_on_a_handle_with_a_timeout_affects_nobody(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    h1 = group.submit(pool, "k", gate)
    assert gate.entered.wait(10)
    h2 = group.submit(pool, "k", never)
    with pytest.raises(FutureTimeoutError):
        h2.result(0.01)
    gate.finish(5)
    assert h1.result(10) == h2.result(10) == 5


def test_handle_exceptions_are_copies_per_handle(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    h1 = group.submit(pool, "k", gate)
    assert gate.entered.wait(10)
    h2 = group.submit(pool, "k", never)
    follower = start(group.do, "k", never)
    wait_until(lambda: followers_of(group, "k") == 2)
    original = Boom("from the executor")
    gate.fail(original)
    e1, e2 = h1.exception(10), h2.exception(10)
    with pytest.raises(Boom) as info:
        follower.join()
    e3 = info.value
    assert all(type(e) is Boom for e in (e1, e2, e3))
    assert len({id(e1), id(e2), id(e3), id(original)}) == 4
    assert e1.__cause__ is e2.__cause__ is e3.__cause__ is original  # type: ignore[union-attr]
    assert group.stats().errors == 1
    assert len(group) == 0


def test_submit_joins_a_thread_led_flight(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    leader = start(group.call, "k", gate)
    assert gate.entered.wait(10)
    h = group.submit(pool, "k", never)
    assert followers_of(group, "k") == 1
    gate.finish("v")
    leader.join()
    assert leader.result == CallInfo("v", True, True)
    assert h.result(10) == "v"


def test_thread_joins_a_submitted_flight(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    h = group.submit(pool, "k", gate)
    assert gate.entered.wait(10)
    follower = start(group.call, "k", never, timeout=10)
    wait_until(lambda: followers_of(group, "k") == 1)
    gate.finish("v")
    follower.join()
    assert follower.result == CallInfo("v", False, True)
    assert h.result(10) == "v"


def test_base_exception_in_a_submitted_flight(group: G, pool: ThreadPoolExecutor) -> None:
    gate = Gate()
    h1 = group.submit(pool, "k", gate)
    assert gate.entered.wait(10)
    h2 = group.submit(pool, "k", never)
    original = KeyboardInterrupt()
    gate.fail(original)
    for h in (h1, h2):
        err = h.exception(10)
        assert isinstance(err, LeaderInterrupted)
        assert err.__cause__ is original
    assert len(group) == 0


def test_an_interrupt_between_claiming_and_completing_a_handle_still_completes_it(
    group: G, pool: ThreadPoolExecutor
) -> None:
    """The leader claims each handle (RUNNING, so no cancel can race it), then sets its outcome.

    An asynchronous KeyboardInterrupt between the two, raised here by a trace
    function as the starter's handle's set_result is called (after the
    flight's own), must not leave that handle pending: the rescue completes
    it with LeaderInterrupted.
    """
    release = threading.Event()
    target: list[Future[Any]] = []

    def work() -> str:
        release.wait(10)

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if event == "call" and frame.f_code.co_name == "set_result" and frame.f_locals.get("self") is target[0]:
                sys.settrace(None)
                raise KeyboardInterrupt
            return None

        sys.settrace(tracer)  # cleared by the tracer itself when it fires
        return "value"

    h1 = group.submit(pool, "k", work)
    h2 = group.submit(pool, "k", never)
    target.append(h1)
    wait_until(lambda: followers_of(group, "k") == 1)
    release.set()
    for h in (h1, h2):
        assert isinstance(h.exception(10), LeaderInterrupted)
    assert len(group) == 0


def test_submit_to_a_shut_down_executor(group: G) -> None:
    records: list[FlightRecord] = []
    group._on_end = records.append
    ex = ThreadPoolExecutor(max_workers=1)
    ex.shutdown()
    with pytest.raises(RuntimeError):
        group.submit(ex, "k", never)
    assert len(group) == 0
    assert not group.in_flight("k")
    (rec,) = records
    assert rec.outcome == "error"
    assert isinstance(rec.error, RuntimeError)
    assert 0 <= rec.duration < 10  # not "seconds since an arbitrary epoch"
    # Nothing is cached: with a working executor the same key runs.
    with ThreadPoolExecutor(max_workers=1) as ok:
        assert group.submit(ok, "k", lambda: "ran").result(10) == "ran"


class _HeldShutDownExecutor(ThreadPoolExecutor):
    """A shut-down executor whose submit() first waits, so callers can join meanwhile."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.shutdown()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.entered.set()
        assert self.release.wait(10)
        return super().submit(fn, *args, **kwargs)  # raises RuntimeError: shut down


def test_callers_that_joined_a_refused_flight_get_the_executors_error(group: G) -> None:
    ex = _HeldShutDownExecutor()
    submitter = start(group.submit, ex, "k", never)
    assert ex.entered.wait(10)
    assert group.in_flight("k")
    blocking = start(group.do, "k", never)
    wait_until(lambda: followers_of(group, "k") == 1)
    with ThreadPoolExecutor(max_workers=1) as other:
        joined = group.submit(other, "k", never)
        assert followers_of(group, "k") == 2
        ex.release.set()
        with pytest.raises(RuntimeError) as info:
            submitter.join()
        original = info.value
        with pytest.raises(RuntimeError) as info:
            blocking.join()
        assert info.value is not original
        assert info.value.__cause__ is original
        err = joined.exception(10)
        assert isinstance(err, RuntimeError)
        assert err.__cause__ is original
    assert len(group) == 0
    assert group._waiting == {}


def test_work_dropped_by_the_executor_lands_the_flight(group: G) -> None:
    # shutdown(cancel_futures=True) drops queued work without running it; the
    # flight must land (not stay in flight for ever) and its callers hear of it.
    records: list[FlightRecord] = []
    group._on_end = records.append
    ex = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()
    blocker = ex.submit(busy.wait, 10)
    queued = group.submit(ex, "k", never)
    joined = group.submit(ex, "k", never)
    blocking = start(group.call, "k", never)
    wait_until(lambda: followers_of(group, "k") == 2)
    ex.shutdown(wait=False, cancel_futures=True)
    busy.set()
    blocker.result(10)
    for h in (queued, joined):
        err = h.exception(10)
        assert isinstance(err, LeaderInterrupted)
        assert err.key == "k"
        assert "cancelled" in str(err)
    with pytest.raises(LeaderInterrupted):
        blocking.join()
    assert not group.in_flight("k")
    assert records[0].outcome == "interrupted"
    assert group.call("k", lambda: "runs again") == CallInfo("runs again", True, False)
    ex.shutdown(wait=True)


def test_submit_unhashable_key(group: G, pool: ThreadPoolExecutor) -> None:
    with pytest.raises(UnhashableKeyError):
        group.submit(pool, ["x"], never)
    assert group.stats() == FlightStats(0, 0, 0, 0, 0, 0)


def test_submit_with_a_plain_executor_subclass(group: G) -> None:
    class Inline(Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            f: Future[Any] = Future()
            f.set_result(fn(*args, **kwargs))
            return f

    assert group.submit(Inline(), "k", lambda: 3).result(0) == 3
    err = group.submit(Inline(), "k", _boom).exception(0)
    assert isinstance(err, Boom)
    assert len(group) == 0


def _boom() -> None:
    raise Boom


# -- do_async ----------------------------------------------------------------------------------------


def test_do_async_leads_and_returns(group: G) -> None:
    async def main() -> object:
        return await group.do_async("k", lambda a, b=0: a + b, 1, b=2)

    assert asyncio.run(main()) == 3
    assert group.stats() == FlightStats(1, 1, 0, 0, 0, 0)


def test_do_async_tasks_share_one_execution(group: G) -> None:
    gate = Gate()

    async def main() -> list[object]:
        first = asyncio.ensure_future(group.do_async("k", gate))
        assert await asyncio.to_thread(gate.entered.wait, 10)
        others = [asyncio.ensure_future(group.do_async("k", never)) for _ in range(3)]
        await asyncio.sleep(0)
        assert followers_of(group, "k") == 3
        gate.finish("v")
        return await asyncio.gather(first, *others)

    assert asyncio.run(main()) == ["v"] * 4
    assert gate.calls == 1


def test_do_async_joins_a_thread_led_flight(group: G) -> None:
    gate = Gate()
    leader = start(group.call, "k", gate)
    assert gate.entered.wait(10)

    async def main() -> object:
        task = asyncio.ensure_future(group.do_async("k", never))
        await asyncio.sleep(0)
        assert followers_of(group, "k") == 1
        gate.finish("from a thread")
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(main()) == "from a thread"
    leader.join()
    assert leader.result == CallInfo("from a thread", True, True)


def test_cancelling_the_awaiting_task_does_not_cancel_the_flight(group: G) -> None:
    gate = Gate()
    leader = start(group.call, "k", gate)
    assert gate.entered.wait(10)
    patient = None

    async def main() -> None:
        nonlocal patient
        task = asyncio.ensure_future(group.do_async("k", never))
        await asyncio.sleep(0)
        assert followers_of(group, "k") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert group.in_flight("k")
        assert followers_of(group, "k") == 0  # the cancelled caller left the flight
        patient = start(group.do, "k", never)
        wait_until(lambda: followers_of(group, "k") == 1)

    asyncio.run(main())
    assert leader.is_alive()
    gate.finish("v")
    leader.join()
    assert patient is not None
    patient.join()
    assert patient.result == "v"
    assert gate.calls == 1


def test_cancelling_the_leading_task_does_not_cancel_the_flight(group: G) -> None:
    gate = Gate()
    follower = None

    async def main() -> None:
        nonlocal follower
        task = asyncio.ensure_future(group.do_async("k", gate))
        assert await asyncio.to_thread(gate.entered.wait, 10)
        follower = start(group.do, "k", never)
        wait_until(lambda: followers_of(group, "k") == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.finish("v")
        # asyncio.run waits for the default executor, where the flight still runs.

    asyncio.run(main())
    assert follower is not None
    follower.join()
    assert follower.result == "v"


def test_do_async_exception_is_a_copy(group: G) -> None:
    gate = Gate()
    leader = start(group.call, "k", gate)
    assert gate.entered.wait(10)
    original = Boom()

    async def main() -> BaseException:
        task = asyncio.ensure_future(group.do_async("k", never))
        await asyncio.sleep(0)
        gate.fail(original)
        try:
            await asyncio.wait_for(task, 10)
        except Boom as exc:
            return exc
        msg = "no exception"
        raise AssertionError(msg)

    err = asyncio.run(main())
    with pytest.raises(Boom):
        leader.join()
    assert err is not original
    assert err.__cause__ is original


def test_do_async_does_not_block_the_loop(group: G) -> None:
    gate = Gate()

    async def main() -> None:
        task = asyncio.ensure_future(group.do_async("k", gate))
        t0 = time.monotonic()
        assert await asyncio.to_thread(gate.entered.wait, 10)
        # The loop keeps running while the flight is held.
        ticks = 0
        while ticks < 5:
            await asyncio.sleep(0)
            ticks += 1
        assert not task.done()
        gate.finish(1)
        assert await task == 1
        assert time.monotonic() - t0 < 10

    asyncio.run(main())


# -- memory ------------------------------------------------------------------------------------------


class WeakBoom(Exception):
    """Builtin exceptions cannot be weakly referenced; a subclass can."""


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("n_joined", [0, 2])
def test_submitted_flight_keeps_no_exception_without_gc(group: G, pool: ThreadPoolExecutor, n_joined: int) -> None:
    gate = Gate()
    handles = [group.submit(pool, "k", gate)]
    assert gate.entered.wait(10)
    handles += [group.submit(pool, "k", never) for _ in range(n_joined)]
    gate.fail(WeakBoom())
    refs = []
    for h in handles:
        err = h.exception(10)
        assert isinstance(err, WeakBoom)
        refs.append(weakref.ref(err))
        refs.append(weakref.ref(err.__cause__))  # type: ignore[arg-type]
    del h, err, handles
    wait_until(lambda: len(group) == 0)
    pool.submit(int).result(10)  # the worker that ran the flight has moved on
    assert [r() for r in refs] == [None] * len(refs), "a reference cycle kept the exception alive"


class WeakRefusal(RuntimeError):
    pass


class _HeldRefusingExecutor(Executor):
    """An executor whose submit() waits, then refuses the work with a weak-referenceable error."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.entered.set()
        assert self.release.wait(10)
        msg = "refused"
        raise WeakRefusal(msg)


@pytest.mark.usefixtures("no_gc")
def test_refused_submission_keeps_no_exception_without_gc(group: G) -> None:
    ex = _HeldRefusingExecutor()
    refs = []

    def submitter() -> None:
        try:
            group.submit(ex, "k", never)
        except WeakRefusal as exc:
            refs.append(weakref.ref(exc))

    t = start(submitter)
    assert ex.entered.wait(10)
    with ThreadPoolExecutor(max_workers=1) as other:
        joined = group.submit(other, "k", never)
        ex.release.set()
        t.join()
        err = joined.exception(10)
        assert isinstance(err, WeakRefusal)
        refs.append(weakref.ref(err))
        del joined, err
    assert len(refs) == 2
    assert [r() for r in refs] == [None, None], "a reference cycle kept the exception alive"


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("n_joined", [0, 2])
def test_do_async_flight_keeps_no_exception_without_gc(group: G, n_joined: int) -> None:
    gate = Gate()
    refs: list[weakref.ref[BaseException]] = []

    async def one(fn: Any) -> None:
        try:
            await group.do_async("k", fn)
        except WeakBoom as exc:
            refs.append(weakref.ref(exc))

    async def main() -> None:
        tasks = [asyncio.ensure_future(one(gate))]
        assert await asyncio.to_thread(gate.entered.wait, 10)
        tasks += [asyncio.ensure_future(one(never)) for _ in range(n_joined)]
        await asyncio.sleep(0)
        gate.fail(WeakBoom())
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert len(refs) == 1 + n_joined
    assert [r() for r in refs] == [None] * len(refs), "a reference cycle kept the exception alive"
