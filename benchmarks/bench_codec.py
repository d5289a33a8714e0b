"""Does a faster codec earn its place? RedisGroup's JsonSerializer against orjson and msgspec.

    python benchmarks/bench_codec.py

Times ``dumps`` + ``loads`` of typical results (medians of interleaved runs)
and prints them next to a Redis round trip on this machine (from
SINGLEFLIGHT_REDIS_URL, if set), since a flight pays at least two. orjson and
msgspec are measured when installed (``pip install orjson msgspec``); they
are plain JSON: they do not check that a value comes back exactly (tuples
become lists, int keys become strings), which JsonSerializer does.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import statistics
import sys
import time
from typing import Any

from singleflight_sync.redis import JsonSerializer

VALUES: dict[str, Any] = {
    "price quote": {"symbol": "BTCUSDT", "price": "97000.50", "quote_id": 123456, "ts": 1733300000.25},
    "user profile": {
        "id": 42,
        "name": "Ada",
        "roles": ["admin", "ops"],
        "created": dt.datetime(2026, 12, 4, 6, 0, tzinfo=dt.timezone.utc),
        "balance": decimal.Decimal("1234.56"),
        "limits": (10, 20, 30),
    },
    "100 rows": [{"id": i, "sku": f"SKU-{i}", "qty": i % 7, "price": i * 1.25} for i in range(100)],
    "1,000 rows": [{"id": i, "sku": f"SKU-{i}", "qty": i % 7, "price": i * 1.25} for i in range(1000)],
}


def _codecs() -> dict[str, tuple[Any, Any]]:
    ours = JsonSerializer()
    codecs: dict[str, tuple[Any, Any]] = {"JsonSerializer (exact)": (ours.dumps, ours.loads)}
    try:
        import orjson  # noqa: PLC0415 - optional

        codecs["orjson (plain JSON)"] = (
            lambda v: orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS),
            orjson.loads,
        )
    except ImportError:
        pass
    try:
        import msgspec  # noqa: PLC0415 - optional

        enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder()
        codecs["msgspec (plain JSON)"] = (enc.encode, dec.decode)
    except ImportError:
        pass
    return codecs


def _time(dumps: Any, loads: Any, value: Any, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        loads(dumps(value))
    return (time.perf_counter() - start) / loops


def _rtt() -> float | None:
    url = os.environ.get("SINGLEFLIGHT_REDIS_URL")
    if not url:
        return None
    import redis  # noqa: PLC0415 - optional

    client = redis.Redis.from_url(url)
    samples = []
    for _ in range(2000):
        t0 = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - t0)
    client.close()
    return statistics.median(samples)


def main() -> None:
    codecs = _codecs()
    rtt = _rtt()
    print(f"Python {sys.version.split()[0]}; dumps + loads per value, median of 7 interleaved runs")
    if rtt is not None:
        print(f"Redis round trip (PING): {rtt * 1e6:.0f} us; an uncontended flight costs 2")
    names = list(codecs)
    print(f"{'value':<14} " + " ".join(f"{n:>24}" for n in names))
    for label, value in VALUES.items():
        loops = 20 if "1,000" in label else 300
        runs: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(7):
            for n in names:
                runs[n].append(_time(*codecs[n], value, loops))
        ours = statistics.median(runs[names[0]])
        cells = []
        for n in names:
            t = statistics.median(runs[n])
            cells.append(f"{t * 1e6:>10.1f} us ({t / ours:>5.2f}x)")
        print(f"{label:<14} " + " ".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
