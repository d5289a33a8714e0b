"""O. The cost of singleflight_sync.otel per uncontended flight.

    python -m benchmarks.bench_otel [--rounds 15] [--number 20000]

Interleaved rounds of one ``timeit`` statement, ``g.do(k, work, 1, 2)``, in
four states: never instrumented; instrumented with no SDK (the API's no-op
providers, what a process gets with only ``singleflight-sync[otel]``);
instrumented with the SDK and no exporter; and after ``uninstrument()``.
The first and last rows show that the module costs nothing when it is not
enabled; the ratios are to the first row, measured in the same run.
"""

# ruff: noqa: PLC0415 - OpenTelemetry is optional: imported where it is used

from __future__ import annotations

import argparse
import sys
import timeit
from typing import Any

from ._common import Table, environment, median


def work(a: Any, b: Any) -> Any:
    return a


def _time(number: int) -> float:
    from singleflight_sync import Group

    g: Group[str, Any] = Group()
    return timeit.timeit("g.do(k, work, 1, 2)", globals={"g": g, "k": "key", "work": work}, number=number) / number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args(argv)
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        sys.exit("needs opentelemetry-sdk: pip install -e '.[integration]'")
    from singleflight_sync import otel

    sdk = {"tracer_provider": TracerProvider(), "meter_provider": MeterProvider()}
    states: dict[str, Any] = {
        "not instrumented": None,
        "instrumented, no SDK (API no-op)": {},
        "instrumented, SDK, no exporter": sdk,
        "after uninstrument()": None,
    }
    samples: dict[str, list[float]] = {name: [] for name in states}
    for _ in range(args.rounds):
        for name, providers in states.items():
            if providers is not None:
                otel.instrument(**providers)
            try:
                samples[name].append(_time(args.number))
            finally:
                if providers is not None:
                    otel.uninstrument()
    base = median(samples["not instrumented"])
    table = Table("O. singleflight_sync.otel: uncontended do(), ns per flight", ["state", "ns", "x not instrumented"])
    for name, values in samples.items():
        m = median(values)
        table.add(name, round(m * 1e9), f"{m / base:.2f}x")
    print("\n".join(environment()))
    print(table.render())


if __name__ == "__main__":
    main()
