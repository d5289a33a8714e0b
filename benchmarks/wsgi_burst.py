"""Bursts of simultaneous requests against the Django price service under gunicorn and waitress.

    python benchmarks/wsgi_burst.py [--requests 200] [--repeat 3] [--rate-limit 20] [--servers gunicorn,waitress]

For each server (32 threads, 1 process) and each upstream (plain, then rate
limited to ``--rate-limit`` requests/s, where a 429 becomes a 502 from the
service), it fires ``--requests`` simultaneous GETs at ``/price/BTCUSDT``
(``@singleflight``) and at ``/price-raw/BTCUSDT`` (the same call without it),
``--repeat`` times each, and prints one table: requests per second over the
burst, p50 and p99 latency, upstream calls per burst and errors per burst.

The load comes from a separate process (this script with ``--load URL``):
200 threads released by a Barrier, urllib, one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "price_service"))

import exchange as exchange_mod
import harness

SYMBOL = "BTCUSDT"


def load(url: str, requests: int) -> None:
    """The load generator process: one warm-up request, one burst, one JSON line."""
    # A fresh process imports and builds urllib's machinery lazily, on the first request. 200 threads
    # doing that at once took 7-10 s on free-threaded 3.13 (0.5 s once warm): warm up on /healthz.
    origin = urllib.parse.urlsplit(url)
    harness.http_json(f"{origin.scheme}://{origin.netloc}/healthz")
    result = harness.burst(url, requests, timeout=60)
    latencies = sorted(seconds for _, _, seconds in result.responses)
    print(json.dumps({"elapsed": result.elapsed, "ok": result.ok, "errors": result.errors, "latencies": latencies}))


def run_load(url: str, requests: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--load", url, "--requests", str(requests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def per_burst(total: int, repeat: int) -> str:
    return str(total // repeat) if total % repeat == 0 else f"{total / repeat:.1f}"


def percentile(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rate-limit", type=int, default=20)
    parser.add_argument("--servers", default="gunicorn,waitress")
    args = parser.parse_args()
    if args.load:
        load(args.load, args.requests)
        return 0

    servers = args.servers.split(",")
    for kind in servers:
        if kind not in {"gunicorn", "waitress"}:
            parser.error(f"--servers takes gunicorn and/or waitress, not {kind!r}")
    rows = []
    exchange = exchange_mod.start_exchange(latency=args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="wsgi-burst-") as tmp:
            db_path = Path(tmp) / "prices.sqlite3"
            harness.setup_db(db_path)
            for kind in servers:
                with harness.start_app_server(
                    kind,
                    workdir=Path(tmp) / kind,
                    exchange_url=exchange.url,
                    db_path=db_path,
                    threads=args.threads,
                ) as app:
                    for limit in (0, args.rate_limit):
                        for path, mode in ((f"/price/{SYMBOL}", "yes"), (f"/price-raw/{SYMBOL}", "no")):
                            rows.append(bench(app, exchange, path, kind=kind, limit=limit, mode=mode, args=args))
    finally:
        exchange_mod.stop_exchange(exchange)

    print(
        f"Python {platform.python_version()} ({sys.implementation.name}"
        f"{', free-threaded' if not getattr(sys, '_is_gil_enabled', lambda: True)() else ''}), "
        f"{args.requests} simultaneous requests x {args.repeat}, {args.threads} server threads, "
        f"exchange latency {args.latency * 1000:.0f} ms, load average {os.getloadavg()[0]:.1f}",
    )
    header = ["server", "upstream", "singleflight", "req/s", "p50 ms", "p99 ms", "upstream calls", "errors"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 0


def bench(
    app: harness.AppServer,
    exchange: exchange_mod.Exchange,
    path: str,
    *,
    kind: str,
    limit: int,
    mode: str,
    args: argparse.Namespace,
) -> list[str]:
    latencies: list[float] = []
    elapsed = 0.0
    calls = errors = 0
    with exchange.lock:
        exchange.rate_limit = limit
    for _ in range(args.repeat):
        exchange.reset()  # also empties the rate-limit window: each burst starts fresh
        result = run_load(app.url + path, args.requests)
        latencies.extend(result["latencies"])
        elapsed += result["elapsed"]
        errors += result["errors"]
        calls += exchange.snapshot()["hits"]
    latencies.sort()
    return [
        kind,
        f"{limit} req/s limit" if limit else "plain",
        mode,
        f"{args.requests * args.repeat / elapsed:.0f}",
        f"{percentile(latencies, 50) * 1000:.0f}",
        f"{percentile(latencies, 99) * 1000:.0f}",
        per_burst(calls, args.repeat),
        per_burst(errors, args.repeat),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
