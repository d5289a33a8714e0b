"""Play out the motivating case: 200 users open the trading screen at the same moment.

    python examples/price_service/run.py [--server gunicorn|waitress] [--requests 200] [--rate-limit 0]

Starts the fake exchange (100 ms per request), migrates and seeds a SQLite
database in a temporary directory, starts the Django price service under a
real WSGI server (gunicorn gthread or waitress, 32 threads, 127.0.0.1), fires
the same burst of simultaneous requests at the endpoints with and without
``@singleflight``, prints what happened, and stops everything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import exchange as exchange_mod
import harness


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["gunicorn", "waitress"], default="gunicorn")
    parser.add_argument("--requests", type=int, default=200, help="simultaneous requests per burst (default 200)")
    parser.add_argument("--threads", type=int, default=32, help="WSGI server threads (default 32)")
    parser.add_argument("--latency", type=float, default=0.1, help="exchange latency in seconds (default 0.1)")
    parser.add_argument("--rate-limit", type=int, default=0, help="exchange requests/s before 429 (default: none)")
    parser.add_argument("--symbol", default="BTCUSDT")
    args = parser.parse_args()

    exchange = exchange_mod.start_exchange(latency=args.latency, rate_limit=args.rate_limit)
    with tempfile.TemporaryDirectory(prefix="price-service-") as tmp:
        workdir = Path(tmp)
        db_path = workdir / "prices.sqlite3"
        print(
            f"exchange   {exchange.url}  latency {args.latency * 1000:.0f} ms, rate limit {args.rate_limit or 'none'}"
        )
        harness.setup_db(db_path)
        print(f"database   {db_path} (seeded)")
        try:
            with harness.start_app_server(
                args.server,
                workdir=workdir,
                exchange_url=exchange.url,
                db_path=db_path,
                threads=args.threads,
            ) as app:
                print(f"{args.server:<10} {app.url}  pid {app.pid}, {args.threads} threads")
                print()
                print(f"{args.requests} simultaneous GETs per line:")
                for path, what in [
                    (f"/price/{args.symbol}", "exchange calls"),
                    (f"/price-raw/{args.symbol}", "exchange calls"),
                    (f"/volume/{args.symbol}", "SQL queries"),
                    (f"/volume-raw/{args.symbol}", "SQL queries"),
                ]:
                    _burst(app, exchange, path, what, args.requests)
        finally:
            exchange_mod.stop_exchange(exchange)
    print()
    print("stopped the server and the exchange")
    return 0


def _burst(app: harness.AppServer, exchange: exchange_mod.Exchange, path: str, what: str, n: int) -> None:
    exchange.reset()
    harness.http_json(f"{app.url}/stats/reset", method="POST")
    result = harness.burst(app.url + path, n)
    seen = exchange.snapshot()
    _, stats = harness.http_json(f"{app.url}/stats")
    calls = seen["hits"] if what == "exchange calls" else stats["db_queries"]
    answers = {str(body.get("price", body.get("vwap"))) for status, body, _ in result.responses if status == 200}
    print(
        f"  GET {path:<20} {result.ok:>4} ok {result.errors:>4} errors  {calls:>4} {what:<15}"
        f"{len(answers)} distinct answer(s)  p50 {result.latency_ms(50):4.0f} ms  p99 {result.latency_ms(99):4.0f} ms"
        f"  wall {result.elapsed * 1000:4.0f} ms",
    )


if __name__ == "__main__":
    raise SystemExit(main())
