"""Where ``Group.do`` and the decorator spend their time, against the floor.

Run ``python -m benchmarks.profile_do [--quick] [--cprofile]``. It times the
pieces of an uncontended call one by one (the private methods of the current
core, skipped where they no longer exist), then two prototypes of the changes
proposed in benchmarks/README.md, all as ratios to the lock+dict floor
measured in the same rounds. ``--cprofile`` adds a cProfile listing.

The prototypes are measurement aids for the uncontended path only: they are
not the library and carry no follower path worth the name.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import operator
import pstats
import sys
import threading
import timeit
from typing import Any

from singleflight_sync import Group, singleflight

from ._common import Table, environment, median, paired_timings

_get_ident = threading.get_ident


def work(a: Any, b: Any) -> Any:
    return a


# -- prototype 1: one flat frame, a slotted flight, the Future made lazily ----


class _ProtoFlight:
    __slots__ = ("followers", "future", "key", "landed", "owner")

    def __init__(self, key: Any, owner: int) -> None:
        self.key = key
        self.owner = owner
        self.followers = 0
        self.future = None
        self.landed = False


class ProtoGroup:
    """Uncontended path of a flattened ``do``: one Python frame besides ``fn``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Any, _ProtoFlight] = {}
        self._executions = 0
        self._on_end = None

    def do(self, key: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        me = _get_ident()
        with self._lock:
            flight = self._flights.get(key)  # TypeError: unhashable, handled by a wrapper in the real thing
            if flight is None:
                self._flights[key] = flight = _ProtoFlight(key, me)
                self._executions += 1
            else:
                raise NotImplementedError  # the follower path stays in a helper
        try:
            value = fn(*args, **kwargs)
        except BaseException:
            raise NotImplementedError from None  # the error path stays in a helper
        with self._lock:
            flight.landed = True
            if self._flights.pop(key, None) is not flight:
                raise NotImplementedError  # forget() raced: the rare path stays in a helper
            followers = flight.followers
        if followers or self._on_end is not None:
            raise NotImplementedError  # publish to followers / report: helpers
        return value


# -- prototype 2: no object at all for an unshared flight -------------------


class ProtoMarkerGroup:
    """Uncontended path where the map holds the leader's thread ident as a marker.

    The first follower would replace the marker with a real flight object
    (under the lock), so a flight nobody joins allocates nothing; landing pops
    the key and finds its own marker (identity) on the fast path.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Any, Any] = {}
        self._executions = 0
        self._on_end = None

    def do(self, key: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        me = _get_ident()
        flights = self._flights
        with self._lock:
            if flights.setdefault(key, me) is not me:
                raise NotImplementedError  # join (upgrade the marker to a flight): a helper
            self._executions += 1
        try:
            value = fn(*args, **kwargs)
        except BaseException:
            raise NotImplementedError from None  # the error path: a helper
        with self._lock:
            landed = flights.pop(key, None)
        if landed is not me or self._on_end is not None:
            raise NotImplementedError  # followers joined / forget raced / report: helpers
        return value


class _Counter:
    n = 0


class FloorMethod:
    """The floor inside a method with ``do``'s signature: the least any ``do()`` can cost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Any, Any] = {}

    def do(self, key: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._flights[key] = None
        value = fn(*args, **kwargs)
        with self._lock:
            self._flights.pop(key)
        return value


# -- prototype 2: keyword calls mapped to the positional key in C -------------


def proto_keyword_key(names: tuple[str, ...]) -> Any:
    """``key(args, kwargs)`` for a simple signature whose parameters all came by keyword."""
    getter = operator.itemgetter(*names)
    npos = len(names)

    def key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not args and len(kwargs) == npos:
            try:
                got = getter(kwargs)
            except KeyError:
                pass
            else:
                return got if npos > 1 else (got,)
        raise NotImplementedError  # the general binder

    return key


def cases() -> list[tuple[str, str, dict[str, Any]]]:
    g: Any = Group()
    f: Any = singleflight(work)
    me = _get_ident()
    ns: dict[str, Any] = {
        "g": g,
        "f": f,
        "work": work,
        "k": "key",
        "me": me,
        "lock": threading.Lock(),
        "d": {},
        "x": None,
        "get_ident": _get_ident,
        "args": (1, 2),
        "kwargs": {},
        "kw": {"a": 1, "b": 2},
        "proto": ProtoGroup(),
        "marker": ProtoMarkerGroup(),
        "floor_method": FloorMethod(),
        "c": _Counter(),
        "kwkey": proto_keyword_key(("a", "b")),
    }
    out = [
        (
            "floor: with lock d[k]=x; work(1, 2); with lock d.pop(k)",
            "with lock:\n d[k] = x\nwork(1, 2)\nwith lock:\n d.pop(k)",
            ns,
        ),
        ("lock+dict round trip without calling work", "with lock:\n d[k] = x\nwith lock:\n d.pop(k)", ns),
        ("work(1, 2)", "work(1, 2)", ns),
        ("floor inside a method do(key, fn, /, *args, **kwargs)", "floor_method.do(k, work, 1, 2)", ns),
        ("threading.get_ident()", "get_ident()", ns),
        ("one counter attribute: c.n += 1", "c.n += 1", ns),
        ("Group.do(k, work, 1, 2)", "g.do(k, work, 1, 2)", ns),
    ]
    if hasattr(g, "_call"):
        out.append(
            (
                "g._call(k, work, args, kwargs, None)  (do minus *args packing + 1 frame)",
                "g._call(k, work, args, kwargs, None)",
                ns,
            )
        )
    if hasattr(g, "_call_generic"):
        out.append(
            (
                "g._call_generic(...)  (_enter + _lead + _land, not inlined)",
                "g._call_generic(k, work, args, kwargs, None)",
                ns,
            )
        )
    if hasattr(g, "_enter") and hasattr(g, "_land"):
        out.append(
            ("g._enter + g._land  (no fn, no _lead frame)", "fl, _ = g._enter(k, me)\ng._land(fl, None, None)", ns)
        )
        out.append(
            (
                "g._enter + g._lead  (do minus get_ident, _call, do frames)",
                "fl, _ = g._enter(k, me)\ng._lead(fl, work, args, kwargs)",
                ns,
            )
        )
    try:
        from singleflight_sync._group import _Flight  # noqa: PLC0415 - private; may go away

        ns["_Flight"] = _Flight
        out.append(("_Flight(k, me)  (one flight object)", "_Flight(k, me)", ns))
    except ImportError:
        pass
    out.append(("prototype ProtoGroup.do  (flat frame, slotted flight)", "proto.do(k, work, 1, 2)", ns))
    out.append(("_ProtoFlight(k, me)", "_ProtoFlight(k, me)", {**ns, "_ProtoFlight": _ProtoFlight}))
    out.append(("prototype ProtoMarkerGroup.do  (flat frame, ident as marker)", "marker.do(k, work, 1, 2)", ns))
    out += [
        ("@singleflight f(1, 2)", "f(1, 2)", ns),
        ("@singleflight f(a=1, b=2)", "f(a=1, b=2)", ns),
    ]
    if hasattr(f, "_key"):
        out.append(("f._key(args, {})  (positional key)", "f._key(args, kwargs)", ns))
        out.append(("f._key((), kw)  (keyword key, current binder)", "f._key((), kw)", ns))
    out.append(("prototype keyword key via itemgetter", "kwkey((), kw)", ns))
    return out


def run(quick: bool) -> Table:
    number = 2_000 if quick else 10_000
    rounds = 3 if quick else 5
    timers = {label: timeit.Timer(stmt, globals=names) for label, stmt, names in cases()}
    floor_label = next(iter(timers))
    do_label = "Group.do(k, work, 1, 2)"
    ns, ratios = paired_timings(timers, [floor_label, do_label], number=number, rounds=rounds, best_of=3)
    table = Table("Pieces of an uncontended call", ["piece", "ns", "x floor", "x Group.do"])
    for label in timers:
        table.add(label, median(ns[label]), median(ratios[label][floor_label]), median(ratios[label][do_label]))
    table.footer = [
        "",
        f"each piece timed alternately with the floor and Group.do, best of 3 x {number:,} calls, per round;",
        f"{rounds} rounds; medians over rounds of ns and of ratios.",
    ]
    return table


def profile(calls: int) -> str:
    g: Any = Group()
    f: Any = singleflight(work)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        g.do("key", work, 1, 2)
        f(a=1, b=2)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_do", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cprofile", action="store_true", help="also print a cProfile of do() and a keyword call")
    args = parser.parse_args(argv)
    print("\n".join(environment()))
    print()
    print(run(args.quick).render())
    if args.cprofile:
        print()
        print(profile(20_000 if args.quick else 200_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
