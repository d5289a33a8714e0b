"""A bounded stress run: many threads, random keys, errors, timeouts, forgets and nested calls.

Every call is classified from what its caller saw (it ran the function, it got
someone else's outcome, it timed out, or it was refused before joining); at
quiescence the group's counters must equal those observations exactly, the
map must be empty and no thread may be stranded.
"""

# ruff: noqa: PT017 - each call is classified from the exception it caught, inside except blocks

from __future__ import annotations

import itertools
import os
import random
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import ExcThread

from singleflight_sync import (
    CallInfo,
    FlightRecord,
    FlightTimeoutError,
    Group,
    LeaderInterrupted,
    ReentrantCallError,
    WaitCycleError,
)

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
N_THREADS = 32 if FREE_THREADED else 64
SECONDS = float(os.environ.get("SF_STRESS_SECONDS", "3.0"))
KEYS = [f"k{i}" for i in range(6)]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_stranded_threads")]


class Boom(Exception):
    pass


class Halt(BaseException):
    pass


@dataclass
class Tally:
    leaders: int = 0  # calls whose own function ran
    shared: int = 0  # calls that got another caller's outcome
    timeouts: int = 0  # calls that gave up waiting
    refused: int = 0  # calls refused before joining (wait cycle, re-entry): not counted by the group
    errors: int = 0  # executions that raised
    forgets: int = 0
    runs: list[tuple[Any, int]] = field(default_factory=list)  # (key, token) of every execution
    received: list[tuple[Any, Any]] = field(default_factory=list)  # (key, value) a follower got


class Worker:
    def __init__(self, group: Group[Any, Any], seed: int, deadline: float, tokens: Any) -> None:
        self.group = group
        self.rnd = random.Random(seed)
        self.deadline = deadline
        self.tokens = tokens
        self.tally = Tally()
        self.local = threading.local()

    def make_fn(self, key: Any, token: int, depth: int) -> Any:
        def fn() -> Any:
            rnd = self.rnd
            self.tally.runs.append((key, token))
            work = rnd.choice((0, 0, 0, 0.0002, 0.001))
            if work:
                time.sleep(work)  # simulated work, not synchronisation
            if depth == 0 and rnd.random() < 0.15:
                self.one_call(rnd.choice(KEYS), depth + 1)
            roll = rnd.random()
            if roll < 0.2:
                self.tally.errors += 1
                raise Boom(key, token)
            if roll < 0.23 and depth == 0:
                self.tally.errors += 1
                raise Halt(key, token)
            return ("value", key, token)

        return fn

    def one_call(self, key: Any, depth: int) -> None:
        rnd = self.rnd
        token = next(self.tokens)
        timeout = rnd.choice((None, None, 0.0005, 0.002, 0.01))
        t = self.tally
        runs_before = len(t.runs)
        fn = self.make_fn(key, token, depth)
        try:
            info = self.group.call(key, fn, timeout=timeout)
        except Boom as exc:
            if (key, token) in t.runs[runs_before:]:
                assert exc.args == (key, token)
                t.leaders += 1
            else:
                assert exc.__cause__ is not None
                assert exc.args[0] == key
                t.received.append((key, ("error", *exc.args)))
                t.shared += 1
        except Halt as exc:
            assert exc.args == (key, token)
            t.leaders += 1
        except LeaderInterrupted as exc:
            assert exc.key == key
            assert isinstance(exc.__cause__, Halt)
            t.received.append((key, ("halt", *exc.__cause__.args)))
            t.shared += 1
        except FlightTimeoutError as exc:
            assert exc.key == key
            assert exc.__cause__ is None
            assert timeout is not None
            t.timeouts += 1
        except (WaitCycleError, ReentrantCallError) as exc:
            assert depth == 1, "only a leader's nested call can close a cycle or re-enter"
            assert exc.__cause__ is None
            assert exc.key == key
            t.refused += 1
        else:
            assert isinstance(info, CallInfo)
            ran = (key, token) in t.runs[runs_before:]
            assert info.leader is ran
            if ran:
                assert info.value == ("value", key, token)
                t.leaders += 1
            else:
                assert info.shared
                assert info.value[1] == key
                t.received.append((key, info.value))
                t.shared += 1

    def run(self) -> None:
        rnd = self.rnd
        while time.monotonic() < self.deadline:
            roll = rnd.random()
            key = rnd.choice(KEYS)
            if roll < 0.08:
                self.group.forget(key)
                self.tally.forgets += 1
            elif roll < 0.1:
                self.group.forget_unshared(key)
            else:
                self.one_call(key, 0)


def test_stress_accounting_at_quiescence() -> None:
    records: list[FlightRecord] = []
    group: Group[Any, Any] = Group(on_flight_end=records.append)
    tokens = itertools.count()
    seed = random.randrange(2**32)
    deadline = time.monotonic() + SECONDS
    workers = [Worker(group, seed + i, deadline, tokens) for i in range(N_THREADS)]
    threads = [ExcThread(w.run, name=f"stress-{i}") for i, w in enumerate(workers)]
    for th in threads:
        th.start()
    failures = []
    for th in threads:
        try:
            th.join(SECONDS + 30)  # no thread may be stranded
        except BaseException as exc:
            failures.append(f"{th.name}: {exc!r}")
    assert not failures, f"seed={seed}: {failures}"

    total = Tally()
    for w in workers:
        t = w.tally
        total.leaders += t.leaders
        total.shared += t.shared
        total.timeouts += t.timeouts
        total.refused += t.refused
        total.errors += t.errors
        total.forgets += t.forgets
        total.runs += t.runs
        total.received += t.received

    stats = group.stats()
    print(f"\nstress: {N_THREADS} threads, {SECONDS}s, {stats}, refused={total.refused}, forgets={total.forgets}")
    ctx = f"seed={seed} stats={stats} observed={total.leaders=} {total.shared=} {total.timeouts=} {total.refused=}"
    assert stats.executions == len(total.runs) == total.leaders, ctx
    assert stats.calls == total.leaders + total.shared + total.timeouts, ctx
    assert stats.shared == total.shared, ctx
    assert stats.timeouts == total.timeouts, ctx
    assert stats.errors == total.errors, ctx
    assert stats.in_flight == 0, ctx
    assert group._flights == {}
    assert group._waiting == {}
    assert len(group) == 0
    # One record per execution, and every shared outcome was counted as a follower of its flight.
    assert len(records) == stats.executions, ctx
    assert sum(r.followers for r in records) == stats.shared, ctx
    # Every outcome a follower received was produced by an execution of that same key.
    produced = set(total.runs)
    for key, value in total.received:
        assert (key, value[-1]) in produced, (key, value)
    # The run did exercise the interesting paths.
    assert total.shared > 0, ctx
    assert total.timeouts > 0, ctx
    assert stats.errors > 0, ctx


class Clock:
    """A global order of events: a lock-guarded counter (no reliance on the GIL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def tick(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


def test_stress_mixed_entry_points() -> None:
    """do/call, submit on a real pool (awaited or cancelled), do_async (some cancelled), forgets, timeouts.

    At quiescence: every value a caller got was produced by a run of its key
    that ended after the call began (it was running, or started later), the
    map is empty, and calls == executions + shared + timeouts + abandoned.
    """
    import asyncio  # noqa: PLC0415 - only this test needs it
    from concurrent.futures import CancelledError, ThreadPoolExecutor  # noqa: PLC0415

    clock = Clock()
    runs: dict[int, tuple[Any, int, int]] = {}  # token -> (key, started, landed)
    runs_lock = threading.Lock()
    leader = threading.local()  # the token the leader's thread just ran

    def landed(record: FlightRecord) -> None:
        # on_flight_end runs in the leader's thread after the landing: a tick
        # taken here is later than the moment nobody could join any more.
        token, key, started = leader.run
        leader.run = None
        assert record.key == key
        with runs_lock:
            runs[token] = (key, started, clock.tick())

    group: Group[Any, Any] = Group(on_flight_end=landed)
    got: list[tuple[Any, int, int]] = []  # (key, token of the value, tick when the call began)
    got_lock = threading.Lock()
    tokens = itertools.count()
    token_lock = threading.Lock()
    seed = random.randrange(2**32)
    deadline = time.monotonic() + SECONDS / 2

    def make(key: Any, rnd: random.Random) -> Any:
        with token_lock:
            token = next(tokens)
        work = rnd.choice((0, 0.0002, 0.001, 0.003))

        def fn() -> Any:
            leader.run = (token, key, clock.tick())
            if work:
                time.sleep(work)  # simulated work, not synchronisation
            return (key, token)

        return fn

    def record(key: Any, began: int, value: Any) -> None:
        assert value[0] == key
        with got_lock:
            got.append((key, value[1], began))

    def worker(i: int, pool: ThreadPoolExecutor) -> None:
        rnd = random.Random(seed + i)
        loop = asyncio.new_event_loop()
        try:
            while time.monotonic() < deadline:
                key = rnd.choice(KEYS[:3])
                roll = rnd.random()
                began = clock.tick()
                if roll < 0.05:
                    group.forget(key)
                elif roll < 0.35:
                    try:
                        record(key, began, group.call(key, make(key, rnd), timeout=rnd.choice((None, 0.001))).value)
                    except FlightTimeoutError:
                        pass
                elif roll < 0.6:
                    handle = group.submit(pool, key, make(key, rnd))
                    if rnd.random() < 0.3 and handle.cancel():
                        continue
                    try:
                        record(key, began, handle.result(30))
                    except CancelledError:
                        pass
                else:
                    wait = rnd.choice((None, 0.001, 0.01))

                    async def one(key: Any = key, wait: float | None = wait) -> Any:
                        return await asyncio.wait_for(group.do_async(key, make(key, rnd)), wait)

                    try:
                        record(key, began, loop.run_until_complete(one()))
                    except (asyncio.TimeoutError, TimeoutError):
                        pass
        finally:
            loop.close()

    with ThreadPoolExecutor(4) as pool:
        threads = [ExcThread(worker, i, pool, name=f"mixed-{i}") for i in range(8 if FREE_THREADED else 12)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(SECONDS + 60)
    # The pool has finished every job: every flight has landed.
    s = group.stats()
    ctx = f"seed={seed} stats={s}"
    print(f"\nmixed stress: {s}")
    assert s.in_flight == 0, ctx
    assert group._flights == {}, ctx
    assert group._waiting == {}, ctx
    assert group._detached == {}, ctx
    assert s.executions == len(runs), ctx
    assert s.calls == s.executions + s.shared + s.timeouts + s.abandoned, ctx
    for key, token, began in got:
        run_key, _, ended = runs[token]
        assert run_key == key, ctx
        assert ended > began, f"{ctx}: a value from a flight that had landed before the call began"
    assert s.shared > 0, ctx
    assert s.abandoned + s.timeouts > 0, ctx
