"""C. Throughput: 8 threads calling a trivial function over 1000 shared keys.

Each thread walks the 1000 keys in order from its own offset (thread i starts
at key i*125), so threads rarely collide on a key but sometimes do: the
follower path is exercised too. Every implementation runs for the same time,
in interleaved rounds, and is reported in calls/s and as a ratio to the
reference singleflight measured in the same round.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ._common import Table, median, run_threads
from ._impls import Bound, Impl, implementations

THREADS = 8
KEYS = 1000


def work(key: Any) -> Any:
    return key


def calls_per_second(bind: Any, threads: int, duration: float, keys_for: Any) -> float:
    """Run ``threads`` threads calling through ``bind(work)`` for ``duration`` s; return calls/s."""
    target, is_group, _ = bind(work)
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    stop = 0.0

    def loop(i: int) -> None:
        keys = keys_for(i)
        barrier.wait()
        n = 0
        while time.perf_counter() < stop:
            if is_group:
                for k in keys:
                    target(k, work, k)
            else:
                for k in keys:
                    target(k)
            n += len(keys)
        counts[i] = n

    runner = threading.Thread(target=run_threads, args=(threads, loop), daemon=True)
    runner.start()
    # All workers are at the barrier once it has ``threads`` waiting; set the
    # deadline before letting them (and the clock) go.
    while barrier.n_waiting < threads:
        time.sleep(0.001)
    start = time.perf_counter()
    stop = start + duration
    barrier.wait()
    runner.join()
    elapsed = time.perf_counter() - start
    return sum(counts) / elapsed


class FloorGroup:
    """The floor as a group: lock + dict in, the call, lock + dict out. Not a singleflight.

    It bounds what any design that takes one lock on the way in and one on the
    way out can reach in this benchmark.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # protects _keys
        self._keys: dict[Any, int] = {}

    def do(self, key: Any, fn: Any, /, *args: Any) -> Any:
        with self._lock:
            self._keys[key] = 1
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._keys.pop(key, None)


FLOOR = Impl(
    "floor: lock+dict in, call, out",
    "baseline",
    "NOT a singleflight: the bound for any design with a lock on the way in and out",
    lambda fn: Bound(FloorGroup().do, True, lambda: 0),
)


def shared_keys(i: int) -> list[int]:
    offset = i * (KEYS // THREADS)
    return [(offset + j) % KEYS for j in range(KEYS)]


def run(quick: bool) -> Table:
    duration = 0.25 if quick else 2.0
    rounds = 1 if quick else 3
    impls = [FLOOR, *(i for i in implementations() if i.available)]
    missing = [i for i in implementations() if not i.available]
    results: dict[str, list[float]] = {i.name: [] for i in impls}
    for r in range(rounds):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            results[impl.name].append(calls_per_second(impl.bind, THREADS, duration, shared_keys))

    ref = results.get("reference (Future per call)")
    floor = results[FLOOR.name]
    table = Table(
        f"C. Throughput: {THREADS} threads x {KEYS} keys, trivial fn, {duration:g} s per run",
        ["implementation", "calls/s", "x floor", "x reference", "notes"],
    )
    ratios: dict[str, float] = {}
    for impl in impls:
        per_round = results[impl.name]
        ratio = median([a / b for a, b in zip(per_round, ref, strict=True)]) if ref else float("nan")
        ratios[impl.name] = ratio
        of_floor = median([a / b for a, b in zip(per_round, floor, strict=True)])
        table.add(impl.name, median(per_round), of_floor, ratio, impl.notes)
    for impl in missing:
        table.add(impl.name, "-", "-", "-", f"NOT MEASURED: {impl.missing}")
    table.footer = [
        "",
        f"method: {rounds} interleaved round(s); calls/s and ratios are medians over rounds; each ratio is taken",
        "against the floor's and the reference's runs in the same round. Every key is mostly uncontended",
        f"({THREADS} threads, {KEYS} keys). Higher is better; the floor bounds any lock-in/lock-out design.",
    ]
    table.data = {"calls": {k: median(v) for k, v in results.items()}, "x_ref": ratios}
    return table
