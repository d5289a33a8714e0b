"""200 threads ask for the same price at the same moment: without and with @singleflight.

Run it:  python examples/demo.py
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from singleflight_sync import singleflight

if TYPE_CHECKING:
    from collections.abc import Callable

CALLERS = 200
fetches = [0]  # how many times the "exchange" was called
fetches_lock = threading.Lock()  # protects fetches: 200 threads count into it


def fetch_from_exchange(symbol: str) -> float:
    with fetches_lock:
        fetches[0] += 1
    time.sleep(0.1)  # the simulated ~100 ms exchange call: the work itself, not synchronisation
    return {"BTCUSDT": 67_250.5}[symbol]


def get_price_plain(symbol: str) -> float:
    return fetch_from_exchange(symbol)


@singleflight
def get_price(symbol: str) -> float:
    return fetch_from_exchange(symbol)


def burst(fn: Callable[[str], float]) -> tuple[int, set[float]]:
    """Release CALLERS threads together into fn("BTCUSDT"); return (executions, distinct prices)."""
    start = threading.Barrier(CALLERS, timeout=30)
    prices: list[float] = []
    before = fetches[0]

    def caller() -> None:
        start.wait()
        prices.append(fn("BTCUSDT"))

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return fetches[0] - before, set(prices)


def main() -> None:
    def runs(n: int) -> str:
        return f"{n} execution" + ("" if n == 1 else "s")

    def seen(prices: set[float]) -> str:
        return f"every caller got the same price, {min(prices)}" if len(prices) == 1 else f"prices seen: {prices}"

    n, prices = burst(get_price_plain)
    print(f"without singleflight: {CALLERS} concurrent calls -> {runs(n)} of get_price; {seen(prices)}")
    per_burst = []
    for label in ("with singleflight:", "second burst:"):
        get_price.group.reset_stats()
        n, prices = burst(get_price)
        st = get_price.stats()  # the library's own counters; st.executions == n
        per_burst.append(st.executions)
        print(
            f"{label:<21} {st.calls} concurrent calls -> {runs(st.executions)}  "
            f"({st.shared} callers shared the leader's result); {seen(prices)}"
        )
    print(f"not a cache: the second burst ran get_price again ({per_burst[0]} + {per_burst[1]} executions)")


if __name__ == "__main__":
    main()
