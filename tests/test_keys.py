"""Key building: the public helpers and the decorator's signature normaliser.

The normaliser is checked against two oracles: ``inspect.signature(fn).bind``
with ``apply_defaults()`` (two calls must share a key exactly when they bind
to the same arguments) and calling the real function (arguments the
normaliser rejects are exactly those the function rejects).
"""

from __future__ import annotations

import inspect
import pickle
import sys
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from singleflight_sync import hashkey, methodkey, typedkey
from singleflight_sync._keys import _KWMARK, _Unbindable, describe_unhashable, make_normaliser

# 1, 1.0 and True are equal with different types; tuples that look like
# keyword items try to collide with real keyword arguments.
ATOMS = (0, 1, 2, 1.0, True, "a", "b", None, ("b", 2), (("b", 2),))
values = st.sampled_from(ATOMS)
NAMES = ("a", "b", "c", "args", "kwargs")


# -- hashkey / typedkey / methodkey ----------------------------------------------------------------


@settings(max_examples=300)
@given(
    st.lists(values, max_size=3),
    st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
    st.lists(values, max_size=3),
    st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
)
@example([("b", 2)], {}, [], {"b": 2})
@example([(("b", 2),)], {}, [], {"b": 2})
@example(["b", 2], {}, [], {"b": 2})
@example([], {"a": 1, "b": 2}, [], {"b": 2, "a": 1})
def test_hashkey_equal_iff_same_arguments(a: list[Any], k: dict[str, Any], a2: list[Any], k2: dict[str, Any]) -> None:
    key, key2 = hashkey(*a, **k), hashkey(*a2, **k2)
    same = tuple(a) == tuple(a2) and k == k2
    assert (key == key2) is same
    if same:
        assert hash(key) == hash(key2)
    # methodkey ignores the instance and is otherwise hashkey
    assert (methodkey(object(), *a, **k) == methodkey(object(), *a2, **k2)) is same


def _types(a: list[Any], k: dict[str, Any]) -> tuple[Any, ...]:
    return (tuple(type(v) for v in a), {n: type(v) for n, v in k.items()})


@settings(max_examples=300)
@given(
    st.lists(values, max_size=3),
    st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
    st.lists(values, max_size=3),
    st.dictionaries(st.sampled_from(NAMES), values, max_size=3),
)
@example([1], {}, [1.0], {})
@example([True], {}, [1], {})
@example([], {"a": 1}, [], {"a": 1.0})
@example([1], {}, [1, int], {})
def test_typedkey_equal_iff_same_arguments_and_types(
    a: list[Any], k: dict[str, Any], a2: list[Any], k2: dict[str, Any]
) -> None:
    same = tuple(a) == tuple(a2) and k == k2 and _types(a, k) == _types(a2, k2)
    assert (typedkey(*a, **k) == typedkey(*a2, **k2)) is same


def test_helper_keys_examples() -> None:
    assert hashkey(1, b=2) == hashkey(1, b=2)
    assert hashkey(b=2, a=1) == hashkey(a=1, b=2)
    assert hashkey(1, b=2) != hashkey(1, 2)  # no signature: spelling matters
    assert hashkey(("b", 2)) != hashkey(b=2)
    assert hashkey(1) == hashkey(1.0)
    assert typedkey(1) != typedkey(1.0)
    assert typedkey(True) != typedkey(1)
    assert typedkey(a=1) != typedkey(a=True)
    assert methodkey(object(), 1, b=2) == hashkey(1, b=2)
    assert hashkey() == ()
    assert repr(_KWMARK) == "<kwargs>"


def test_helper_keys_pickle_round_trip() -> None:
    # keys may cross a process boundary (the Redis layer); the marker keeps its identity
    for key in (hashkey(1, b=2), typedkey(1, b=2.0)):
        assert pickle.loads(pickle.dumps(key)) == key
    assert pickle.loads(pickle.dumps(_KWMARK)) is _KWMARK


# -- make_normaliser against inspect.signature -------------------------------------------------------


class Spec(NamedTuple):
    """A generated signature: a real function returning its bound parameters, and its source."""

    fn: Any
    source: str


@st.composite
def signatures(draw: st.DrawFn) -> Spec:
    n_posonly = draw(st.integers(0, 2))
    n_pk = draw(st.integers(0, 2))
    npos = n_posonly + n_pk
    # only the trailing positional parameters may have defaults
    n_defaulted = draw(st.integers(0, npos))
    varargs = draw(st.booleans())
    n_kwonly = draw(st.integers(0, 2))
    varkw = draw(st.booleans())
    parts: list[str] = []
    for i in range(npos):
        name = f"p{i}"
        if i >= npos - n_defaulted:
            parts.append(f"{name}={draw(values)!r}")
        else:
            parts.append(name)
        if i == n_posonly - 1:
            parts.append("/")
    if varargs:
        parts.append("*args")
    elif n_kwonly:
        parts.append("*")
    for i in range(n_kwonly):
        name = f"k{i}"
        parts.append(f"{name}={draw(values)!r}" if draw(st.booleans()) else name)
    if varkw:
        parts.append("**kwargs")
    # At entry, locals() is exactly the interpreter's binding of the call,
    # defaults applied: the ground truth both oracles are checked against.
    return spec_of(f"def f({', '.join(parts)}):\n    return dict(locals())\n")


def spec_of(source: str) -> Spec:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return Spec(namespace["f"], source)


# the case where inspect.signature().bind() is wrong before 3.13
POSONLY_DEFAULT_BY_KEYWORD = spec_of("def f(p0=0, /, **kwargs):\n    return dict(locals())\n")


# keyword names a call may use: every parameter name, the *args/**kwargs names
# themselves, and a name no signature has
CALL_NAMES = ("p0", "p1", "p2", "p3", "k0", "k1", "args", "kwargs", "x")

Call = tuple[tuple[Any, ...], dict[str, Any]]


@st.composite
def random_calls(draw: st.DrawFn) -> Call:
    args = tuple(draw(st.lists(values, max_size=5)))
    kwargs = draw(st.dictionaries(st.sampled_from(CALL_NAMES), values, max_size=4))
    return args, kwargs


def interpreter_binding(fn: Any, call: Call) -> dict[str, Any] | None:
    """What the interpreter binds the call to (defaults applied), or None if it raises TypeError."""
    args, kwargs = call
    try:
        return fn(*args, **kwargs)  # type: ignore[no-any-return]
    except TypeError:
        return None


def inspect_binding(fn: Any, call: Call) -> dict[str, Any] | None:
    """The same through ``inspect.signature(fn).bind(...).apply_defaults()``."""
    args, kwargs = call
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


def oracle(fn: Any, call: Call) -> dict[str, Any] | None:
    """The interpreter's binding, checked against ``inspect``'s.

    The interpreter is the truth, and the normaliser must follow it. The one
    divergence allowed is ``inspect``'s known mishandling (before 3.13.1) of
    a positional-only parameter's name passed as a keyword into ``**kwargs``.
    """
    truth = interpreter_binding(fn, call)
    by_inspect = inspect_binding(fn, call)
    if by_inspect != truth:
        # Before 3.13 Signature.bind rejects a positional-only parameter's
        # name passed as a **kwargs key while the parameter takes its default
        # (def f(a=0, /, **kw); f(a=1)); 3.13.0 binds such names to the
        # parameter instead (or accepts them for a missing one). Fixed in 3.13.1.
        posonly = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.POSITIONAL_ONLY]
        assert sys.version_info < (3, 13, 1), f"inspect diverges from the interpreter: {by_inspect} != {truth}"
        assert any(name in call[1] for name in posonly), "an unknown inspect divergence"
    return truth


def respell(draw: st.DrawFn, fn: Any, arguments: dict[str, Any]) -> Call:
    """Draw another way of spelling the call whose binding (defaults applied) is ``arguments``."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = next((arguments[p.name] for p in params if p.kind is p.VAR_POSITIONAL), ())

    def may_omit(p: inspect.Parameter) -> bool:
        value = arguments[p.name]
        return p.default is not p.empty and value == p.default and type(value) is type(p.default)

    # Positional parameters before ``cut`` go by position; after it, by keyword
    # or (when equal to the default) not at all. A non-empty *args forces all.
    cut = draw(st.integers(0, len(positional)))
    if varargs:
        cut = len(positional)
    for i, p in enumerate(positional):
        if p.kind is p.POSITIONAL_ONLY and not may_omit(p):
            cut = max(cut, i + 1)
    args: list[Any] = [arguments[p.name] for p in positional[:cut]]
    args.extend(varargs)
    kwargs: dict[str, Any] = {}
    for p in positional[cut:]:
        if p.kind is p.POSITIONAL_OR_KEYWORD and not (may_omit(p) and draw(st.booleans())):
            kwargs[p.name] = arguments[p.name]
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not (may_omit(p) and draw(st.booleans())):
            kwargs[p.name] = arguments[p.name]
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(arguments[p.name])
    order = draw(st.permutations(list(kwargs)))
    return tuple(args), {name: kwargs[name] for name in order}


def key_or_none(normalise: Any, call: Call) -> tuple[Any, ...] | None:
    try:
        return normalise(*call)  # type: ignore[no-any-return]
    except _Unbindable:
        return None


def typed_view(fn: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """The binding with the type of each top-level value (of each *args/**kwargs item)."""
    params = inspect.signature(fn).parameters
    view: dict[str, Any] = {}
    for name, value in arguments.items():
        kind = params[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            view[name] = tuple((v, type(v)) for v in value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            view[name] = {k: (v, type(v)) for k, v in value.items()}
        else:
            view[name] = (value, type(value))
    return view


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(signatures(), random_calls())
@example(POSONLY_DEFAULT_BY_KEYWORD, ((), {"p0": 0}))
@example(POSONLY_DEFAULT_BY_KEYWORD, ((), {"p0": 1}))
def test_normaliser_rejects_exactly_what_the_function_rejects(spec: Spec, call: Call) -> None:
    fits = oracle(spec.fn, call) is not None
    for typed in (False, True):
        key = key_or_none(make_normaliser(spec.fn, typed=typed), call)
        assert (key is not None) is fits, (spec.source, call, typed)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(signatures(), random_calls(), random_calls(), st.data())
def test_normaliser_shares_a_key_iff_calls_bind_the_same(
    spec: Spec, call: Call, other: Call, data: st.DataObject
) -> None:
    fn = spec.fn
    bound = oracle(fn, call)
    if bound is not None and data.draw(st.booleans(), label="respell"):
        # usually another spelling of the same call: the interesting case
        other = respell(data.draw, fn, bound)
        assert oracle(fn, other) == bound, "respell() is wrong"
    bound2 = oracle(fn, other)
    plain = make_normaliser(fn, typed=False)
    typed = make_normaliser(fn, typed=True)
    for normalise, view in ((plain, lambda b: b), (typed, lambda b: typed_view(fn, b))):
        key, key2 = key_or_none(normalise, call), key_or_none(normalise, other)
        assert (key is None) is (bound is None)
        assert (key2 is None) is (bound2 is None)
        if bound is None or bound2 is None:
            continue
        same = view(bound) == view(bound2)
        assert (key == key2) is same, (spec.source, call, other)
        if same:
            assert hash(key) == hash(key2)


def _f(a: Any, b: Any = 2) -> None:
    pass


SPELLINGS = [((1,), {}), ((1, 2), {}), ((1,), {"b": 2}), ((), {"a": 1, "b": 2}), ((), {"b": 2, "a": 1})]


@pytest.mark.parametrize("typed", [False, True])
def test_default_spellings_normalise_to_one_key(typed: bool) -> None:
    normalise = make_normaliser(_f, typed=typed)
    keys = {normalise(args, kwargs) for args, kwargs in SPELLINGS}
    assert len(keys) == 1
    assert normalise((1, 3), {}) not in keys


def test_fast_path_returns_the_args_tuple_itself() -> None:
    # A designed property: an all-positional call of a plain signature builds nothing.
    def f(a: Any, b: Any, /, c: Any) -> None:
        pass

    args = (1, 2, 3)
    assert make_normaliser(f, typed=False)(args, {}) is args
    two = (1, 2)
    assert make_normaliser(_f, typed=False)(two, {}) is two
    # the slow path builds an equal key
    assert make_normaliser(f, typed=False)((1, 2), {"c": 3}) == args
    # with a default to fill in, or a typed key, a new tuple is built
    assert make_normaliser(_f, typed=False)((1,), {}) == (1, 2)
    assert make_normaliser(f, typed=True)(args, {}) is not args


@pytest.mark.parametrize(
    ("source", "first", "second", "same"),
    [
        # positional-only passed by keyword goes to **kwargs, not into the slot
        ("def f(a, /, **kw): pass", ((1,), {"a": 2}), ((1,), {}), False),
        ("def f(a, /, **kw): pass", ((1,), {"a": 2}), ((1,), {"a": 2}), True),
        ("def f(a=5, /, **kw): pass", ((), {"a": 1}), ((5,), {"a": 1}), True),
        ("def f(a=5, /, **kw): pass", ((), {"a": 1}), ((1,), {}), False),
        # *args and keyword items never trade places
        ("def f(*args, **kwargs): pass", (((("b", 2),),), {}), ((), {"b": 2}), False),
        ("def f(*args, **kwargs): pass", ((("b", 2),), {}), ((), {"b": 2}), False),
        ("def f(*args, **kwargs): pass", (("b", 2), {}), ((), {"b": 2}), False),
        ("def f(*args, **kwargs): pass", ((1,), {}), (((1,),), {}), False),
        ("def f(a, *args): pass", ((1, 2), {}), ((1, (2,)), {}), False),
        # keyword-only: given or defaulted
        ("def f(*, a, b=2): pass", ((), {"a": 1}), ((), {"b": 2, "a": 1}), True),
        ("def f(x, *args, a=1, **kw): pass", ((0,), {}), ((0,), {"a": 1}), True),
        ("def f(x, *args, a=1, **kw): pass", ((0, 1), {}), ((0,), {"a": 1}), False),
    ],
)
def test_normaliser_cases(
    source: str,
    first: tuple[tuple[Any, ...], dict[str, Any]],
    second: tuple[tuple[Any, ...], dict[str, Any]],
    same: bool,
) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    fn = namespace["f"]
    for typed in (False, True):
        normalise = make_normaliser(fn, typed=typed)
        assert (normalise(*first) == normalise(*second)) is same


@pytest.mark.parametrize(
    ("source", "args", "kwargs"),
    [
        ("def f(a, b=2): pass", (1,), {"a": 1}),  # duplicate
        ("def f(a, b=2, **kw): pass", (1, 2), {"b": 2}),  # duplicate despite **kw
        ("def f(a, /): pass", (), {"a": 1}),  # positional-only by keyword
        ("def f(a, /, **kw): pass", (), {"a": 1}),  # ... goes to **kw, so a is missing
        ("def f(*, a): pass", (), {}),  # keyword-only without default
        ("def f(*, a): pass", (1,), {}),  # keyword-only passed positionally
        ("def f(a): pass", (1, 2), {}),  # too many
        ("def f(a): pass", (), {"b": 1}),  # unexpected keyword
        ("def f(*args): pass", (), {"args": 1}),
        ("def f(a, b): pass", (1,), {}),  # missing
    ],
)
def test_normaliser_rejects_what_python_rejects(source: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    fn = namespace["f"]
    with pytest.raises(TypeError):
        fn(*args, **kwargs)
    for typed in (False, True):
        with pytest.raises(_Unbindable):
            make_normaliser(fn, typed=typed)(args, kwargs)


def test_typed_separates_types_in_every_slot() -> None:
    def f(a: Any, /, b: Any, *args: Any, c: Any, **kwargs: Any) -> None:
        pass

    normalise = make_normaliser(f, typed=True)
    plain = make_normaliser(f, typed=False)
    base = normalise((1, 1, 1), {"c": 1, "d": 1})
    assert normalise((1, 1, 1), {"d": 1, "c": 1}) == base
    for args, kwargs in [
        ((1.0, 1, 1), {"c": 1, "d": 1}),
        ((1, True, 1), {"c": 1, "d": 1}),
        ((1, 1, 1.0), {"c": 1, "d": 1}),
        ((1, 1, 1), {"c": 1.0, "d": 1}),
        ((1, 1, 1), {"c": 1, "d": True}),
    ]:
        assert normalise(args, kwargs) != base
        # untyped, they are the same call
        assert plain(args, kwargs) == plain((1, 1, 1), {"c": 1, "d": 1})


def test_typed_with_only_kwargs_and_only_varargs() -> None:
    def only_kw(**kwargs: Any) -> None:
        pass

    def only_var(*args: Any) -> None:
        pass

    kw = make_normaliser(only_kw, typed=True)
    assert kw((), {"a": 1}) != kw((), {"a": 1.0})
    assert kw((), {"a": 1, "b": 2}) == kw((), {"b": 2, "a": 1})
    var = make_normaliser(only_var, typed=True)
    assert var((1, 2), {}) != var((1, 2.0), {})
    assert var((1, 2), {}) == var((1, 2), {})
    assert var((), {}) == var((), {})


# -- describe_unhashable ---------------------------------------------------------------------------


def test_describe_unhashable_names_the_parameter() -> None:
    def f(a: Any, /, b: Any = None, *args: Any, c: Any = None, **kwargs: Any) -> None:
        pass

    def g(a: Any, b: Any = []) -> None:  # noqa: B006 - the unhashable default is the point
        pass

    assert describe_unhashable(f, ([],), {}) == ("a", "list")
    assert describe_unhashable(f, (1, {}), {}) == ("b", "dict")
    assert describe_unhashable(f, (1, 2, 3, set()), {}) == ("args[1]", "set")
    assert describe_unhashable(f, (1,), {"c": []}) == ("c", "list")
    assert describe_unhashable(f, (1,), {"zz": bytearray()}) == ("zz", "bytearray")
    assert describe_unhashable(f, (1,), {}) is None
    assert describe_unhashable(g, (1,), {}) == ("b", "list")  # a default counts
    assert describe_unhashable(f, (), {}) is None  # does not fit: nothing to name
    # no signature to bind to: name the position or the keyword
    assert describe_unhashable(max, (1, [2]), {}) == ("#1", "list")
    assert describe_unhashable(max, (1,), {"key": []}) == ("key", "list")
