"""B. Backend executions for N concurrent identical calls.

N threads wait on a ``Barrier`` and then all call the same function with the
same key; the function sleeps 50 ms (a slow backend) and counts its runs.
Without deduplication it runs N times; with it, ideally once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ._common import Table, median, run_threads
from ._impls import implementations

SLEEP = 0.05


def _executions(n: int, bind: Any) -> int:
    count = 0
    count_lock = threading.Lock()

    def backend(key: Any) -> Any:
        nonlocal count
        with count_lock:
            count += 1
        time.sleep(SLEEP)
        return key

    if bind is None:  # no library: every caller hits the backend
        target, is_group = backend, False
    else:
        target, is_group, _ = bind(backend)
    barrier = threading.Barrier(n)

    def caller(_: int) -> None:
        barrier.wait()
        if is_group:
            target("key", backend, "key")
        else:
            target("key")

    run_threads(n, caller)
    return count


def run(quick: bool) -> Table:
    ns = (1, 10, 50, 200) if quick else (1, 10, 50, 100, 200)
    repeats = 1 if quick else 3
    # cachetools with maxsize=0 re-runs the function serially for every
    # follower: N x 50 ms. Measured only where that stays short.
    serial_cap = 10 if quick else 50

    impls = implementations(storing_cache=True)
    table = Table(
        f"B. Backend executions for N concurrent identical calls (fn sleeps {SLEEP * 1000:.0f} ms)",
        ["implementation", *[f"N={n}" for n in ns], "notes"],
    )
    series: dict[str, dict[int, float]] = {}
    rows: list[tuple[str, Any, str]] = [("no library (plain call)", None, "every caller runs the backend")]
    rows += [(i.name, i.bind, i.notes if i.available else f"NOT MEASURED: {i.missing}") for i in impls]
    for name, bind, notes in rows:
        if name != rows[0][0] and bind is None:
            table.add(name, *["-"] * len(ns), notes)
            continue
        cells: list[Any] = []
        for n in ns:
            if "maxsize=0" in name and n > serial_cap:
                cells.append("skipped")
                continue
            value = median([float(_executions(n, bind)) for _ in range(repeats)])
            series.setdefault(name, {})[n] = value
            cells.append(int(value) if value.is_integer() else value)
        table.add(name, *cells, notes)
    table.footer = [
        "",
        f"cells: median executions over {repeats} run(s). 'skipped': cachetools with maxsize=0 re-runs fn once per",
        f"follower, one after another (N x {SLEEP * 1000:.0f} ms), so it is measured only up to N={serial_cap}.",
        "More than 1 execution with a library means some threads arrived after the flight landed (scheduling on a",
        "loaded machine), not a lost deduplication: a late caller starts a new flight by design.",
    ]
    table.data = {"series": series, "ns": list(ns)}
    return table
