"""200 users open the trading screen at once: the price service under real gunicorn and waitress.

Each test sends a burst of ``N = 200`` simultaneous GETs (200 client threads
released by one Barrier, urllib with timeouts) to the Django price service,
served by a WSGI server with ``T = 32`` threads in one process, and reads the
exchange's counters. The exchange answers each price request after
``L = 100 ms``.

Why the assertions on upstream hits hold (``hits`` = price requests the exchange saw):

* Upper bound, ``hits <= floor(D / L)``, D = the burst's wall time seen by the client, from
  the Barrier's release (before any request is sent) to the last response.
  With ``@singleflight`` a flight for BTCUSDT starts only when none is in the air, and
  each flight makes one upstream request that lasts at least L. So the upstream requests
  never overlap (the exchange's ``max_concurrency`` is exactly 1) and start at least L
  apart: s_k >= s_1 + (k - 1) L. The first starts after the Barrier released the
  clients, and the request that caused the last one is answered after it ends, at
  s_hits + L or later. Hence D >= hits * L. This holds however slow the machine is:
  a slow machine makes D longer, never the flights shorter.
* Lower bound, ``hits >= ceil(N / T) = 7``: this is what the thread count allows.
  A request can only be in the view while it holds one of the T server threads,
  so a flight is shared by at most T requests (each ``quote_id`` appears at most
  32 times in the responses), and 200 requests need at least ceil(200 / 32) = 7
  flights. The same count from a thread's view: a thread that serves k requests
  sees k different flights, because its next request starts after the flight of
  the previous one has landed and the key has been dropped; some thread serves
  at least ceil(N / T) requests.
* In the ideal schedule the lower bound is reached: all 200 requests are queued at once, each
  of the 7 rounds admits 32 requests into the view well within L of the first, and
  the burst takes about 7 L plus overhead, so hits is 7 (what we see on an idle machine)
  and D / L is 8 to 9. On a loaded machine a thread can reach the view after its round's
  flight landed and start another, and D grows with it: the upper bound stays true.
* Without singleflight every request makes its own upstream call: hits == N exactly,
  and at most T of them run at once (each holds a server thread).
* The ORM endpoint works the same way with C = 100 ms spent inside SQLite per query.

Every server binds 127.0.0.1 on an OS-chosen port, writes its log (and gunicorn its
pid file) under tmp_path, and is stopped by pid at teardown (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

import harness
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from exchange import Exchange

pytest.importorskip("django", reason="needs the integration extra (Django, gunicorn, waitress)")

N = 200  # simultaneous requests
T = 32  # server threads
L = 0.1  # exchange latency, seconds
C = 0.1  # time each volume query spends in SQLite, seconds
SYMBOL = "BTCUSDT"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["gunicorn", "waitress"])
def server(
    request: pytest.FixtureRequest,
    exchange: Exchange,
    price_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[harness.AppServer]:
    kind = request.param
    workdir = tmp_path_factory.mktemp(kind)
    app = harness.start_app_server(
        kind,
        workdir=workdir,
        exchange_url=exchange.url,
        db_path=price_db,
        threads=T,
        env={"PRICE_SERVICE_DB_COST_MS": str(round(C * 1000))},
    )
    try:
        if kind == "gunicorn":
            assert int((workdir / "gunicorn.pid").read_text()) == app.pid
        yield app
    finally:
        app.stop()
    assert app.process.poll() is not None


def _reset(app: harness.AppServer) -> None:
    status, _ = harness.http_json(f"{app.url}/stats/reset", method="POST")
    assert status == 200


def _fire(url: str) -> harness.BurstResult:
    result = harness.burst(url, N, timeout=30)
    assert result.statuses == {200: N}, result.statuses
    return result


def test_price_burst_with_singleflight(server: harness.AppServer, fresh_exchange: Exchange) -> None:
    _reset(server)
    result = _fire(f"{server.url}/price/{SYMBOL}")

    bodies = [body for _, body, _ in result.responses]
    assert {body["price"] for body in bodies} == {bodies[0]["price"]}
    assert {body["mode"] for body in bodies} == {"singleflight"}
    seen = fresh_exchange.snapshot()
    hits = seen["hits"]
    assert seen["max_concurrency"] == 1, "two upstream requests for one key overlapped"
    per_flight = Counter(body["quote_id"] for body in bodies)
    assert len(per_flight) == hits, "every upstream answer reached the requests that shared it"
    assert max(per_flight.values()) <= T, per_flight
    assert math.ceil(N / T) <= hits, hits
    assert hits * L <= result.elapsed, (hits, result.elapsed)

    _, stats = harness.http_json(f"{server.url}/stats")
    assert stats["get_price"]["calls"] == N
    assert stats["get_price"]["executions"] == hits
    assert stats["get_price"]["shared"] == N - hits


def test_price_burst_without_singleflight(server: harness.AppServer, fresh_exchange: Exchange) -> None:
    result = _fire(f"{server.url}/price-raw/{SYMBOL}")

    bodies = [body for _, body, _ in result.responses]
    assert {body["price"] for body in bodies} == {bodies[0]["price"]}
    assert {body["mode"] for body in bodies} == {"raw"}
    seen = fresh_exchange.snapshot()
    assert seen["hits"] == N
    assert len({body["quote_id"] for body in bodies}) == N
    assert 1 <= seen["max_concurrency"] <= T


def test_volume_burst_with_singleflight(server: harness.AppServer, fresh_exchange: Exchange) -> None:
    _reset(server)
    result = _fire(f"{server.url}/volume/{SYMBOL}")

    bodies = [body for _, body, _ in result.responses]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["trades"] == 2000
    assert bodies[0]["volume"] > 0
    _, stats = harness.http_json(f"{server.url}/stats")
    queries = stats["db_queries"]
    assert queries == stats["get_volume"]["executions"]
    assert stats["get_volume"]["calls"] == N
    # Same reasoning as for the price (module docstring), with C in place of L; far below N.
    assert math.ceil(N / T) <= queries, queries
    assert queries * C <= result.elapsed, (queries, result.elapsed)
    assert queries <= N // 4
    assert fresh_exchange.snapshot()["hits"] == 0


def test_rate_limited_upstream(server: harness.AppServer, fresh_exchange: Exchange) -> None:
    """With a limit of 20 req/s upstream, the raw burst collects 429s (502 here); singleflight stays under it.

    Singleflight's upstream requests never overlap and each lasts at least L, so at
    most 1 / L + 1 = 11 start in any one-second window: below 20, never a 429.
    """
    with fresh_exchange.lock:
        fresh_exchange.rate_limit = 20

    shared = _fire(f"{server.url}/price/{SYMBOL}")
    assert fresh_exchange.snapshot()["limited"] == 0
    assert len({body["price"] for _, body, _ in shared.responses}) == 1

    fresh_exchange.reset()
    raw = harness.burst(f"{server.url}/price-raw/{SYMBOL}", N, timeout=30)
    seen = fresh_exchange.snapshot()
    assert seen["hits"] == N
    assert seen["limited"] >= 1
    assert raw.statuses == {200: N - seen["limited"], 502: seen["limited"]}
    assert {body["upstream_status"] for status, body, _ in raw.responses if status == 502} == {429}


def test_singleflight_toggled_off_by_env(fresh_exchange: Exchange, price_db: Path, tmp_path: Path) -> None:
    """PRICE_SERVICE_SINGLEFLIGHT=0 turns /price/ into the raw path: the same burst costs N upstream hits."""
    with harness.start_app_server(
        "gunicorn",
        workdir=tmp_path,
        exchange_url=fresh_exchange.url,
        db_path=price_db,
        threads=T,
        env={"PRICE_SERVICE_SINGLEFLIGHT": "0"},
    ) as app:
        result = _fire(f"{app.url}/price/{SYMBOL}")
        assert {body["mode"] for _, body, _ in result.responses} == {"raw"}
        assert fresh_exchange.snapshot()["hits"] == N
        _, stats = harness.http_json(f"{app.url}/stats")
        assert stats["singleflight"] is False
        assert stats["get_price"]["calls"] == 0
    assert app.process.poll() is not None
