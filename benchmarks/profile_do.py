"""Where ``Group.do`` and the decorator spend their time, against the floor.

Run ``python -m benchmarks.profile_do [--quick] [--cprofile] [--py-spy]``. It
times the pieces of an uncontended call one by one (the private methods of the
current core, skipped where they no longer exist), then two prototypes of the
changes proposed in benchmarks/README.md, all as ratios to the lock+dict floor
measured in the same rounds. ``--cprofile`` adds a cProfile listing;
``--py-spy`` samples a loop of ``do()`` in a child process with py-spy (from
the ``bench`` extra; CPython builds with the GIL only) and shows the share of
samples on each line of ``do()``.

The prototypes are measurement aids for the uncontended path only: they are
not the library and carry no follower path worth the name.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import linecache
import operator
import pstats
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import timeit
from collections import Counter
from pathlib import Path
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
                "g._call(k, work, args, kwargs, None)  (general path: _enter + _lead + _land)",
                "g._call(k, work, args, kwargs, None)",
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
        out.append(("_Flight(k, me)  (one flight object, through __init__)", "_Flight(k, me)", ns))
        out.append(
            (
                "object.__new__(_Flight) + 2 stores  (what do() does)",
                "fl = object.__new__(_Flight)\nfl.key = k\nfl.owner = me",
                ns,
            )
        )
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
    out.append(("a keyword key by a bare itemgetter", "kwkey((), kw)", ns))
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


_SPY_LOOP = """\
from singleflight_sync import Group

def work(a, b):
    return a

do = Group().do
for _ in range(100_000_000):
    do("key", work, 1, 2)  # SPY-LOOP
"""


def spy(seconds: float) -> str:
    """Sample a loop of ``do()`` with py-spy; the share of samples per line of ``do()``."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return "py-spy: not installed (pip install -e '.[bench]')"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "py-spy: does not read free-threaded interpreters (yet); use --cprofile here"
    with tempfile.TemporaryDirectory() as tmp:
        loop, raw = Path(tmp, "spy_loop.py"), Path(tmp, "spy.txt")
        loop.write_text(_SPY_LOOP)
        cmd = [exe, "record", "--rate", "1000", "--duration", str(int(seconds)), "--format", "raw"]
        cmd += ["-o", str(raw), "--", sys.executable, str(loop)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 60)
        if not raw.exists():
            return f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        samples: Counter[tuple[str, str, int]] = Counter()
        total = 0
        for row in raw.read_text().splitlines():
            stack, _, count = row.rpartition(" ")
            frames = stack.split(";")
            if not any("spy_loop.py" in f and f.endswith(f":{_SPY_LINE})") for f in frames):
                continue  # start-up and imports
            name, _, where = frames[-1].rpartition(" (")
            path, _, line = where.rstrip(")").rpartition(":")
            samples[name, path, int(line)] += int(count)
            total += int(count)
    lines = [f"py-spy, {total:,} samples in the do() loop; share of samples by the line that was running:"]
    for (name, path, line), count in samples.most_common(24):
        if path.endswith("spy_loop.py"):
            text = "(the call into do(): argument packing, frame set-up)" if line == _SPY_LINE else "(work)"
        else:
            text = linecache.getline(path, line).strip()
        lines.append(f"  {100 * count / total:5.1f}%  {name:<12} {Path(path).name}:{line:<5} {text}")
    return "\n".join(lines)


_SPY_LINE = _SPY_LOOP.splitlines().index('    do("key", work, 1, 2)  # SPY-LOOP') + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_do", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cprofile", action="store_true", help="also print a cProfile of do() and a keyword call")
    parser.add_argument("--py-spy", action="store_true", help="also sample a do() loop with py-spy, by line")
    args = parser.parse_args(argv)
    print("\n".join(environment()))
    print()
    print(run(args.quick).render())
    if args.cprofile:
        print()
        print(profile(20_000 if args.quick else 200_000))
    if args.py_spy:
        print()
        print(spy(3 if args.quick else 10))
    return 0


if __name__ == "__main__":
    sys.exit(main())
