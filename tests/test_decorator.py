"""The ``@singleflight`` decorator.

Sharing is proved with held threads: the leader's body blocks on an Event,
the other callers are started and counted into the flight through
``stats().calls`` (a follower is counted when it joins, before it waits), and
only then is the leader released. Exact execution counts are asserted only
under that holding-back.
"""

from __future__ import annotations

import functools
import inspect
import math
import pickle
import re
import sys
import threading
import time
import types
import weakref
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from singleflight_sync import (
    BoundSingleFlightFunction,
    FlightStats,
    FlightTimeoutError,
    Group,
    SingleFlightFunction,
    UnhashableKeyError,
    hashkey,
    methodkey,
    singleflight,
    typedkey,
)

DEADLINE = 10.0


# -- helpers -------------------------------------------------------------------------------------


class Worker(threading.Thread):
    """Run ``fn(*args, **kwargs)`` in a thread; ``join()`` returns its result or re-raises its error."""

    def __init__(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self._call = (fn, args, kwargs)
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        fn, args, kwargs = self._call
        try:
            self.result = fn(*args, **kwargs)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float | None = DEADLINE) -> Any:  # type: ignore[override]
        super().join(timeout)
        assert not self.is_alive(), f"{self._call[0]!r} did not return within {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result

    def outcome(self) -> BaseException:
        super().join(DEADLINE)
        assert not self.is_alive()
        assert self.error is not None, f"expected an error, got {self.result!r}"
        return self.error


def wait_until(condition: Any, what: str) -> None:
    """Poll a condition another thread makes true (never a fixed sleep)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.0005)


class Body:
    """The body of a decorated function: records each run; the first run blocks until released.

    Every run returns a fresh object, so callers that got the *same* object
    shared one execution.
    """

    def __init__(self, *, hold_first: bool = True, error: type[Exception] | None = None) -> None:
        self._lock = threading.Lock()
        self.runs: list[tuple[Any, ...]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold_first = hold_first
        self.error = error

    def __call__(self, *args: Any) -> object:
        with self._lock:
            self.runs.append(args)
            first = len(self.runs) == 1
        if first and self.hold_first:
            self.entered.set()
            assert self.release.wait(DEADLINE), "the test never released the leader"
        if self.error is not None:
            msg = f"failed for {args!r}"
            raise self.error(msg)
        return object()


def share_one_flight(sf: Any, body: Body, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """Lead with ``calls[0]`` (held), join with the rest; assert one execution; return the results."""
    stats = sf.stats() if hasattr(sf, "stats") else None
    base = stats.calls if stats is not None else 0
    (args0, kwargs0), rest = calls[0], calls[1:]
    leader = Worker(sf, *args0, **kwargs0)
    leader.start()
    assert body.entered.wait(DEADLINE)
    followers = [Worker(sf, *args, **kwargs) for args, kwargs in rest]
    for w in followers:
        w.start()
    wait_until(lambda: sf.stats().calls == base + len(calls), f"all {len(calls)} callers joined")
    body.release.set()
    results = [leader.join()] + [w.join() for w in followers]
    assert len(body.runs) == 1, body.runs
    assert all(r is results[0] for r in results)
    return results


def run_apart(sf: Any, body: Body, first: tuple[Any, ...], second: tuple[Any, ...]) -> None:
    """Hold a flight for ``first``; a call for ``second`` must run on its own meanwhile."""
    leader = Worker(sf, *first)
    leader.start()
    assert body.entered.wait(DEADLINE)
    other = Worker(sf, *second)
    other.start()
    # If it had joined the held flight it could not return before the release.
    other_result = other.join()
    assert len(body.runs) == 2
    body.release.set()
    assert leader.join() is not other_result


# -- the two forms, and what the wrapper exposes -------------------------------------------------


def test_bare_and_called_forms_wrap_the_function() -> None:
    def load(user_id: int, verbose: bool = False) -> str:
        """Load a user."""
        return f"user {user_id}"

    load.custom = "kept"  # type: ignore[attr-defined]
    for sf in (singleflight(load), singleflight()(load), singleflight(timeout=1, typed=True)(load)):
        assert isinstance(sf, SingleFlightFunction)
        assert sf.__wrapped__ is load
        assert sf.__name__ == "load"
        assert sf.__qualname__ == load.__qualname__
        assert sf.__doc__ == "Load a user."
        assert sf.__module__ == __name__
        assert sf.custom == "kept"  # type: ignore[attr-defined]
        assert inspect.signature(sf) == inspect.signature(load)
        assert isinstance(sf.group, Group)
        assert sf.stats() == FlightStats(0, 0, 0, 0, 0, 0)
        assert sf(7) == "user 7"
        assert sf.stats() == FlightStats(1, 1, 0, 0, 0, 0)
        assert sf.forget(7) is False
        assert "load" in repr(sf)
        assert weakref.ref(sf)() is sf  # like a function (Django's signal receivers hold weak references)
    # each decoration gets a group of its own
    assert singleflight(load).group is not singleflight(load).group


def test_function_attributes_never_shadow_the_wrapper() -> None:
    # functools.update_wrapper copies __dict__; a function attribute named like
    # one of ours must not replace it
    def f(x: int) -> int:
        return x

    f.group = "not a group"  # type: ignore[attr-defined]
    f.stats = "not stats"  # type: ignore[attr-defined]
    f.forget = "not forget"  # type: ignore[attr-defined]
    sf = singleflight(f)
    assert isinstance(sf.group, Group)
    assert sf.stats() == FlightStats(0, 0, 0, 0, 0, 0)
    assert sf.forget(1) is False
    assert sf(1) == 1


def test_stacked_decorators_keep_their_own_state() -> None:
    body = Body(hold_first=False)

    def f(x: int) -> object:
        return body(x)

    inner = singleflight(f)
    outer = singleflight(inner)
    assert outer.__wrapped__ is inner
    assert outer.group is not inner.group
    outer(1)
    assert outer.stats().executions == 1
    assert inner.stats().executions == 1
    assert body.runs == [(1,)]


def test_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    svc = Service()
    bound = pickle.loads(pickle.dumps(svc.lookup))
    assert isinstance(bound, BoundSingleFlightFunction)
    assert bound.__func__ is Service.lookup


@singleflight
def module_level(x: int) -> int:
    return x


@dataclass(frozen=True)
class Service:
    name: str = "svc"

    @singleflight
    def lookup(self, key: str) -> str:
        return f"{self.name}:{key}"


# -- default keys: every spelling of one call shares one flight ------------------------------------


def test_spellings_of_one_call_share_one_flight() -> None:
    body = Body()

    @singleflight
    def f(a: int, b: int = 2) -> object:
        return body(a, b)

    share_one_flight(f, body, [((1,), {}), ((1, 2), {}), ((1,), {"b": 2}), ((), {"a": 1, "b": 2})])
    assert body.runs == [(1, 2)]
    assert f.stats() == FlightStats(calls=4, executions=1, shared=3, errors=0, timeouts=0, in_flight=0)


@pytest.mark.parametrize(
    ("source", "calls"),
    [
        ("def f(a, /, b=2): return body(a, b)", ["(1)", "(1, 2)", "(1, b=2)"]),
        ("def f(a, *, k, j=3): return body(a, k, j)", ["(1, k=2)", "(a=1, k=2)", "(k=2, a=1, j=3)"]),
        ("def f(*args): return body(*args)", ["(1, 2)", "(*[1, 2])", "(*(1,), 2)"]),
        ("def f(**kw): return body(kw)", ["(a=1, b=2)", "(b=2, a=1)", "(**{'b': 2, 'a': 1})"]),
        ("def f(a, /, **kw): return body(a, kw)", ["(1, a=2)", "(1, **{'a': 2})"]),
        ("def f(a=0, /, **kw): return body(a, kw)", ["(a=1)", "(0, a=1)"]),
        (
            "def f(a, b=2, /, c=3, *args, d, e=5, **kw): return body(a, b, c, args, d, e, kw)",
            ["(1, d=4)", "(1, 2, d=4)", "(1, 2, 3, d=4, e=5)", "(1, c=3, e=5, d=4)", "(1, **{'d': 4})"],
        ),
    ],
)
def test_parameter_kinds_share_one_flight(source: str, calls: list[str]) -> None:
    body = Body()
    namespace: dict[str, Any] = {"body": body}
    exec(source, namespace)
    sf = singleflight(namespace["f"])
    parsed = [eval(f"(lambda *a, **k: (a, k)){spelling}") for spelling in calls]
    share_one_flight(sf, body, parsed)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([(1,), (1, 2), (1, 3), (2,), (1.0,), (True,), (1, 2.0)]),
    st.sampled_from([(1,), (1, 2), (1, 3), (2,), (1.0,), (True,), (1, 2.0)]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_forget_finds_the_flight_of_any_spelling(
    first: tuple[Any, ...], second: tuple[Any, ...], first_by_kw: bool, second_by_kw: bool, typed: bool
) -> None:
    # Inside the function its own flight is running, so forget(*other spelling)
    # reports whether that spelling maps to the same key: a public view of
    # key building, with the interpreter's binding as the oracle.
    def spell(values: tuple[Any, ...], by_kw: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if by_kw and len(values) == 2:
            return (values[0],), {"b": values[1]}
        return values, {}

    def binding(values: tuple[Any, ...]) -> tuple[Any, ...]:
        full = values if len(values) == 2 else (*values, 2)
        return tuple((v, type(v)) for v in full) if typed else full

    found: list[bool] = []

    @singleflight(typed=typed)
    def f(a: Any, b: Any = 2) -> None:
        args, kwargs = spell(second, second_by_kw)
        found.append(f.forget(*args, **kwargs))

    args, kwargs = spell(first, first_by_kw)
    f(*args, **kwargs)
    assert found == [binding(first) == binding(second)]


def varfn(body: Body) -> Any:
    @singleflight
    def f(*args: Any, **kwargs: Any) -> object:
        return body(args, kwargs)

    return f


def test_tuple_of_items_and_keywords_never_share() -> None:
    # a positional value that looks like keyword items, and the keywords themselves
    for first, second in [
        (((("b", 2),),), {"b": 2}),
        ((("b", 2),), {"b": 2}),
        (("b", 2), {"b": 2}),
    ]:
        body = Body()
        g = varfn(body)
        leader = Worker(g, *first)
        leader.start()
        assert body.entered.wait(DEADLINE)
        other = Worker(g, **second)
        other.start()
        other.join()
        assert len(body.runs) == 2
        body.release.set()
        leader.join()
        assert g.stats().executions == 2


@pytest.mark.parametrize(("a", "b"), [(1, 1.0), (True, 1), (1.0, True), (0, False)])
def test_typed_separates_equal_values_of_different_types(a: Any, b: Any) -> None:
    body = Body()

    @singleflight(typed=True)
    def f(x: Any) -> object:
        return body(x)

    run_apart(f, body, (a,), (b,))

    body = Body()

    @singleflight
    def g(x: Any) -> object:
        return body(x)

    share_one_flight(g, body, [((a,), {}), ((b,), {})])


def test_typed_with_varargs_and_varkw() -> None:
    body = Body()

    @singleflight(typed=True)
    def f(*args: Any, **kwargs: Any) -> object:
        return body(args, kwargs)

    leader = Worker(f, 1, x=1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    for args, kwargs in [((1.0,), {"x": 1}), ((1,), {"x": 1.0}), ((True,), {"x": True})]:
        w = Worker(f, *args, **kwargs)
        w.start()
        w.join()
    assert len(body.runs) == 4
    # the same types join
    same = Worker(f, 1, x=1)
    same.start()
    wait_until(lambda: f.stats().calls == 5, "the same-typed call joined")
    body.release.set()
    assert same.join() is leader.join()
    assert len(body.runs) == 4


def test_nothing_is_cached() -> None:
    body = Body(hold_first=False)

    @singleflight
    def f(x: int) -> object:
        return body(x)

    first = f(1)
    assert f(1) is not first
    assert f.stats().executions == 2
    assert f.stats().in_flight == 0


def test_exception_reaches_every_caller_and_is_not_cached() -> None:
    body = Body(error=ValueError)

    @singleflight
    def f(x: int) -> object:
        return body(x)

    leader = Worker(f, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    followers = [Worker(f, 1) for _ in range(3)]
    for w in followers:
        w.start()
    wait_until(lambda: f.stats().calls == 4, "three followers joined")
    body.release.set()
    errors = [leader.outcome()] + [w.outcome() for w in followers]
    for err in errors:
        assert isinstance(err, ValueError)
        assert str(err) == "failed for (1,)"
    assert len(body.runs) == 1
    assert f.stats().errors == 1
    # a later call runs again (and fails again)
    with pytest.raises(ValueError, match="failed"):
        f(1)
    assert len(body.runs) == 2


# -- unhashable arguments and bad calls ------------------------------------------------------------


def test_unhashable_argument_names_the_parameter() -> None:
    @singleflight
    def f(items: list[int], *args: Any, flag: Any = None, **kwargs: Any) -> int:
        return len(items)

    cases = [
        (([1],), {}, "'items' (list)"),
        (((), 2, {3}), {}, "'args[1]' (set)"),
        (((),), {"flag": {}}, "'flag' (dict)"),
        (((),), {"extra": bytearray()}, "'extra' (bytearray)"),
    ]
    for args, kwargs, named in cases:
        with pytest.raises(UnhashableKeyError) as info:
            f(*args, **kwargs)
        msg = str(info.value)
        assert named in msg
        assert "key=" in msg
        assert msg.startswith(f"{f.__qualname__}():")
        assert isinstance(info.value, TypeError)
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__
        # forget() reports the same
        with pytest.raises(UnhashableKeyError, match=re.escape(named)):
            f.forget(*args, **kwargs)
    assert f.stats().calls == 0


def test_unhashable_default_is_named() -> None:
    @singleflight
    def f(a: int, b: list[int] = []) -> int:  # noqa: B006 - the unhashable default is the point
        return a

    with pytest.raises(UnhashableKeyError, match=r"argument 'b' \(list\)"):
        f(1)


def test_unhashable_self_is_named() -> None:
    @dataclass  # eq=True without frozen: __hash__ is None
    class Record:
        x: int

        @singleflight
        def size(self, factor: int) -> int:
            return self.x * factor

    with pytest.raises(UnhashableKeyError) as info:
        Record(1).size(2)
    msg = str(info.value)
    assert "argument 'self' (Record)" in msg
    assert "key=" in msg
    with pytest.raises(UnhashableKeyError, match="'self'"):
        Record(1).size.forget(2)

    # the suggested key works
    class Fixed:
        __hash__ = None  # type: ignore[assignment]

        @singleflight(key=lambda self, *args: (id(self), *args))
        def size(self, factor: int) -> int:
            return factor

    assert Fixed().size(3) == 3


def test_unhashable_argument_of_a_function_without_signature() -> None:
    sf = singleflight(max)
    assert sf(1, 3, 2) == 3
    with pytest.raises(UnhashableKeyError, match=r"argument '#0' \(list\)"):
        sf([1, 2])


def test_key_function_returning_unhashable_is_a_clear_error() -> None:
    @singleflight(key=lambda items: list(items))
    def f(items: tuple[int, ...]) -> int:
        return len(items)

    with pytest.raises(UnhashableKeyError, match=r"key= function returned an unhashable key \[1, 2\]") as info:
        f((1, 2))
    assert info.value.key == [1, 2]
    with pytest.raises(UnhashableKeyError, match="key= function"):
        f.forget((1, 2))


def test_unhashable_error_from_a_nested_flight_passes_through() -> None:
    inner = Group[Any, Any]()

    @singleflight
    def f(x: int) -> int:
        return inner.do([x], int)  # the function's own bug: an unhashable key

    with pytest.raises(UnhashableKeyError) as info:
        f(1)
    assert info.value.key == [1]
    assert "f()" not in str(info.value)


def _misfits() -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    return [
        ("too many", (1, 2, 3), {}),
        ("missing", (), {}),
        ("unexpected keyword", (1,), {"c": 1}),
        ("given twice", (1,), {"a": 1}),
        ("positional-only by keyword", (1,), {"p": 1}),
        ("keyword-only missing", (1,), {"p": 2, "k": None}),
    ]


def _plain(a: int, /, b: int = 2, *, k: int) -> int:
    return a + b + k


def _undecorated_error(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TypeError:
    with pytest.raises(TypeError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1, 2, 3), {}),
        ((), {"k": 1}),
        ((1,), {"k": 1, "c": 1}),
        ((1, 2), {"b": 2, "k": 1}),
        ((), {"a": 1, "k": 1}),
        ((1,), {}),
        ((1, 2, 3), {"k": 1}),
    ],
)
def test_arguments_that_do_not_fit_raise_the_functions_own_error(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    expected = _undecorated_error(_plain, args, kwargs)
    for sf in (singleflight(_plain), singleflight(typed=True)(_plain), singleflight(key=hashkey)(_plain)):
        with pytest.raises(TypeError) as info:
            sf(*args, **kwargs)
        err = info.value
        assert type(err) is TypeError
        assert str(err) == str(expected)
        # raised by the function itself, with nothing internal chained to it
        assert err.__context__ is None
        assert err.__cause__ is None
        if sf._keyfn is None:
            # the default key sees the misfit and never starts a flight
            # (hashkey takes anything: that flight runs and fails like the function)
            assert sf.stats().calls == 0
            with pytest.raises(TypeError, match=r"forget\(\) takes the same arguments"):
                sf.forget(*args, **kwargs)


def test_key_function_that_cannot_take_the_arguments_defers_to_the_function() -> None:
    @singleflight(key=lambda user_id: user_id)
    def load(user_id: int) -> int:
        return user_id

    expected = _undecorated_error(load.__wrapped__, (1, 2), {})
    with pytest.raises(TypeError) as info:
        load(1, 2)  # type: ignore[call-arg]
    assert str(info.value) == str(expected)
    assert "<lambda>" not in str(info.value)
    assert info.value.__context__ is None

    # a key function that fails on arguments the function accepts is the key function's error
    @singleflight(key=lambda user_id: user_id + "")
    def broken(user_id: int) -> int:
        return user_id

    with pytest.raises(TypeError, match="unsupported operand"):
        broken(1)


# -- methods, classmethods, staticmethods ----------------------------------------------------------


class Repo:
    body: Body

    @singleflight
    def get(self, x: int) -> object:
        return type(self).body(self, x)


def test_method_same_instance_shares() -> None:
    Repo.body = body = Body()
    repo = Repo()
    share_one_flight(repo.get, body, [((1,), {}), ((1,), {}), ((), {"x": 1})])


def test_method_instances_dedupe_separately() -> None:
    Repo.body = body = Body()
    a, b = Repo(), Repo()
    leader = Worker(a.get, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    other = Worker(b.get, 1)
    other.start()
    other.join()
    assert [run[0] for run in body.runs] == [a, b]
    # forget is per instance too
    assert b.get.forget(1) is False
    assert a.get.forget(2) is False
    assert a.get.forget(1) is True
    assert a.get.forget(1) is False
    # forgotten: the next call starts a new flight instead of joining
    third = Worker(a.get, 1)
    third.start()
    third.join()
    assert len(body.runs) == 3
    body.release.set()
    leader.join()
    assert Repo.get.stats().in_flight == 0
    # unbound access passes the instance explicitly
    assert Repo.get.forget(a, 1) is False


def test_bound_method_looks_like_a_bound_method() -> None:
    Repo.body = Body(hold_first=False)
    repo = Repo()
    bound = repo.get
    assert isinstance(bound, BoundSingleFlightFunction)
    assert bound.__self__ is repo
    assert bound.__func__ is Repo.get
    assert bound.__wrapped__ is Repo.get.__wrapped__
    assert bound.__name__ == "get"
    assert bound.__qualname__ == "Repo.get"
    assert str(inspect.signature(bound)) == "(x: 'int') -> 'object'"
    assert bound == repo.get
    assert hash(bound) == hash(repo.get)
    assert bound != Repo().get
    assert bound.group is Repo.get.group
    assert bound.stats() == Repo.get.stats()
    assert "Repo.get" in repr(bound)
    assert Repo.get.__get__(None, Repo) is Repo.get


def test_method_key_helpers() -> None:
    # methodkey ignores the instance: two instances share one flight
    body2 = Body()

    class Api2:
        @singleflight(key=methodkey)
        def fetch(self, x: int) -> object:
            return body2(x)

    a, b = Api2(), Api2()
    leader = Worker(a.fetch, 1)
    leader.start()
    assert body2.entered.wait(DEADLINE)
    follower = Worker(b.fetch, 1)
    follower.start()
    wait_until(lambda: Api2.fetch.stats().calls == 2, "the other instance joined")
    body2.release.set()
    assert leader.join() is follower.join()
    assert len(body2.runs) == 1


class Classy:
    body: Body

    @singleflight
    @classmethod
    def outer(cls, x: int) -> object:  # @singleflight over @classmethod
        return Classy.body(cls, x)

    @classmethod
    @singleflight
    def inner(cls, x: int) -> object:  # @classmethod over @singleflight
        return Classy.body(cls, x)

    @singleflight
    @staticmethod
    def s_outer(x: int) -> object:
        return Classy.body(x)

    @staticmethod
    @singleflight
    def s_inner(x: int) -> object:
        return Classy.body(x)


class SubClassy(Classy):
    pass


@pytest.mark.parametrize("name", ["outer", "inner"])
def test_classmethod_both_orders(name: str) -> None:
    Classy.body = body = Body()
    # through the class and through an instance: one flight
    share_one_flight(getattr(Classy, name), body, [((1,), {}), ((1,), {})])
    assert body.runs[0] == (Classy, 1)
    Classy.body = body = Body()
    share_one_flight(getattr(Classy(), name), body, [((1,), {}), ((), {"x": 1})])
    # a subclass is another cls: another flight
    Classy.body = body = Body()
    leader = Worker(getattr(Classy, name), 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    sub = Worker(getattr(SubClassy, name), 1)
    sub.start()
    sub.join()
    assert [run[0] for run in body.runs] == [Classy, SubClassy]
    # forget, spelled so it works in both orders on every version
    sff = getattr(Classy, name).__func__
    assert isinstance(sff, SingleFlightFunction)
    assert sff.forget(SubClassy, 1) is False
    assert sff.forget(Classy, 1) is True
    body.release.set()
    leader.join()


def test_classmethod_forget_through_the_class() -> None:
    # @singleflight over @classmethod binds the class itself, on every version
    Classy.body = body = Body()
    bound = Classy.outer
    assert isinstance(bound, BoundSingleFlightFunction)
    assert bound.__self__ is Classy
    assert isinstance(Classy.__dict__["outer"], classmethod)
    leader = Worker(Classy.outer, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    assert SubClassy.outer.forget(1) is False
    assert Classy().outer.forget(1) is True
    assert Classy.outer.forget(1) is False
    body.release.set()
    leader.join()
    assert Classy.outer.stats().in_flight == 0


def test_classmethod_over_singleflight_forget_depends_on_the_python_version() -> None:
    # A known limit, asserted on every version rather than skipped: before 3.13
    # classmethod asks what it wraps to bind (giving a bound singleflight);
    # from 3.13 it hands out MethodType(function, cls), whose .forget is the
    # unbound one and cannot know the class. The call itself dedupes on every
    # version (test_classmethod_both_orders); @singleflight outermost, or
    # Cls.m.__func__.forget(Cls, ...), forgets on every version.
    Classy.body = body = Body()
    leader = Worker(Classy.inner, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    if sys.version_info < (3, 13):
        assert isinstance(Classy.inner, BoundSingleFlightFunction)
        assert Classy.inner.forget(1) is True
    else:
        assert isinstance(Classy.inner, types.MethodType)
        with pytest.raises(TypeError, match=r"forget\(\) takes the same arguments"):
            Classy.inner.forget(1)  # binds 1 to cls, and x is missing: a loud error
        assert Classy.inner.__func__.forget(Classy, 1) is True
    body.release.set()
    leader.join()


@pytest.mark.parametrize("name", ["s_outer", "s_inner"])
def test_staticmethod_both_orders(name: str) -> None:
    Classy.body = body = Body()
    assert isinstance(getattr(Classy, name), SingleFlightFunction)
    share_one_flight(getattr(Classy, name), body, [((1,), {}), ((1,), {}), ((), {"x": 1})])
    assert body.runs == [(1,)]
    assert getattr(Classy(), name) is getattr(Classy, name)
    assert getattr(Classy, name).forget(1) is False


# -- group=, timeout= ------------------------------------------------------------------------------


def test_shared_group_keeps_functions_apart() -> None:
    group = Group[Any, Any]()
    body = Body()

    @singleflight(group=group)
    def f(x: int) -> object:
        return body("f", x)

    @singleflight(group=group)
    def g(x: int) -> object:
        return body("g", x)

    assert f.group is group
    assert g.group is group
    leader = Worker(f, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    other = Worker(g, 1)
    other.start()
    other.join()
    assert body.runs == [("f", 1), ("g", 1)]
    assert group.stats().in_flight == 1
    assert g.forget(1) is False  # g's key is not f's
    follower = Worker(f, 1)
    follower.start()
    wait_until(lambda: group.stats().calls == 3, "f's follower joined")
    body.release.set()
    assert leader.join() is follower.join()
    expected = FlightStats(calls=3, executions=2, shared=1, errors=0, timeouts=0, in_flight=0)
    assert f.stats() == g.stats() == group.stats() == expected


def test_timeout_makes_followers_give_up() -> None:
    body = Body()

    @singleflight(timeout=0.05)
    def f(x: int) -> object:
        return body(x)

    leader = Worker(f, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    with pytest.raises(FlightTimeoutError) as info:
        f(1)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.key == (1,)
    assert repr((1,)) in str(err)
    assert err.timeout == 0.05
    assert f.stats().timeouts == 1
    body.release.set()
    leader.join()
    assert len(body.runs) == 1


def test_timeout_names_the_scoped_key_in_a_shared_group() -> None:
    body = Body()

    def f(x: int) -> object:
        return body(x)

    sf = singleflight(group=Group(timeout=0.05))(f)
    leader = Worker(sf, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    with pytest.raises(FlightTimeoutError) as info:
        sf(1)
    assert info.value.key == (f, (1,))
    assert info.value.timeout == 0.05  # the group's default
    body.release.set()
    leader.join()


def test_timeout_option_overrides_the_groups() -> None:
    body = Body()
    group = Group[Any, Any](timeout=DEADLINE * 10)

    @singleflight(group=group, timeout=0.05)
    def f(x: int) -> object:
        return body(x)

    leader = Worker(f, 1)
    leader.start()
    assert body.entered.wait(DEADLINE)
    with pytest.raises(FlightTimeoutError) as info:
        f(1)
    assert info.value.timeout == 0.05
    body.release.set()
    leader.join()


def test_infinite_timeout_waits_for_the_leader() -> None:
    body = Body()

    @singleflight(timeout=math.inf)
    def f(x: int) -> object:
        return body(x)

    share_one_flight(f, body, [((1,), {}), ((1,), {})])


# -- bad options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"key": "x"}, TypeError, r"^key must be a callable"),
        ({"key": 1}, TypeError, r"^key must be a callable"),
        ({"timeout": 0}, ValueError, r"^timeout must be > 0"),
        ({"timeout": -1.0}, ValueError, r"^timeout must be > 0"),
        ({"timeout": math.nan}, ValueError, r"^timeout must be > 0"),
        ({"timeout": "1"}, TypeError, r"^timeout must be a number"),
        ({"timeout": True}, TypeError, r"^timeout must be a number"),
        ({"group": object()}, TypeError, r"^group must be a singleflight_sync.Group, got object"),
        ({"typed": "yes"}, TypeError, r"^typed must be True or False, got 'yes'"),
        ({"typed": 1}, TypeError, r"^typed must be True or False"),
        ({"typed": True, "key": hashkey}, ValueError, r"^typed=True applies to the default key only.*typedkey"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        singleflight(**options)


def test_options_passed_positionally_are_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"@singleflight decorates a function, got str 'key'.*singleflight\(key="):
        singleflight("key")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="got int 5"):
        singleflight(5)  # type: ignore[call-overload]


def test_typedkey_is_the_way_to_type_a_custom_key() -> None:
    body = Body()

    @singleflight(key=typedkey)
    def f(x: Any) -> object:
        return body(x)

    run_apart(f, body, (1,), (1.0,))


async def _coro() -> None:
    pass


async def _agen() -> Any:
    yield 1


def _gen() -> Any:
    yield 1


@pytest.mark.parametrize(
    "fn",
    [_coro, _agen, _gen, functools.partial(_coro), classmethod(_coro), staticmethod(_gen)],
    ids=["coroutine", "async-generator", "generator", "partial-coroutine", "classmethod-coroutine", "static-gen"],
)
def test_coroutine_and_generator_functions_are_refused(fn: Any) -> None:
    with pytest.raises(TypeError, match=r"cannot wrap .*coroutine or generator.*do_async"):
        singleflight(fn)
    with pytest.raises(TypeError, match="cannot wrap"):
        singleflight(timeout=1)(fn)


class NoSignature:
    """A callable inspect cannot read a signature from (like some builtins)."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.__qualname__ = "NoSignature"

    @property
    def __signature__(self) -> inspect.Signature:
        msg = "no signature found"
        raise ValueError(msg)

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        return self.body(args, kwargs)


def test_callable_without_signature_keys_by_spelling() -> None:
    with pytest.raises(ValueError, match="no signature"):
        inspect.signature(NoSignature(Body()))
    # without a signature, the same spelling shares (and 1 == 1.0) ...
    body = Body()
    sf = singleflight(NoSignature(body))
    share_one_flight(sf, body, [((1,), {"b": 2}), ((1,), {"b": 2}), ((1.0,), {"b": 2})])
    # ... another spelling cannot be normalised, and keywords never pass for positionals
    for other in [((1, 2), {}), ((1, ("b", 2)), {}), ((1,), {"c": 2})]:
        body = Body()
        sf = singleflight(NoSignature(body))
        run_apart_kw(sf, body, ((1,), {"b": 2}), other)
    # typed=True separates types here too
    body = Body()
    sf = singleflight(typed=True)(NoSignature(body))
    run_apart_kw(sf, body, ((1,), {"b": 2}), ((1.0,), {"b": 2}))
    body = Body()
    sf = singleflight(typed=True)(NoSignature(body))
    run_apart_kw(sf, body, ((1,), {"b": 2}), ((1,), {"b": 2.0}))


def run_apart_kw(
    sf: Any, body: Body, first: tuple[tuple[Any, ...], dict[str, Any]], second: tuple[tuple[Any, ...], dict[str, Any]]
) -> None:
    leader = Worker(sf, *first[0], **first[1])
    leader.start()
    assert body.entered.wait(DEADLINE)
    other = Worker(sf, *second[0], **second[1])
    other.start()
    other.join()
    assert len(body.runs) == 2
    body.release.set()
    leader.join()
