"""A. Uncontended call overhead, in ns per call, against the lock+dict floor.

Every case is a ``timeit`` statement on a trivial two-argument function. The
floor is the least any singleflight must do: put the key in a dict under a
lock, call the function, pop the key under the lock.
"""

# ruff: noqa: PLC0415 - the peers (and matplotlib) are optional: each is imported where it is used

from __future__ import annotations

import threading
import timeit
from typing import Any

from ._common import Table, median, paired_timings
from ._impls import Impl, cachetools_cached, implementations
from ._reference import ReferenceGroup


def work(a: Any, b: Any) -> Any:
    return a


FLOOR_STMT = """\
with lock:
    d[k] = x
work(1, 2)
with lock:
    d.pop(k)"""


def _group_case(make: Any) -> dict[str, str | dict[str, Any]]:
    return {"stmt": "g.do(k, work, 1, 2)", "ns": {"g": make(), "k": "key", "work": work}}


def _decorator_cases(decorate: Any) -> list[tuple[str, str, dict[str, Any]]]:
    ns = {"f": decorate(work)}
    return [("positional f(1, 2)", "f(1, 2)", ns), ("keyword f(a=1, b=2)", "f(a=1, b=2)", ns)]


def _builders() -> dict[str, Any]:
    """Impl name -> what to time for it: a group case or decorator cases."""

    def lib_group() -> Any:
        from singleflight_sync import Group

        return _group_case(Group)

    def lib_dec() -> Any:
        from singleflight_sync import singleflight

        return _decorator_cases(singleflight)

    def coalescer_group() -> Any:
        from coalescer.sync import Coalescer

        return _group_case(Coalescer)

    def coalescer_dec() -> Any:
        from coalescer.sync import coalesce

        return _decorator_cases(coalesce)

    def oneflight_group() -> Any:
        from oneflight import OneFlight

        return _group_case(OneFlight)

    def oneflight_dec() -> Any:
        from oneflight import singleflight

        return _decorator_cases(singleflight)

    def cc_dec() -> Any:
        from concurrent_coalesce import coalesce

        return _decorator_cases(coalesce())

    def cachetools_dec() -> Any:
        return _decorator_cases(lambda fn: cachetools_cached(fn, store=False))

    return {
        "singleflight_sync Group.do": lib_group,
        "singleflight_sync @singleflight": lib_dec,
        "reference (Future per call)": lambda: _group_case(ReferenceGroup),
        "coalescer Coalescer.do": coalescer_group,
        "coalescer @coalesce": coalescer_dec,
        "oneflight OneFlight.do": oneflight_group,
        "oneflight @singleflight": oneflight_dec,
        "concurrent_coalesce @coalesce": cc_dec,
        "cachetools @cached (maxsize=0)": cachetools_dec,
    }


class _Case:
    def __init__(self, label: str, stmt: str, ns: dict[str, Any], notes: str) -> None:
        self.label = label
        self.timer = timeit.Timer(stmt, globals=ns)
        self.notes = notes


def run(quick: bool) -> Table:
    number = 2_000 if quick else 10_000
    rounds = 3 if quick else 5
    best_of = 2 if quick else 3

    lock = threading.Lock()
    base_ns = {"work": work, "lock": lock, "d": {}, "k": "key", "x": None}
    cases = [
        _Case("plain call work(1, 2)", "work(1, 2)", base_ns, "no deduplication at all"),
        _Case("floor: lock+dict round trip", FLOOR_STMT, base_ns, "with lock: d[k]=x; work(1, 2); with lock: d.pop(k)"),
    ]
    missing: list[Impl] = []
    builders = _builders()
    for impl in implementations():
        if not impl.available:
            missing.append(impl)
            continue
        built = builders[impl.name]()
        if isinstance(built, dict):
            cases.append(_Case(impl.name, str(built["stmt"]), built["ns"], impl.notes))  # type: ignore[arg-type]
        else:
            for how, stmt, names in built:
                cases.append(_Case(f"{impl.name} {how}", stmt, names, impl.notes))

    floor_label = "floor: lock+dict round trip"
    do_label = "singleflight_sync Group.do"
    ref_label = "reference (Future per call)"
    by_label = {c.label: c for c in cases}
    baselines = [floor_label] + [label for label in (do_label, ref_label) if label in by_label]
    ns, ratios = paired_timings(
        {c.label: c.timer for c in cases}, baselines, number=number, rounds=rounds, best_of=best_of
    )
    do = by_label.get(do_label)
    ref = by_label.get(ref_label)

    def ratio(case: _Case, base: str) -> float:
        return median(ratios[case.label][base])

    table = Table(
        "A. Uncontended call overhead (one thread, same key every call)",
        ["case", "ns/call", "x floor", "x Group.do", "x reference", "notes"],
    )
    for case in cases:
        table.add(
            case.label,
            median(ns[case.label]),
            ratio(case, floor_label),
            ratio(case, do_label) if do else "n/a",
            ratio(case, ref_label) if ref else "n/a",
            case.notes,
        )
    for impl in missing:
        table.add(impl.name, "-", "-", "-", "-", f"NOT MEASURED: {impl.missing}")

    summary = {}
    if do is not None:
        summary["do/floor"] = ratio(do, floor_label)
        for how in ("positional f(1, 2)", "keyword f(a=1, b=2)"):
            dec = by_label.get(f"singleflight_sync @singleflight {how}")
            if dec is not None:
                summary[f"decorator {how.split()[0]}/do"] = ratio(dec, do_label)
    if ref is not None:
        summary["reference/floor"] = ratio(ref, floor_label)
    table.footer = [
        "",
        "ratios: "
        + ", ".join(f"{k} = {v:.2f}" for k, v in summary.items())
        + "   (targets: do/floor <= 1.5, decorator/do <= 2)",
        (
            f"method: per round, each case and the baselines (floor, Group.do, reference) are timed alternately, "
            f"best of {best_of} x {number:,} calls each; {rounds} rounds; medians over rounds of ns and of ratios."
        ),
    ]
    table.data = {
        "ns": {c.label: median(ns[c.label]) for c in cases},
        "x_floor": {c.label: ratio(c, floor_label) for c in cases},
        "summary": summary,
    }
    return table
