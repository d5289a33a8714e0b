"""Play out the motivating case: 200 users open the trading screen at the same moment.

    python examples/price_service/run.py [--server gunicorn|waitress] [--requests 200] [--rate-limit 0]
    python examples/price_service/run.py --workers 4 [--redis redis://127.0.0.1:6379/0]

Starts the fake exchange (100 ms per request), migrates and seeds a SQLite
database in a temporary directory, starts the Django price service under a
real WSGI server (gunicorn gthread or waitress, 32 threads, 127.0.0.1), fires
the same burst of simultaneous requests at the endpoints with and without
``@singleflight``, prints what happened, and stops everything.

With ``--workers N`` (gunicorn, N processes) or ``--redis URL`` the burst
also goes to ``/price-redis/``, whose flights every worker process shares
through a ``RedisGroup``: without ``--redis`` a private redis-server is
started on 127.0.0.1 (Debian's ``redis-server`` package) and stopped after.
Each line reports the exchange calls, distinct answers (quotes) and latency.
With Redis, four more bursts go to the cached quotes (``SingleFlightCache``
around Django's ``RedisCache``): ``/price-cached/`` fresh, then expired (one
rebuild per process, requests wait), and ``/price-swr/`` fresh, then stale
(one background refresh for every process, requests do not wait).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import exchange as exchange_mod
import harness

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["gunicorn", "waitress"], default="gunicorn")
    parser.add_argument("--requests", type=int, default=200, help="simultaneous requests per burst (default 200)")
    parser.add_argument("--threads", type=int, default=32, help="WSGI server threads (default 32)")
    parser.add_argument("--latency", type=float, default=0.1, help="exchange latency in seconds (default 0.1)")
    parser.add_argument("--rate-limit", type=int, default=0, help="exchange requests/s before 429 (default: none)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes (default 1)")
    parser.add_argument("--redis", default="", help="Redis URL for /price-redis/ (default: start a private one)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and args.server != "gunicorn":
        parser.error("--workers needs --server gunicorn: waitress serves from one process")
    with _redis_for(args) as redis_url:
        return _play(args, redis_url)


@contextlib.contextmanager
def _redis_for(args: argparse.Namespace) -> Iterator[str]:
    """The Redis URL for /price-redis/: --redis, a private redis-server with --workers above 1, or none."""
    if args.redis or args.workers == 1:
        yield args.redis
        return
    binary = shutil.which("redis-server")
    if binary is None:
        print("no redis-server on PATH (apt install redis-server) and no --redis URL: skipping /price-redis/")
        yield ""
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # until it answers PING
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                msg = f"redis-server did not start on port {port}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        print(f"redis      redis://127.0.0.1:{port}/0  private redis-server, pid {server.pid}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def _play(args: argparse.Namespace, redis_url: str) -> int:
    exchange = exchange_mod.start_exchange(latency=args.latency, rate_limit=args.rate_limit)
    with tempfile.TemporaryDirectory(prefix="price-service-") as tmp:
        workdir = Path(tmp)
        db_path = workdir / "prices.sqlite3"
        print(
            f"exchange   {exchange.url}  latency {args.latency * 1000:.0f} ms, rate limit {args.rate_limit or 'none'}"
        )
        harness.setup_db(db_path)
        print(f"database   {db_path} (seeded)")
        prefix = f"price-service-demo-{uuid.uuid4().hex[:8]}"  # this run's cache keys, in a Redis that may be shared
        try:
            with harness.start_app_server(
                args.server,
                workdir=workdir,
                exchange_url=exchange.url,
                db_path=db_path,
                threads=args.threads,
                workers=args.workers,
                env={"PRICE_SERVICE_REDIS_URL": redis_url, "PRICE_SERVICE_CACHE_PREFIX": prefix},
            ) as app:
                processes = f"{args.workers} worker processes x " if args.workers > 1 else ""
                print(f"{args.server:<10} {app.url}  pid {app.pid}, {processes}{args.threads} threads")
                print()
                print(f"{args.requests} simultaneous GETs per line:")
                lines = [
                    (f"/price-raw/{args.symbol}", "exchange calls"),  # no dedupe
                    (f"/price/{args.symbol}", "exchange calls"),  # @singleflight, per process
                ]
                if redis_url:
                    lines.append((f"/price-redis/{args.symbol}", "exchange calls"))  # RedisGroup, across processes
                if args.workers == 1:  # the SQL counter is per process
                    lines += [(f"/volume/{args.symbol}", "SQL queries"), (f"/volume-raw/{args.symbol}", "SQL queries")]
                for path, what in lines:
                    _burst(app, exchange, path, what, args.requests)
                if redis_url:
                    _cached(app, exchange, redis_url, prefix, args)
        finally:
            exchange_mod.stop_exchange(exchange)
    print()
    print("stopped the server and the exchange")
    return 0


def _cached(
    app: harness.AppServer, exchange: exchange_mod.Exchange, redis_url: str, prefix: str, args: argparse.Namespace
) -> None:
    """A cached quote under a burst: fresh, then expired without REFRESH_AFTER, then stale with it."""
    print()
    print(f"{args.requests} simultaneous GETs at a cached quote (SingleFlightCache around Django's RedisCache):")
    n, symbol = args.requests, args.symbol
    for alias, path in (("blocking", f"/price-cached/{symbol}"), ("swr", f"/price-swr/{symbol}")):
        key = harness.cached_quote_key(alias, symbol, prefix=prefix)
        harness.http_json(app.url + path)  # cached by this one request
        _burst(app, exchange, path, "exchange calls", n, note="fresh: every request is a hit")
        if alias == "blocking":
            # Expired: Redis has dropped the key. Each process rebuilds it once, and its requests wait.
            harness.delete_cached(redis_url, key)
            _burst(app, exchange, path, "exchange calls", n, note="expired: one rebuild per process, requests wait")
            continue
        # Stale: aged past REFRESH_AFTER in Redis instead of waiting for it. Every request gets the
        # stale quote at once (or the new one, once it lands); one refresh runs for every process.
        aged = harness.age_cached(redis_url, key, 20.0)

        def refreshed(key: str = key, created: float = aged["created"]) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                entry = harness.read_cached(redis_url, key)
                if entry is not None and entry["created"] > created:
                    return
                time.sleep(0.02)

        _burst(app, exchange, path, "exchange calls", n, note="stale: one refresh in the background", settle=refreshed)


def _burst(  # noqa: PLR0913  (the last two are the cached lines' own)
    app: harness.AppServer,
    exchange: exchange_mod.Exchange,
    path: str,
    what: str,
    n: int,
    *,
    note: str = "",
    settle: Callable[[], None] | None = None,
) -> None:
    exchange.reset()
    harness.http_json(f"{app.url}/stats/reset", method="POST")
    result = harness.burst(app.url + path, n)
    if settle is not None:
        settle()  # a background refresh still running: count its exchange call too
    seen = exchange.snapshot()
    _, stats = harness.http_json(f"{app.url}/stats")
    calls = seen["hits"] if what == "exchange calls" else stats["db_queries"]
    # A price answer is one quote (the exchange numbers every call it answers).
    answers = {str(body.get("quote_id", body.get("vwap"))) for status, body, _ in result.responses if status == 200}
    print(
        f"  GET {path:<22} {result.ok:>4} ok {result.errors:>4} errors  {calls:>4} {what:<15}"
        f"{len(answers)} distinct answer(s)  p50 {result.latency_ms(50):4.0f} ms  p99 {result.latency_ms(99):4.0f} ms"
        f"  wall {result.elapsed * 1000:4.0f} ms{f'  ({note})' if note else ''}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
