"""The core guarantees of Group: landing, exceptions, interrupts, re-entry, cycles, forget, timeouts, memory."""

from __future__ import annotations

import pickle
import signal
import sys
import threading
import traceback
import weakref
from typing import Any

import pytest
from helpers import ExcThread, Gate, blocked_in_follow, followers_of, start, wait_until, waiting_count

from singleflight_sync import (
    CallInfo,
    FlightRecord,
    FlightStats,
    FlightTimeoutError,
    Group,
    LeaderInterrupted,
    ReentrantCallError,
    SingleFlightError,
    WaitCycleError,
)

pytestmark = pytest.mark.usefixtures("no_stranded_threads")

G = Group[Any, Any]


class Boom(Exception):
    pass


class CustomBase(BaseException):
    """A BaseException that is neither an Exception nor one of the builtins."""


def never() -> object:
    msg = "a follower's function must never run"
    raise AssertionError(msg)


def lead(group: G, key: object, gate: Gate) -> ExcThread:
    t = start(group.call, key, gate)
    assert gate.entered.wait(10)
    return t


def follow(group: G, key: object, **call_kw: Any) -> ExcThread:
    n = followers_of(group, key)
    t = start(group.call, key, never, **call_kw)
    wait_until(lambda: followers_of(group, key) == n + 1, what="follower joined")
    return t


# -- 1. landing is one critical section; not a cache --------------------------------------------------


def test_caller_after_landing_starts_a_new_execution(group: G) -> None:
    gate = Gate()
    leader = lead(group, "k", gate)
    f = follow(group, "k")
    gate.finish("first")
    leader.join()
    f.join()
    assert f.result == CallInfo("first", False, True)
    assert not group.in_flight("k")
    assert group.call("k", lambda: "second") == CallInfo("second", True, False)
    assert group.stats().executions == 2


class _SpyFlights(dict):  # type: ignore[type-arg]
    """The group's flight map, recording the state of each flight at the moment it is removed."""

    def __init__(self, group: G) -> None:
        super().__init__()
        self.group = group
        self.removals: list[tuple[bool, bool]] = []

    def pop(self, key: Any, *default: Any) -> Any:
        flight = self.get(key)
        if flight is not None:
            # (lock held?, outcome already visible to a follower?)
            published = getattr(flight, "_state", "PENDING") != "PENDING"
            self.removals.append((self.group._lock.locked(), published))
        return super().pop(key, *default)


def test_key_is_removed_under_the_lock_before_the_outcome_is_published() -> None:
    group: G = Group()
    spy = _SpyFlights(group)
    group._flights = spy
    for outcome in ("value", "error"):
        gate = Gate()
        leader = lead(group, outcome, gate)
        f = follow(group, outcome)
        if outcome == "value":
            gate.finish(1)
            leader.join()
            f.join()
        else:
            gate.fail(Boom())
            with pytest.raises(Boom):
                leader.join()
            with pytest.raises(Boom):
                f.join()
    assert spy.removals == [(True, False), (True, False)]


def test_woken_followers_that_call_again_never_rejoin_the_landed_flight(group: G) -> None:
    # A follower that has seen the outcome and calls again at once must start
    # (or join) a *new* flight: if the key outlived the publication, it could
    # get the old value back, as if from a cache.
    for round_ in range(30):
        gate = Gate(f"old-{round_}")
        leader = lead(group, "k", gate)
        seen: list[object] = []

        def follower_then_again(seen: list[object] = seen) -> None:
            first = group.do("k", never)
            again = group.do("k", lambda: "new")
            seen.append((first, again))

        threads = [start(follower_then_again) for _ in range(4)]
        wait_until(lambda: followers_of(group, "k") == 4 or group.stats().in_flight == 0, what="followers")
        assert followers_of(group, "k") == 4
        gate.release.set()
        leader.join()
        for t in threads:
            t.join()
        assert sorted(map(str, seen)) == [str((f"old-{round_}", "new"))] * 4
        assert len(group) == 0


# -- 2. exceptions reach every caller, each with its own traceback -------------------------------------


def _frames(tb: Any) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(tb)]


def test_exception_reaches_every_caller_with_its_own_traceback(group: G) -> None:
    original = Boom("shared failure")
    gate = Gate()
    leader_frames: dict[str, list[str]] = {}
    caught: dict[str, BaseException] = {}

    def leader_thread_main() -> None:
        try:
            group.do("k", gate)
        except Boom as exc:
            leader_frames["at_catch"] = _frames(exc.__traceback__)
            caught["leader"] = exc

    def follower_alpha_main() -> None:
        try:
            group.do("k", never)
        except ValueError:
            pytest.fail("wrong type")
        except Boom as exc:  # `except` on the original type works in every caller
            caught["alpha"] = exc

    def follower_beta_main() -> None:
        try:
            group.do("k", never)
        except Boom as exc:
            caught["beta"] = exc

    leader = start(leader_thread_main)
    assert gate.entered.wait(10)
    alpha = start(follower_alpha_main)
    wait_until(lambda: followers_of(group, "k") == 1)
    beta = start(follower_beta_main)
    wait_until(lambda: followers_of(group, "k") == 2)
    gate.fail(original)
    for t in (leader, alpha, beta):
        t.join()

    # The leader re-raises the original itself.
    assert caught["leader"] is original
    alpha_exc, beta_exc = caught["alpha"], caught["beta"]
    # Followers get their own copies chained to the original.
    assert alpha_exc is not original
    assert beta_exc is not original
    assert alpha_exc is not beta_exc
    for exc in (alpha_exc, beta_exc):
        assert type(exc) is Boom
        assert exc.args == original.args
        assert exc.__cause__ is original
    # Each follower's traceback holds only its own thread's frames.
    alpha_frames = _frames(alpha_exc.__traceback__)
    beta_frames = _frames(beta_exc.__traceback__)
    assert "follower_alpha_main" in alpha_frames
    assert "beta" not in str(alpha_frames)
    assert "leader_thread_main" not in alpha_frames
    assert "__call__" not in alpha_frames  # the leader's Gate frame
    assert "follower_beta_main" in beta_frames
    assert "alpha" not in str(beta_frames)
    assert "leader_thread_main" not in beta_frames
    # The original's traceback did not grow with follower frames (cpython#101267).
    assert _frames(original.__traceback__) == leader_frames["at_catch"]
    assert "leader_thread_main" in leader_frames["at_catch"]
    assert "__call__" in leader_frames["at_catch"]
    assert not any("follower" in name for name in leader_frames["at_catch"])


def test_follower_tracebacks_do_not_grow_when_raised_again(group: G) -> None:
    gate = Gate()
    leader = lead(group, "k", gate)
    followers = [follow(group, "k") for _ in range(3)]
    err = Boom()
    gate.fail(err)
    with pytest.raises(Boom):
        leader.join()
    tb_len = len(_frames(err.__traceback__))
    copies = []
    for t in followers:
        with pytest.raises(Boom) as info:
            t.join()
        copies.append(info.value)
    assert len({id(c) for c in copies}) == 3
    assert len(_frames(err.__traceback__)) == tb_len


def test_exception_copies_keep_attributes_and_notes_are_per_caller(group: G) -> None:
    class Detailed(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(code)
            self.code = code

    err = Detailed(42)
    if sys.version_info >= (3, 11):
        err.add_note("from the leader")
    gate = Gate()
    leader = lead(group, "k", gate)
    followers = [follow(group, "k") for _ in range(2)]
    gate.fail(err)
    with pytest.raises(Detailed):
        leader.join()
    copies = []
    for t in followers:
        with pytest.raises(Detailed) as info:
            t.join()
        copies.append(info.value)
    for c in copies:
        assert c.code == 42
        assert c.__cause__ is err
    if sys.version_info >= (3, 11):
        copies[0].add_note("follower 0 only")
        assert copies[0].__notes__ == ["from the leader", "follower 0 only"]
        assert copies[1].__notes__ == ["from the leader"]
        assert err.__notes__ == ["from the leader"]


def test_exception_that_cannot_be_copied_is_shared(group: G) -> None:
    class Awkward(Exception):
        # A __new__ of its own whose signature args do not fit: no copy can be made.
        def __new__(cls, a: int, b: int) -> Awkward:  # noqa: PYI034 - typing_extensions is not a test dependency on 3.11+
            return super().__new__(cls, f"{a}/{b}")

        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}/{b}")

    err = Awkward(1, 2)
    gate = Gate()
    leader = lead(group, "k", gate)
    f = follow(group, "k")
    gate.fail(err)
    with pytest.raises(Awkward):
        leader.join()
    with pytest.raises(Awkward) as info:
        f.join()
    assert info.value is err


def test_failures_are_not_cached(group: G) -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Boom
        return "ok"

    with pytest.raises(Boom):
        group.do("k", flaky)
    assert not group.in_flight("k")
    assert group.do("k", flaky) == "ok"
    assert len(calls) == 2
    assert group.stats() == FlightStats(2, 2, 0, 1, 0, 0)


def test_failure_with_followers_is_not_cached(group: G) -> None:
    gate = Gate()
    leader = lead(group, "k", gate)
    f = follow(group, "k")
    gate.fail(Boom())
    with pytest.raises(Boom):
        leader.join()
    with pytest.raises(Boom):
        f.join()
    assert group.do("k", lambda: "fresh") == "fresh"


# -- 3. BaseException in the leader --------------------------------------------------------------------


@pytest.mark.parametrize("make", [KeyboardInterrupt, lambda: SystemExit(3), CustomBase])
def test_base_exception_in_leader(make: Any) -> None:
    records: list[FlightRecord] = []
    group: G = Group(on_flight_end=records.append)
    original = make()
    gate = Gate()
    leader = lead(group, "k", gate)
    followers = [follow(group, "k") for _ in range(2)]
    timed = start(group.call, "k", never, timeout=30)  # a follower with a timeout must not wait it out
    wait_until(lambda: followers_of(group, "k") == 3)
    gate.fail(original)
    with pytest.raises(type(original)) as info:
        leader.join()
    assert info.value is original  # the leader re-raises it unchanged
    got = []
    for t in [*followers, timed]:
        with pytest.raises(LeaderInterrupted) as finfo:
            t.join(5)
        got.append(finfo.value)
    for exc in got:
        assert isinstance(exc, SingleFlightError)
        assert not isinstance(exc, type(original))
        assert exc.__cause__ is original
        assert exc.key == "k"
        assert "'k'" in str(exc)
        assert type(original).__name__ in str(exc)
    assert len({id(e) for e in got}) == 3
    assert not group.in_flight("k")
    assert len(group) == 0
    assert group._waiting == {}
    assert group.stats() == FlightStats(4, 1, 3, 1, 0, 0)
    assert records[0].outcome == "interrupted"
    assert records[0].followers == 3
    assert group.do("k", lambda: "next") == "next"


@pytest.mark.parametrize("make", [KeyboardInterrupt, SystemExit, CustomBase])
def test_base_exception_in_leader_in_main_thread(make: Any, group: G) -> None:
    original = make()

    def fn() -> None:
        raise original

    with pytest.raises(type(original)) as info:
        group.do("k", fn)
    assert info.value is original
    assert len(group) == 0
    assert group._waiting == {}


def test_leader_interrupted_pickles() -> None:
    err = LeaderInterrupted("k", "was interrupted by KeyboardInterrupt")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is LeaderInterrupted
    assert (back.key, back.reason, str(back)) == (err.key, err.reason, str(err))


# -- 4. re-entry and wait cycles ----------------------------------------------------------------------


def test_reentrant_call_fails_at_once(group: G) -> None:
    seen: list[BaseException] = []

    def fn() -> str:
        for again in (lambda: group.do("k", never), lambda: group.call("k", never, timeout=None)):
            try:
                again()
            except ReentrantCallError as exc:
                seen.append(exc)
        return "outer"

    assert group.do("k", fn) == "outer"
    assert len(seen) == 2
    for exc in seen:
        assert isinstance(exc, RecursionError)
        assert isinstance(exc, SingleFlightError)
        assert exc.key == "k"
        assert "'k'" in str(exc)
    assert group.stats() == FlightStats(1, 1, 0, 0, 0, 0)
    back = pickle.loads(pickle.dumps(seen[0]))
    assert (type(back), back.key, str(back)) == (ReentrantCallError, "k", str(seen[0]))


def test_reentrant_call_through_a_nested_flight(group: G) -> None:
    def inner() -> str:
        return group.do("outer", never)

    def outer() -> str:
        return group.do("inner", inner)

    with pytest.raises(ReentrantCallError) as info:
        group.do("outer", outer)
    assert info.value.key == "outer"
    assert len(group) == 0


def test_reentrant_error_does_not_disturb_the_flights_followers(group: G) -> None:
    gate = Gate()
    inner_error: list[BaseException] = []

    def fn() -> str:
        gate.entered.set()
        assert gate.release.wait(10)
        try:
            group.do("k", never)
        except ReentrantCallError as exc:
            inner_error.append(exc)
        return "v"

    leader = start(group.do, "k", fn)
    assert gate.entered.wait(10)
    f = follow(group, "k")
    gate.release.set()
    leader.join()
    f.join()
    assert leader.result == "v"
    assert f.result == CallInfo("v", False, True)
    assert len(inner_error) == 1


def test_cross_thread_wait_cycle_is_detected(group: G) -> None:
    a_running = threading.Event()
    b_running = threading.Event()
    errors: list[WaitCycleError] = []

    def fn_a() -> str:
        a_running.set()
        assert b_running.wait(10)
        return "a+" + group.do("b", never)  # joins B's flight and blocks

    def fn_b() -> str:
        b_running.set()
        assert a_running.wait(10)
        wait_until(lambda: waiting_count(group) == 1, what="A waiting on b")
        try:
            group.do("a", never)  # would close a -> b -> a
        except WaitCycleError as exc:
            errors.append(exc)
        return "b"

    ta = start(group.do, "a", fn_a)
    tb = start(group.do, "b", fn_b)
    ta.join()
    tb.join()
    assert ta.result == "a+b"
    assert tb.result == "b"
    (err,) = errors
    assert isinstance(err, RuntimeError)
    assert isinstance(err, SingleFlightError)
    assert err.key == "a"
    assert err.cycle == ("a", "b")
    assert "'a'" in str(err)
    assert "'b'" in str(err)
    assert len(group) == 0
    assert group._waiting == {}
    back = pickle.loads(pickle.dumps(err))
    assert (back.key, back.cycle, str(back)) == (err.key, err.cycle, str(err))


def test_wait_cycle_error_reaches_the_other_side_when_not_caught(group: G) -> None:
    a_running = threading.Event()
    b_running = threading.Event()

    def fn_a() -> str:
        a_running.set()
        assert b_running.wait(10)
        return group.do("b", never)

    def fn_b() -> str:
        b_running.set()
        assert a_running.wait(10)
        wait_until(lambda: waiting_count(group) == 1, what="A waiting on b")
        return group.do("a", never)

    ta = start(group.do, "a", fn_a)
    tb = start(group.do, "b", fn_b)
    with pytest.raises(WaitCycleError):
        tb.join()
    with pytest.raises(WaitCycleError) as info:  # a copy, as a follower of b
        ta.join()
    assert isinstance(info.value.__cause__, WaitCycleError)
    assert len(group) == 0


def test_three_thread_wait_cycle(group: G) -> None:
    running = {k: threading.Event() for k in "abc"}
    errors: list[WaitCycleError] = []

    def make(mine: str, nxt: str, waiters_before: int) -> Any:
        def fn() -> str:
            running[mine].set()
            for ev in running.values():
                assert ev.wait(10)
            wait_until(lambda: waiting_count(group) == waiters_before, what="waiters")
            try:
                return mine + group.do(nxt, never)
            except WaitCycleError as exc:
                errors.append(exc)
                return mine

        return fn

    # a waits on b first, then b waits on c, then c asks for a.
    ta = start(group.do, "a", make("a", "b", 0))
    tb = start(group.do, "b", make("b", "c", 1))
    tc = start(group.do, "c", make("c", "a", 2))
    for t in (ta, tb, tc):
        t.join()
    assert (ta.result, tb.result, tc.result) == ("abc", "bc", "c")
    (err,) = errors
    assert err.key == "a"
    assert err.cycle == ("a", "b", "c")


def test_waiting_on_a_busy_thread_without_a_cycle_is_fine(group: G) -> None:
    # A waits on b; C asks for a: no cycle (B does not wait on anything).
    a_running = threading.Event()
    release_b = threading.Event()

    def fn_a() -> str:
        a_running.set()
        return group.do("b", lambda: release_b.wait(10) and "b")

    ta = start(group.do, "a", fn_a)
    assert a_running.wait(10)
    wait_until(lambda: group.in_flight("b"))
    tc = follow(group, "a")
    release_b.set()
    ta.join()
    tc.join()
    assert ta.result == "b"
    assert tc.result == CallInfo("b", False, True)


# -- 5. a follower interrupted while it waits ------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_follower_interrupted_by_keyboard_interrupt_leaves_cleanly(group: G) -> None:
    assert threading.current_thread() is threading.main_thread()
    main_ident = threading.get_ident()
    records: list[FlightRecord] = []
    group._on_end = records.append
    gate = Gate()
    leader = lead(group, "k", gate)
    other = follow(group, "k")

    def interrupter() -> None:
        wait_until(lambda: blocked_in_follow(main_ident), what="main thread waiting as a follower")
        signal.pthread_kill(main_ident, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sender = start(interrupter)
        with pytest.raises(KeyboardInterrupt):
            group.do("k", never)
        sender.join()
    finally:
        signal.signal(signal.SIGINT, previous)

    # The main thread left; the flight goes on for the others.
    assert group.in_flight("k")
    assert followers_of(group, "k") == 1
    assert main_ident not in group._waiting
    assert group.stats() == FlightStats(calls=3, executions=1, shared=0, errors=0, timeouts=0, in_flight=1, abandoned=1)
    gate.finish("v")
    leader.join()
    other.join()
    assert leader.result == CallInfo("v", True, True)
    assert other.result == CallInfo("v", False, True)
    assert group.stats() == FlightStats(calls=3, executions=1, shared=1, errors=0, timeouts=0, in_flight=0, abandoned=1)
    assert records[0].followers == 1
    assert group._waiting == {}
    # The interrupted thread can use the key again at once.
    assert group.do("k", lambda: "again") == "again"


# -- 8. forget ------------------------------------------------------------------------------------------


def test_forget_starts_a_new_flight_and_the_old_landing_keeps_it(group: G) -> None:
    gate1, gate2 = Gate(), Gate()
    l1 = lead(group, "k", gate1)
    f1 = follow(group, "k")
    assert group.forget("k") is True
    assert not group.in_flight("k")
    assert group.forget("k") is False
    l2 = lead(group, "k", gate2)  # a new execution while the old one runs
    f2 = follow(group, "k")
    assert gate1.calls == gate2.calls == 1

    gate1.finish("old")
    l1.join()
    f1.join()
    assert l1.result == CallInfo("old", True, True)
    assert f1.result == CallInfo("old", False, True)
    # The old flight's landing must not remove the new one.
    assert group.in_flight("k")
    assert group.keys() == ["k"]
    f3 = follow(group, "k")
    gate2.finish("new")
    l2.join()
    f2.join()
    f3.join()
    assert l2.result == CallInfo("new", True, True)
    assert f2.result.value == f3.result.value == "new"
    assert len(group) == 0
    assert group.stats() == FlightStats(calls=5, executions=2, shared=3, errors=0, timeouts=0, in_flight=0)


def test_forget_then_old_flight_fails_new_flight_unaffected(group: G) -> None:
    gate1, gate2 = Gate(), Gate()
    l1 = lead(group, "k", gate1)
    f1 = follow(group, "k")
    group.forget("k")
    l2 = lead(group, "k", gate2)
    gate1.fail(Boom())
    with pytest.raises(Boom):
        l1.join()
    with pytest.raises(Boom):
        f1.join()
    assert group.in_flight("k")
    gate2.finish(2)
    l2.join()
    assert l2.result == CallInfo(2, True, False)
    assert len(group) == 0


def test_forget_inside_the_leader_function(group: G) -> None:
    def fn() -> str:
        group.forget("k")
        return "outer+" + group.do("k", lambda: "inner")  # a new flight, not re-entry

    assert group.do("k", fn) == "outer+inner"
    assert len(group) == 0


def test_forget_unshared_only_when_nobody_joined(group: G) -> None:
    gate = Gate()
    leader = lead(group, "k", gate)
    assert group.forget_unshared("k") is True
    assert not group.in_flight("k")
    assert group.forget_unshared("k") is False
    gate.finish(1)
    leader.join()

    gate = Gate()
    leader = lead(group, "k", gate)
    f = follow(group, "k")
    assert group.forget_unshared("k") is False
    assert group.in_flight("k")
    gate.finish(2)
    leader.join()
    f.join()
    assert f.result.value == 2
    assert group.forget_unshared("missing") is False


def test_forget_unshared_after_the_only_follower_timed_out(group: G) -> None:
    gate = Gate()
    leader = lead(group, "k", gate)
    t = start(group.call, "k", never, timeout=0.01)
    with pytest.raises(FlightTimeoutError):
        t.join()
    assert group.forget_unshared("k") is True
    gate.finish(None)
    leader.join()


# -- 9. follower timeout ---------------------------------------------------------------------------------


def test_follower_timeout(group: G) -> None:
    gate = Gate()
    leader = lead(group, ("key", 1), gate)
    patient = follow(group, ("key", 1))
    impatient = start(group.call, ("key", 1), never, timeout=0.02)
    with pytest.raises(FlightTimeoutError) as info:
        impatient.join()
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, SingleFlightError)
    assert err.key == ("key", 1)
    assert err.timeout == 0.02
    assert "('key', 1)" in str(err)
    assert "0.02" in str(err)
    assert err.__cause__ is None
    assert err.__suppress_context__
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is FlightTimeoutError
    assert (back.key, back.timeout, str(back)) == (err.key, err.timeout, str(err))
    assert repr(back) == "FlightTimeoutError(key=('key', 1), timeout=0.02)"
    # The leader and the other follower are unaffected.
    assert leader.is_alive()
    assert patient.is_alive()
    assert group.stats() == FlightStats(calls=3, executions=1, shared=0, errors=0, timeouts=1, in_flight=1)
    gate.finish("v")
    leader.join()
    patient.join()
    assert leader.result == CallInfo("v", True, True)
    assert patient.result == CallInfo("v", False, True)
    assert group.stats() == FlightStats(calls=3, executions=1, shared=1, errors=0, timeouts=1, in_flight=0)
    assert group._waiting == {}


def test_group_default_timeout_and_per_call_override() -> None:
    group: G = Group(timeout=0.02)
    gate = Gate()
    leader = lead(group, "k", gate)
    by_default = start(group.do, "k", never)
    with pytest.raises(FlightTimeoutError) as info:
        by_default.join()
    assert info.value.timeout == 0.02
    by_call = start(group.call, "k", never, timeout=0.03)
    with pytest.raises(FlightTimeoutError) as info:
        by_call.join()
    assert info.value.timeout == 0.03
    patient = follow(group, "k", timeout=None)  # None overrides the default: wait for ever
    assert group.stats().timeouts == 2
    gate.finish("v")
    leader.join()
    patient.join()
    assert patient.result == CallInfo("v", False, True)


def test_timeout_never_applies_to_the_leader() -> None:
    group: G = Group(timeout=0.01)
    gate = Gate()
    leader = lead(group, "k", gate)
    t = start(group.call, "k", never, timeout=0.01)
    with pytest.raises(FlightTimeoutError):
        t.join()  # by now the leader has run longer than any timeout
    gate.finish("slow but fine")
    leader.join()
    assert leader.result.value == "slow but fine"


def test_timed_out_follower_can_call_again_and_join(group: G) -> None:
    gate = Gate()
    leader = lead(group, "k", gate)
    results: list[object] = []

    def impatient_then_patient() -> None:
        try:
            group.call("k", never, timeout=0.01)
        except FlightTimeoutError:
            results.append("timeout")
        results.append(group.do("k", never))

    t = start(impatient_then_patient)
    wait_until(lambda: results == ["timeout"] and followers_of(group, "k") == 1)
    gate.finish("v")
    leader.join()
    t.join()
    assert results == ["timeout", "v"]
    assert group.stats() == FlightStats(calls=3, executions=1, shared=1, errors=0, timeouts=1, in_flight=0)


# -- 7. memory -----------------------------------------------------------------------------------------


class Value:
    """A weak-referenceable result."""


class WeakBoom(Exception):
    """Builtin exceptions cannot be weakly referenced; a subclass can."""


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("n_followers", [0, 1, 3])
def test_result_is_not_kept_without_gc(group: G, n_followers: int) -> None:
    entered, release = threading.Event(), threading.Event()
    refs: list[weakref.ref[Value]] = []

    def make_value() -> Value:
        entered.set()
        assert release.wait(10)
        return Value()

    def caller(fn: Any) -> None:
        refs.append(weakref.ref(group.do("k", fn)))

    leader = start(caller, make_value)
    assert entered.wait(10)
    followers = []
    for i in range(n_followers):
        followers.append(start(caller, never))
        wait_until(lambda i=i: followers_of(group, "k") == i + 1)
    release.set()
    for t in [leader, *followers]:
        t.join()
    assert len(refs) == n_followers + 1
    assert [r() for r in refs] == [None] * len(refs), "the group or a flight kept the result alive"
    assert len(group) == 0
    assert group._waiting == {}


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("n_followers", [0, 1, 3])
@pytest.mark.parametrize("form", ["do", "call"])
def test_exception_is_not_kept_without_gc(group: G, n_followers: int, form: str) -> None:
    gate = Gate()
    refs: list[weakref.ref[BaseException]] = []

    def caller(fn: Any) -> None:
        try:
            if form == "do":
                group.do("k", fn)
            else:
                group.call("k", fn)
        except WeakBoom as exc:
            refs.append(weakref.ref(exc))
            if exc.__cause__ is not None:
                refs.append(weakref.ref(exc.__cause__))

    leader = start(caller, gate)
    assert gate.entered.wait(10)
    followers = []
    for i in range(n_followers):
        followers.append(start(caller, never))
        wait_until(lambda i=i: followers_of(group, "k") == i + 1)
    gate.fail(WeakBoom())
    for t in [leader, *followers]:
        t.join()
    assert len(refs) == 1 + 2 * n_followers
    alive = [r() for r in refs]
    assert alive == [None] * len(refs), "a reference cycle (or the group) kept the exception alive"
    assert len(group) == 0


@pytest.mark.usefixtures("no_gc")
def test_interrupted_outcome_is_not_kept_without_gc(group: G) -> None:
    class WeakInterrupt(BaseException):
        pass

    gate = Gate()
    refs: list[weakref.ref[BaseException]] = []

    def leader_main() -> None:
        try:
            group.do("k", gate)
        except WeakInterrupt as exc:
            refs.append(weakref.ref(exc))

    def follower_main() -> None:
        try:
            group.do("k", never)
        except LeaderInterrupted as exc:
            refs.append(weakref.ref(exc.__cause__))  # type: ignore[arg-type]

    leader = start(leader_main)
    assert gate.entered.wait(10)
    f = start(follower_main)
    wait_until(lambda: followers_of(group, "k") == 1)
    gate.fail(WeakInterrupt())
    leader.join()
    f.join()
    assert len(refs) == 2
    assert [r() for r in refs] == [None, None]


def test_map_is_empty_when_nothing_is_in_flight(group: G) -> None:
    group.do("a", int)
    with pytest.raises(Boom):
        group.do("b", _raise_boom)
    with pytest.raises(KeyboardInterrupt):
        group.do("c", _raise_ki)
    assert group._flights == {}
    assert group._waiting == {}
    assert len(group) == 0


def _raise_boom() -> None:
    raise Boom


def _raise_ki() -> None:
    raise KeyboardInterrupt


def test_a_landed_flight_is_not_part_of_a_wait_cycle() -> None:
    # A follows X's flight "x". When "x" lands, A is woken but may not have run
    # yet; X, now free, asks for "a" (led by A). That is no cycle: A is about
    # to return. The on_flight_end hook runs in X right after the waiters were
    # woken, so on a GIL build A has usually not run yet when X asks.
    outcomes: list[object] = []
    group: G

    def hook(rec: FlightRecord) -> None:
        if rec.key == "x":
            try:
                # "fresh" when A already finished (X then leads a new flight).
                outcomes.append(group.call("a", lambda: "fresh", timeout=10).value)
            except BaseException as exc:
                outcomes.append(exc)

    group = Group(on_flight_end=hook)
    for _ in range(20):
        outcomes.clear()
        gate_x = Gate()
        x = lead(group, "x", gate_x)
        a = start(group.do, "a", lambda: "a+" + group.do("x", never))
        wait_until(lambda: followers_of(group, "x") == 1, what="A following x")
        gate_x.finish("x")
        x.join()
        a.join()
        assert a.result == "a+x"
        assert outcomes in (["a+x"], ["fresh"])
        assert len(group) == 0


class WeakAwkward(Exception):
    # A __new__ whose signature the stored args do not fit: followers share it.
    def __new__(cls, a: int, b: int) -> WeakAwkward:  # noqa: PYI034 - as above
        return super().__new__(cls, f"{a}/{b}")

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


@pytest.mark.usefixtures("no_gc")
def test_shared_uncopyable_exception_is_not_kept_without_gc(group: G) -> None:
    gate = Gate()
    refs: list[weakref.ref[BaseException]] = []

    def caller(fn: Any) -> None:
        try:
            group.do("k", fn)
        except WeakAwkward as exc:
            refs.append(weakref.ref(exc))
            ids.append(id(exc))

    ids: list[int] = []
    leader = start(caller, gate)
    assert gate.entered.wait(10)
    followers = []
    for i in range(2):
        followers.append(start(caller, never))
        wait_until(lambda i=i: followers_of(group, "k") == i + 1)
    gate.fail(WeakAwkward(1, 2))
    for t in [leader, *followers]:
        t.join()
    assert len(refs) == 3
    assert len(ids) == 3
    assert len(set(ids)) == 1  # one shared instance
    assert [r() for r in refs] == [None] * 3, "a reference cycle kept the exception alive"
