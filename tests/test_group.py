"""Group basics: do/call, CallInfo, stats and introspection, the on_flight_end hook, argument checks."""

from __future__ import annotations

import logging
import math
import pickle
import threading

import pytest
from helpers import Gate, followers_of, start, wait_until

from singleflight_sync import (
    CallInfo,
    FlightRecord,
    FlightStats,
    Group,
    SingleFlightError,
    UnhashableKeyError,
)

pytestmark = pytest.mark.usefixtures("no_stranded_threads")


class Boom(Exception):
    pass


def hold_leader(group: Group[object, object], key: object, gate: Gate) -> object:
    """Start a thread leading ``key`` on ``gate`` and return once it runs the function."""
    t = start(group.call, key, gate)
    assert gate.entered.wait(10)
    return t


def add_follower(group: Group[object, object], key: object, n_before: int, **call_kw: object) -> object:
    t = start(group.call, key, _never, **call_kw)
    wait_until(lambda: followers_of(group, key) == n_before + 1, what="follower joined")
    return t


def _never() -> object:
    msg = "a follower's function must never run"
    raise AssertionError(msg)


# -- do / call --------------------------------------------------------------------------------------


def test_do_returns_value_and_passes_args(group: Group[object, object]) -> None:
    def fn(a: int, b: int, *, c: int) -> tuple[int, int, int]:
        return a, b, c

    assert group.do("k", fn, 1, 2, c=3) == (1, 2, 3)
    assert len(group) == 0


def test_do_accepts_key_fn_as_kwargs_names_for_fn() -> None:
    # key and fn are positional-only, so fn may have parameters called key and fn.
    g: Group[str, tuple[str, str]] = Group()
    assert g.do("x", lambda key, fn: (key, fn), key="a", fn="b") == ("a", "b")


def test_call_kwargs_and_timeout_do_not_clash(group: Group[object, object]) -> None:
    info = group.call("k", lambda timeout: timeout, kwargs={"timeout": "mine"}, timeout=5)
    assert info == CallInfo("mine", True, False)


def test_sequential_calls_each_execute(group: Group[object, object]) -> None:
    counter = iter(range(100))
    assert [group.do("k", lambda: next(counter)) for _ in range(3)] == [0, 1, 2]
    assert group.stats() == FlightStats(3, 3, 0, 0, 0, 0)


def test_call_info_leader_alone(group: Group[object, object]) -> None:
    info = group.call("k", lambda: 7)
    assert info == CallInfo(7, leader=True, shared=False)


def test_call_info_leader_and_followers(group: Group[object, object]) -> None:
    gate = Gate()
    leader = hold_leader(group, "k", gate)
    f1 = add_follower(group, "k", 0)
    f2 = add_follower(group, "k", 1)
    gate.finish("v")
    for t in (leader, f1, f2):
        t.join()
    assert leader.result == CallInfo("v", leader=True, shared=True)
    assert f1.result == CallInfo("v", leader=False, shared=True)
    assert f2.result == CallInfo("v", leader=False, shared=True)
    assert gate.calls == 1


def test_call_info_leader_whose_only_follower_timed_out_is_not_shared(group: Group[object, object]) -> None:
    gate = Gate()
    leader = hold_leader(group, "k", gate)
    t = start(group.call, "k", _never, timeout=0.01)
    with pytest.raises(TimeoutError):
        t.join()
    gate.finish("v")
    leader.join()
    assert leader.result == CallInfo("v", leader=True, shared=False)


def test_call_info_is_frozen() -> None:
    info = CallInfo(1, True, False)
    with pytest.raises(AttributeError):
        info.value = 2  # type: ignore[misc]


# -- stats and introspection -------------------------------------------------------------------------


def test_stats_exact_counts_while_held(group: Group[object, object]) -> None:
    gate_a, gate_b = Gate(), Gate()
    la = hold_leader(group, "a", gate_a)
    lb = hold_leader(group, "b", gate_b)
    fa = [add_follower(group, "a", i) for i in range(3)]
    fb = add_follower(group, "b", 0)
    timed_out = start(group.call, "b", _never, timeout=0.01)
    with pytest.raises(TimeoutError):
        timed_out.join()
    # While held: shared is counted when a flight lands, so still 0.
    assert group.stats() == FlightStats(calls=7, executions=2, shared=0, errors=0, timeouts=1, in_flight=2)
    assert len(group) == 2
    assert sorted(group.keys()) == ["a", "b"]  # type: ignore[type-var]
    assert group.in_flight("a")
    assert "b" in group
    assert not group.in_flight("c")
    assert "c" not in group

    gate_a.finish(1)
    la.join()
    for t in fa:
        t.join()
    assert group.stats() == FlightStats(calls=7, executions=2, shared=3, errors=0, timeouts=1, in_flight=1)
    assert group.keys() == ["b"]

    gate_b.fail(Boom("b"))
    with pytest.raises(Boom):
        lb.join()
    with pytest.raises(Boom):
        fb.join()
    assert group.stats() == FlightStats(calls=7, executions=2, shared=4, errors=1, timeouts=1, in_flight=0)
    assert len(group) == 0
    assert group.keys() == []


def test_reset_stats_zeroes_counters_but_in_flight_follows_the_map(group: Group[object, object]) -> None:
    group.do("x", int)
    with pytest.raises(Boom):
        group.do("y", _raise_boom)
    gate = Gate()
    leader = hold_leader(group, "k", gate)
    assert group.stats() == FlightStats(3, 3, 0, 1, 0, 1)
    group.reset_stats()
    assert group.stats() == FlightStats(0, 0, 0, 0, 0, 1)
    follower = add_follower(group, "k", 0)
    gate.finish(None)
    leader.join()
    follower.join()
    # The follower joined after the reset; the flight's execution was counted before it.
    assert group.stats() == FlightStats(1, 0, 1, 0, 0, 0)


def _raise_boom() -> None:
    raise Boom


def test_stats_is_a_named_tuple(group: Group[object, object]) -> None:
    s = group.stats()
    assert isinstance(s, tuple)
    assert s._fields == ("calls", "executions", "shared", "errors", "timeouts", "in_flight", "abandoned")


def test_repr_mentions_counts(group: Group[object, object]) -> None:
    group.do("k", int)
    assert repr(group) == "<Group in_flight=0 calls=1 executions=1>"


@pytest.mark.parametrize("key", [[1, 2], {"a": 1}, {1}, ([],)])
def test_unhashable_key_is_a_clear_type_error(group: Group[object, object], key: object) -> None:
    ran = []
    for op in (
        lambda: group.do(key, ran.append, 1),
        lambda: group.call(key, ran.append, (1,)),
        lambda: group.forget(key),
        lambda: group.forget_unshared(key),
        lambda: group.in_flight(key),
        lambda: key in group,
    ):
        with pytest.raises(UnhashableKeyError) as info:
            op()
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, SingleFlightError)
        assert info.value.key is key
        assert "unhashable" in str(info.value)
        assert repr(key) in str(info.value)
        # The confusing dict-level "unhashable type" TypeError is not chained in.
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__
    assert ran == []
    assert group.stats() == FlightStats(0, 0, 0, 0, 0, 0)


def test_unhashable_key_error_pickles() -> None:
    err = UnhashableKeyError(["x"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is UnhashableKeyError
    assert back.key == ["x"]
    assert str(back) == str(err)


# -- argument checks ----------------------------------------------------------------------------------


BAD_TIMEOUTS = [
    (0, ValueError),
    (-1, ValueError),
    (-0.5, ValueError),
    (math.nan, ValueError),
    (-math.inf, ValueError),
    ("1", TypeError),
    (True, TypeError),
    (False, TypeError),
    (b"1", TypeError),
    ([1], TypeError),
]


@pytest.mark.parametrize(("value", "error"), BAD_TIMEOUTS)
def test_bad_group_timeout_names_the_argument(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout") as info:
        Group(timeout=value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(("value", "error"), BAD_TIMEOUTS)
def test_bad_call_timeout_names_the_argument(group: Group[object, object], value: object, error: type) -> None:
    ran = []
    with pytest.raises(error, match="timeout"):
        group.call("k", ran.append, (1,), timeout=value)  # type: ignore[arg-type]
    assert ran == []
    assert group.stats() == FlightStats(0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("value", [None, 1, 0.001, 2.5, 10**9, math.inf])
def test_good_timeouts_accepted(value: float | None) -> None:
    g: Group[str, int] = Group(timeout=value)
    assert g.call("k", int, timeout=value).value == 0


def test_infinite_timeout_waits_for_the_leader() -> None:
    # math.inf (or anything above threading.TIMEOUT_MAX) means "wait for ever";
    # a lock cannot wait that long, so it must not reach Condition.wait as is.
    g: Group[str, object] = Group(timeout=math.inf)
    gate = Gate()
    leader = hold_leader(g, "k", gate)
    f1 = add_follower(g, "k", 0)
    f2 = add_follower(g, "k", 1, timeout=threading.TIMEOUT_MAX * 2)
    gate.finish("v")
    leader.join()
    f1.join()
    f2.join()
    assert f1.result.value == f2.result.value == "v"


@pytest.mark.parametrize("hook", [1, "print", object()])
def test_bad_hook_is_a_type_error(hook: object) -> None:
    with pytest.raises(TypeError, match="on_flight_end"):
        Group(on_flight_end=hook)  # type: ignore[arg-type]


def test_group_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Group(1.0)  # type: ignore[misc]


# -- the on_flight_end hook --------------------------------------------------------------------------


def test_hook_gets_flight_records() -> None:
    records: list[FlightRecord] = []
    g: Group[str, object] = Group(on_flight_end=records.append)
    assert g.do("alone", lambda: 1) == 1
    assert len(records) == 1
    (rec,) = records
    assert (rec.key, rec.followers, rec.outcome, rec.error) == ("alone", 0, "ok", None)
    assert 0 <= rec.duration < 10

    gate = Gate()
    leader = hold_leader(g, "shared", gate)
    followers = [add_follower(g, "shared", i) for i in range(2)]
    timed_out = start(g.call, "shared", _never, timeout=0.01)
    with pytest.raises(TimeoutError):
        timed_out.join()
    assert len(records) == 1  # nothing reported while the flight runs
    err = Boom("x")
    gate.fail(err)
    with pytest.raises(Boom):
        leader.join()
    for t in followers:
        with pytest.raises(Boom):
            t.join()
    rec = records[1]
    assert (rec.key, rec.followers, rec.outcome) == ("shared", 2, "error")
    assert rec.error is err

    with pytest.raises(KeyboardInterrupt):
        g.do("ki", _raise, KeyboardInterrupt())
    rec = records[2]
    assert (rec.key, rec.followers, rec.outcome) == ("ki", 0, "interrupted")
    assert isinstance(rec.error.__cause__, KeyboardInterrupt)  # type: ignore[union-attr]


def _raise(exc: BaseException) -> None:
    raise exc


def test_hook_runs_after_followers_are_woken_in_the_leader_thread() -> None:
    seen: list[tuple[int, bool, FlightStats]] = []
    g: Group[str, object]

    def hook(rec: FlightRecord) -> None:
        seen.append((threading.get_ident(), g.in_flight(rec.key), g.stats()))

    g = Group(on_flight_end=hook)
    gate = Gate()
    leader = hold_leader(g, "k", gate)
    follower = add_follower(g, "k", 0)
    gate.finish(1)
    leader.join()
    follower.join()
    ((ident, in_flight, stats),) = seen
    assert ident == leader.ident  # type: ignore[attr-defined]
    assert not in_flight
    assert stats.shared == 1
    assert stats.in_flight == 0


def test_hook_that_raises_is_logged_and_breaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    def hook(rec: FlightRecord) -> None:
        msg = "hook is broken"
        raise RuntimeError(msg)

    g: Group[str, object] = Group(on_flight_end=hook)
    gate = Gate()
    with caplog.at_level(logging.ERROR, logger="singleflight_sync"):
        leader = hold_leader(g, "k", gate)
        follower = add_follower(g, "k", 0)
        gate.finish("v")
        leader.join()
        follower.join()
        with pytest.raises(Boom):
            g.do("e", _raise, Boom())
    assert leader.result == CallInfo("v", True, True)
    assert follower.result == CallInfo("v", False, True)
    errors = [r for r in caplog.records if r.name == "singleflight_sync" and r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "on_flight_end" in errors[0].getMessage()
    assert "'k'" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert len(g) == 0
    assert g.do("k", lambda: "again") == "again"
    assert g.stats() == FlightStats(4, 3, 1, 1, 0, 0)


def test_flight_record_is_frozen() -> None:
    rec = FlightRecord("k", 0.0, 0, "ok", None)
    with pytest.raises(AttributeError):
        rec.key = "j"  # type: ignore[misc]
