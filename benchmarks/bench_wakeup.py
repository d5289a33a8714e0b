"""D. Wake-up latency: 200 followers blocked on one key, then the leader returns.

The leader's function holds until every follower has joined (the
implementation's own count), then records the time and returns. Each
follower records the time its call returns. The figure is the time from the
leader's return to the last follower's return. Only implementations that can
tell how many followers joined are measured (the library and the reference);
for the others the leader could not know when everyone waits.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ._common import Table, median, run_threads
from ._impls import implementations

FOLLOWERS = 200
GRACE = 0.02  # after the last join, time for the last joiner to block in its wait


def wakeup(bind: Any, followers: int) -> float:
    """Seconds from the leader's return to the last follower's return."""
    released = 0.0
    leader_in = threading.Event()
    joined_probe: Any = None

    def leader_fn(key: Any) -> Any:
        nonlocal released
        leader_in.set()
        deadline = time.perf_counter() + 60
        while joined_probe() < followers:
            if time.perf_counter() > deadline:
                msg = "followers did not join within 60 s"
                raise RuntimeError(msg)
            time.sleep(0.001)
        time.sleep(GRACE)
        released = time.perf_counter()
        return key

    target, is_group, joined_probe = bind(leader_fn)
    returned = [0.0] * followers

    def call() -> None:
        if is_group:
            target("key", leader_fn, "key")
        else:
            target("key")

    def follower(i: int) -> None:
        call()
        returned[i] = time.perf_counter()

    lead = threading.Thread(target=call, daemon=True)
    lead.start()
    leader_in.wait()
    run_threads(followers, follower)
    lead.join()
    return max(returned) - released


def run(quick: bool) -> Table:
    repeats = 3 if quick else 9
    impls = [i for i in implementations() if i.available]
    measured = []
    for impl in impls:
        probe = impl.bind(lambda k: k)  # type: ignore[misc]
        if probe.joined is not None:
            measured.append(impl)
    results: dict[str, list[float]] = {i.name: [] for i in measured}
    for r in range(repeats):
        for impl in measured if r % 2 == 0 else measured[::-1]:
            results[impl.name].append(wakeup(impl.bind, FOLLOWERS))

    ref = results.get("reference (Future per call)")
    table = Table(
        f"D. Wake-up latency: leader returns -> last of {FOLLOWERS} followers returns",
        ["implementation", "median ms", "min ms", "max ms", "x reference"],
    )
    for impl in measured:
        ms = [v * 1000 for v in results[impl.name]]
        ratio = median([a / b for a, b in zip(results[impl.name], ref, strict=True)]) if ref else "n/a"
        table.add(impl.name, median(ms), min(ms), max(ms), ratio)
    for impl in implementations():
        if impl not in measured:
            table.add(impl.name, "-", "-", "-", "-")
    table.footer = [
        "",
        f"method: {repeats} interleaved runs; the leader waits until the implementation counts {FOLLOWERS} joined",
        f"followers, then {GRACE * 1000:.0f} ms more so the last ones block; ratio = median of per-run ratios.",
        "On 2 shared cores this is dominated by waking 200 threads through the scheduler.",
        "'-': not measured, the implementation has no count of joined followers (or is not installed).",
    ]
    table.data = {"ms": {k: median(v) * 1000 for k, v in results.items()}}
    return table
