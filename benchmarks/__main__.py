"""Run the benchmarks: ``python -m benchmarks [--quick] [NAME ...]`` from the repository root."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from ._chart import save_data, write_chart
from ._common import environment, pyver_tag

# letter -> (module, short name, what it measures)
BENCHMARKS = {
    "A": ("bench_overhead", "overhead", "uncontended call overhead vs the lock+dict floor"),
    "B": ("bench_executions", "executions", "backend executions for N concurrent identical calls"),
    "C": ("bench_throughput", "throughput", "8 threads x 1000 keys, calls/s"),
    "D": ("bench_wakeup", "wakeup", "leader return -> last of 200 followers returns"),
    "E": ("bench_memory", "memory", "tracemalloc bytes per in-flight key; no leak after many flights"),
    "F": ("bench_scaling", "scaling", "1 vs 2 threads on distinct keys (free-threading)"),
}
RESULTS = Path(__file__).resolve().parent / "results"


def _select(names: list[str]) -> list[str]:
    if not names:
        return list(BENCHMARKS)
    chosen = []
    for name in names:
        for letter, (_, short, _) in BENCHMARKS.items():
            if name.upper() == letter or name.lower() == short:
                chosen.append(letter)
                break
        else:
            valid = ", ".join(f"{k}/{v[1]}" for k, v in BENCHMARKS.items())
            msg = f"unknown benchmark {name!r}; choose from {valid}"
            raise SystemExit(msg)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of singleflight_sync: " + "; ".join(f"{k} {v[1]}" for k, v in BENCHMARKS.items()),
    )
    parser.add_argument("names", nargs="*", help="benchmarks to run, by letter or name (default: all)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: few seconds, rough figures")
    parser.add_argument(
        "--save",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write results/latest-<pyver>.txt/.json and redraw results/chart.png (default: on for a full run of all)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for letter, (_, short, what) in BENCHMARKS.items():
            print(f"{letter}  {short:<11} {what}")
        return 0
    chosen = _select(args.names)
    save = args.save if args.save is not None else (not args.quick and not args.names)

    header = environment()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header.append(f"run: {'--quick ' if args.quick else ''}{' '.join(chosen)}; {when}")
    print("\n".join(header), flush=True)
    out = ["\n".join(header)]
    tables = {}
    for letter in chosen:
        module = importlib.import_module(f"benchmarks.{BENCHMARKS[letter][0]}")
        started = time.perf_counter()
        table = module.run(args.quick)
        took = time.perf_counter() - started
        text = f"{table.render()}\n({took:.1f} s)"
        print(f"\n{text}", flush=True)
        out.append(text)
        tables[letter] = table

    if save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"latest-{pyver_tag()}.txt"
        path.write_text("\n\n".join(out) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")
        save_data(path.with_suffix(".json"), header, {k: t.data for k, t in tables.items()})
        print(write_chart(RESULTS, RESULTS / "chart.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
