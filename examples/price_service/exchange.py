"""A fake exchange: a local HTTP server with latency, a hit counter and an optional rate limit.

It stands in for the remote price API that 200 users hammer at once. Every
request to ``/api/v3/ticker/price?symbol=X`` is counted and answered after
``latency`` seconds with a fixed price per symbol and a ``quote_id`` (the
number of the hit that produced it), so a client can tell which responses
came from the same upstream request.

Control endpoints (not counted as hits):

- ``GET /hits``: ``{"hits", "ok", "limited", "max_concurrency"}``; with ``?detail=1`` also the
  ``intervals`` [start, end] (monotonic seconds) of every answered price request.
- ``POST /reset``: zero the counters and the rate-limit window.
- ``POST /config?latency=0.1&rate_limit=20``: change latency (seconds) and the limit
  (requests per second, ``0`` for none).

Run it alone with ``python exchange.py --port 8001``; tests and ``run.py`` start
it in-process with :func:`start_exchange`.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Exchange", "start_exchange"]


def price_of(symbol: str) -> str:
    """The fixed price of ``symbol``: stable across runs so that every response can be compared."""
    cents = 1_000_000 + zlib.crc32(symbol.encode()) % 9_000_000
    return f"{cents // 100}.{cents % 100:02d}"


class Exchange(ThreadingHTTPServer):
    """The server and its counters; every counter is protected by ``lock``."""

    daemon_threads = True
    # 200 clients may connect within a millisecond; the default backlog of 5 would drop SYNs
    # and turn a 100 ms call into a 1 s retransmit.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], *, latency: float = 0.1, rate_limit: int = 0) -> None:
        super().__init__(address, _Handler)
        self.lock = threading.Lock()  # protects everything below
        self.latency = latency
        self.rate_limit = rate_limit
        self.hits = 0
        self.ok = 0
        self.limited = 0
        self.active = 0
        self.max_concurrency = 0
        self.intervals: list[tuple[float, float]] = []
        self.window: collections.deque[float] = collections.deque()  # arrival times within the last second
        # Tests may hold every admitted price request here until they open it,
        # to know exactly which requests were in the air together.
        self.gate: threading.Event | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset(self) -> None:
        with self.lock:
            self.hits = self.ok = self.limited = self.active = self.max_concurrency = 0
            self.intervals.clear()
            self.window.clear()

    def snapshot(self, *, detail: bool = False) -> dict[str, Any]:
        with self.lock:
            data: dict[str, Any] = {
                "hits": self.hits,
                "ok": self.ok,
                "limited": self.limited,
                "max_concurrency": self.max_concurrency,
            }
            if detail:
                data["intervals"] = list(self.intervals)
        return data

    def admit(self) -> int | None:
        """Count a price request; return its hit number, or None when the rate limit refuses it."""
        now = time.monotonic()
        with self.lock:
            self.hits += 1
            if self.rate_limit:
                while self.window and self.window[0] <= now - 1.0:
                    self.window.popleft()
                if len(self.window) >= self.rate_limit:
                    self.limited += 1
                    return None
                self.window.append(now)
            self.active += 1
            self.max_concurrency = max(self.max_concurrency, self.active)
            return self.hits

    def done(self, start: float) -> None:
        with self.lock:
            self.active -= 1
            self.ok += 1
            self.intervals.append((start, time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    server: Exchange

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the stdlib's parameter name)
        pass  # 200 lines per burst on stderr help nobody

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/hits":
            self._reply(200, self.server.snapshot(detail=query.get("detail") == ["1"]))
        elif url.path == "/api/v3/ticker/price" and query.get("symbol"):
            self._price(query["symbol"][0])
        else:
            self._reply(404, {"error": f"no route {url.path}"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/reset":
            self.server.reset()
            self._reply(200, self.server.snapshot())
        elif url.path == "/config":
            with self.server.lock:
                if "latency" in query:
                    self.server.latency = float(query["latency"][0])
                if "rate_limit" in query:
                    self.server.rate_limit = int(query["rate_limit"][0])
                config = {"latency": self.server.latency, "rate_limit": self.server.rate_limit}
            self._reply(200, config)
        else:
            self._reply(404, {"error": f"no route {url.path}"})

    def _price(self, symbol: str) -> None:
        start = time.monotonic()
        quote_id = self.server.admit()
        if quote_id is None:
            self._reply(429, {"code": -1003, "msg": "Too many requests"})
            return
        try:
            gate = self.server.gate
            if gate is not None:
                gate.wait(60)
            time.sleep(self.server.latency)
        finally:
            self.server.done(start)
        self._reply(200, {"symbol": symbol, "price": price_of(symbol), "quote_id": quote_id})


def start_exchange(*, latency: float = 0.1, rate_limit: int = 0, port: int = 0) -> Exchange:
    """Start an exchange on 127.0.0.1 (a free port by default) in a daemon thread; stop it with ``shutdown()``."""
    server = Exchange(("127.0.0.1", port), latency=latency, rate_limit=rate_limit)
    threading.Thread(target=server.serve_forever, name="exchange", daemon=True).start()
    return server


def stop_exchange(server: Exchange) -> None:
    server.shutdown()
    server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per price request (default 0.1)")
    parser.add_argument("--rate-limit", type=int, default=0, help="requests per second before 429 (0: none)")
    args = parser.parse_args()
    server = Exchange(("127.0.0.1", args.port), latency=args.latency, rate_limit=args.rate_limit)
    print(f"exchange listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
