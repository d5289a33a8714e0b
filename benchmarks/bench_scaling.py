"""F. Scaling: throughput with 1 and with 2 threads, each thread on its own keys.

With the GIL, 2 threads cannot beat 1 (ratio <= 1). On a free-threaded build
(3.13t) a ratio near 2 means the implementation's lock and data are not a
bottleneck. The machine has 2 cores shared with other work, so read the
ratio against the floor's (a lock + dict round trip), measured alike.
"""

from __future__ import annotations

import threading
from typing import Any

from ._common import Table, free_threaded_build, gil_enabled, median
from ._impls import Bound, Impl, implementations
from .bench_throughput import calls_per_second

KEYS = 1000


def _floor_bind(fn: Any) -> Bound:
    lock = threading.Lock()
    d: dict[Any, Any] = {}

    def floor(key: Any) -> Any:
        with lock:
            d[key] = None
        value = fn(key)
        with lock:
            d.pop(key)
        return value

    return Bound(floor, False, None)


def _plain_bind(fn: Any) -> Bound:
    return Bound(fn, False, None)


STRIPES = 16


def _striped_floor_bind(fn: Any) -> Bound:
    locks = [threading.Lock() for _ in range(STRIPES)]
    maps: list[dict[Any, Any]] = [{} for _ in range(STRIPES)]

    def floor(key: Any) -> Any:
        i = hash(key) % STRIPES
        lock, d = locks[i], maps[i]
        with lock:
            d[key] = None
        value = fn(key)
        with lock:
            d.pop(key)
        return value

    return Bound(floor, False, None)


def distinct_keys(i: int) -> list[tuple[int, int]]:
    return [(i, j) for j in range(KEYS)]


def run(quick: bool) -> Table:
    duration = 0.2 if quick else 1.0
    rounds = 1 if quick else 3
    baselines = [
        Impl("plain call (no lock)", "baseline", "what the machine gives 2 threads", _plain_bind),
        Impl("floor: lock+dict round trip", "baseline", "one shared lock, like every implementation here", _floor_bind),
        Impl(f"floor, {STRIPES} striped locks", "baseline", "lock and dict chosen by hash(key)", _striped_floor_bind),
    ]
    impls = [*baselines, *[i for i in implementations() if i.available]]
    one: dict[str, list[float]] = {i.name: [] for i in impls}
    two: dict[str, list[float]] = {i.name: [] for i in impls}
    for r in range(rounds):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            one[impl.name].append(calls_per_second(impl.bind, 1, duration, distinct_keys))
            two[impl.name].append(calls_per_second(impl.bind, 2, duration, distinct_keys))

    build = "free-threaded, GIL disabled" if free_threaded_build() and not gil_enabled() else "GIL"
    table = Table(
        f"F. Scaling on distinct keys: 1 vs 2 threads ({build})",
        ["implementation", "1 thread calls/s", "2 threads calls/s", "2T / 1T"],
    )
    scale: dict[str, float] = {}
    for impl in impls:
        ratio = median([b / a for a, b in zip(one[impl.name], two[impl.name], strict=True)])
        scale[impl.name] = ratio
        table.add(impl.name, median(one[impl.name]), median(two[impl.name]), ratio)
    for impl in implementations():
        if not impl.available:
            table.add(impl.name, "-", "-", "-")
    table.footer = [
        "",
        f"method: {rounds} interleaved round(s) of {duration:g} s per thread count; 2T/1T is the median of per-round",
        "ratios. Ideal is 2.0 without a GIL; with the GIL it is at most 1.0. 'plain call' shows how much of a",
        "second core the machine gave; every implementation (and the floor) serialises on one lock per group.",
    ]
    table.data = {"scale": scale}
    return table
