"""E. Memory: tracemalloc bytes per in-flight key, and no growth after many flights.

Per key: K leader threads each hold a distinct key in flight (blocked inside
the function on an Event); the traced memory then is compared with the same
threads blocked in a plain call of the same function, so thread and frame
costs cancel and what remains is the implementation's bookkeeping. With
followers: each key also has 10 threads waiting on it (only measurable where
the implementation can tell that they joined).

Leak check: many flights over random keys from 4 threads, then the traced
memory is compared with before (after ``gc.collect()``).
"""

from __future__ import annotations

import gc
import random
import threading
import time
import tracemalloc
from typing import Any

from ._common import Table, median, run_threads
from ._impls import implementations

KEYS_ALONE = 100
KEYS_SHARED = 20
FOLLOWERS = 10


def _held_bytes(bind: Any, keys: int, followers: int) -> int:
    """Traced bytes while ``keys`` flights (each with ``followers`` waiters) are held in flight."""
    release = threading.Event()
    inside = threading.Semaphore(0)

    def fn(key: Any) -> Any:
        inside.release()
        release.wait()
        return key

    if bind is None:
        target, is_group, joined = fn, False, None
    else:
        target, is_group, joined = bind(fn)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]

        def call(key: int) -> None:
            if is_group:
                target(key, fn, key)
            else:
                target(key)

        leaders = [threading.Thread(target=call, args=(k,), daemon=True) for k in range(keys)]
        for t in leaders:
            t.start()
        for _ in range(keys):
            inside.acquire()
        extra: list[threading.Thread] = []
        if followers:
            if bind is None:
                # The baseline: the same number of threads, blocked in a plain call.
                extra = [threading.Thread(target=call, args=(k,), daemon=True) for k in range(keys * followers)]
                for t in extra:
                    t.start()
                for _ in range(keys * followers):
                    inside.acquire()
            else:
                extra = [
                    threading.Thread(target=call, args=(k,), daemon=True) for k in range(keys) for _ in range(followers)
                ]
                for t in extra:
                    t.start()
                deadline = time.perf_counter() + 60
                while joined() < keys * followers:  # type: ignore[misc]
                    if time.perf_counter() > deadline:
                        msg = "followers did not join within 60 s"
                        raise RuntimeError(msg)
                    time.sleep(0.002)
                time.sleep(0.05)  # let the last joiners block in their wait
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        release.set()
        for t in [*leaders, *extra]:
            t.join()
        tracemalloc.stop()
    return held


def _leak_check(bind: Any, flights: int) -> tuple[int, int, int, int, int]:
    """Traced bytes around ``flights`` calls on random keys, in two halves.

    Returns (before, after the first half, after the second half, peak,
    executions). A leak grows in both halves alike; caches filled once do not.
    """
    executed = 0
    count_lock = threading.Lock()

    def fn(key: Any) -> Any:
        nonlocal executed
        with count_lock:
            executed += 1
        return key

    target, is_group, _ = bind(fn)
    threads = 4
    per_thread = flights // threads // 2

    def half(seed: int) -> None:
        barrier = threading.Barrier(threads)

        def loop(i: int) -> None:
            rnd = random.Random(seed * threads + i)
            keys = [rnd.randrange(1000) for _ in range(per_thread)]
            barrier.wait()
            if is_group:
                for k in keys:
                    target(k, fn, k)
            else:
                for k in keys:
                    target(k)

        run_threads(threads, loop, timeout=600)
        gc.collect()

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        half(0)
        first = tracemalloc.get_traced_memory()[0]
        half(1)
        second, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return before, first, second, peak, executed


def run(quick: bool) -> Table:
    repeats = 1 if quick else 3
    flights = 20_000 if quick else 1_000_000
    impls = [i for i in implementations() if i.available]

    def per_key(bind: Any, keys: int, followers: int) -> float:
        vals = []
        for _ in range(repeats):
            plain = _held_bytes(None, keys, followers)
            lib = _held_bytes(bind, keys, followers)
            vals.append((lib - plain) / keys)
        return median(vals)

    table = Table(
        "E. Memory: tracemalloc bytes per in-flight key (vs the same threads in a plain call)",
        ["implementation", "B/key alone", f"B/key +{FOLLOWERS} followers", "B/follower"],
    )
    for impl in impls:
        alone = per_key(impl.bind, KEYS_ALONE, 0)
        if impl.bind(lambda k: k).joined is not None:  # type: ignore[misc]
            shared = per_key(impl.bind, KEYS_SHARED, FOLLOWERS)
            table.add(impl.name, alone, shared, (shared - alone) / FOLLOWERS)
        else:
            table.add(impl.name, alone, "n/a", "n/a")
    table.footer = [
        "",
        (
            f"method: {KEYS_ALONE} keys held by {KEYS_ALONE} blocked leaders; {KEYS_SHARED} keys with "
            f"{FOLLOWERS} followers each; minus the same thread count blocked in a plain call; median of {repeats}."
        ),
        "n/a: the implementation has no count of joined followers, so the benchmark cannot know they all wait.",
        "",
    ]

    leak = Table(
        f"E2. Traced memory around {flights:,} flights on random keys (4 threads, 1000-key space)",
        [
            "implementation",
            "before B",
            "after 1st half B",
            "after 2nd half B",
            "growth in 2nd half B",
            "peak B",
            "executions",
        ],
    )
    for impl in impls:
        if impl.kind == "peer":
            continue
        before, first, second, peak, executed = _leak_check(impl.bind, flights)
        leak.add(impl.name, before, first, second, second - first, peak, executed)
    leak.footer = [
        "",
        "A leak grows with the number of flights: the 2nd half would add what the 1st did. A few hundred bytes that",
        "stay after the 1st half and do not grow are interpreter caches. Peak includes the lists of random keys",
        "(~7 MB per 250,000 keys). executions < flights means some calls joined a running flight.",
    ]
    table.footer.append(leak.render())
    table.data = {"leak": leak.rows}
    return table
