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
