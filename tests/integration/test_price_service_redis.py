"""Several gunicorn worker processes, one exchange call per flight: the price service with a RedisGroup.

The seed's own picture: a burst of ``N = 200`` simultaneous GETs reaches
``W = 3`` gunicorn worker processes (gthread, ``T = 32`` threads each). With
``@singleflight`` alone each process runs its own flights, so the exchange
sees up to W overlapping requests for one symbol. Behind a ``RedisGroup``
(``/price-redis/``) the flights are shared by every process:

* Flights never overlap: a flight starts only when no process holds the
  symbol's lease, so the exchange's ``max_concurrency`` is exactly 1, and,
  as in ``test_wsgi_burst.py``, ``hits * L <= D`` (the burst's wall time).
* A flight is shared by at most ``W * T`` requests (those inside a view),
  so ``hits >= ceil(N / (W * T)) = 3``; every upstream answer reached the
  requests that shared it (one quote per exchange call), and at least one
  quote was served by two different processes.

The Redis server is the session's (``redis_url``); gunicorn is started and
stopped by pid under tmp_path.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import harness
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from exchange import Exchange

pytest.importorskip("django", reason="needs the integration extra (Django, gunicorn, waitress)")
pytest.importorskip("redis", reason="needs the redis extra")

N = 200  # simultaneous requests
W = 3  # gunicorn worker processes
T = 32  # threads per worker
L = 0.1  # exchange latency, seconds
SYMBOL = "BTCUSDT"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def workers(
    exchange: Exchange, price_db: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.AppServer]:
    app = harness.start_app_server(
        "gunicorn",
        workdir=tmp_path_factory.mktemp("gunicorn-workers"),
        exchange_url=exchange.url,
        db_path=price_db,
        threads=T,
        workers=W,
        env={"PRICE_SERVICE_REDIS_URL": redis_url},
    )
    try:
        yield app
    finally:
        app.stop()
    assert app.process.poll() is not None


def _fire(url: str) -> tuple[harness.BurstResult, list[dict[str, object]]]:
    result = harness.burst(url, N, timeout=30)
    assert result.statuses == {200: N}, result.statuses
    return result, [body for _, body, _ in result.responses]


def test_one_flight_at_a_time_across_worker_processes(workers: harness.AppServer, fresh_exchange: Exchange) -> None:
    result, bodies = _fire(f"{workers.url}/price-redis/{SYMBOL}")
    assert {body["mode"] for body in bodies} == {"redis"}
    assert len({body["pid"] for body in bodies}) >= 2, "the burst reached one worker process only"
    seen = fresh_exchange.snapshot()
    hits = seen["hits"]
    assert seen["max_concurrency"] == 1, "two processes called the exchange for one symbol at once"
    assert hits * L <= result.elapsed, (hits, result.elapsed)
    per_quote = Counter(body["quote_id"] for body in bodies)
    assert len(per_quote) == hits, "every upstream answer reached the requests that shared it"
    assert max(per_quote.values()) <= W * T, per_quote
    assert math.ceil(N / (W * T)) <= hits, hits
    processes_per_quote: defaultdict[object, set[object]] = defaultdict(set)
    for body in bodies:
        processes_per_quote[body["quote_id"]].add(body["pid"])
    assert max(len(pids) for pids in processes_per_quote.values()) >= 2, "no answer was shared across processes"


def test_per_process_singleflight_runs_once_per_process(workers: harness.AppServer, fresh_exchange: Exchange) -> None:
    """The contrast: @singleflight alone shares only within a process, so processes overlap upstream."""
    _, bodies = _fire(f"{workers.url}/price/{SYMBOL}")
    seen = fresh_exchange.snapshot()
    per_quote_pids: defaultdict[object, set[object]] = defaultdict(set)
    for body in bodies:
        per_quote_pids[body["quote_id"]].add(body["pid"])
    assert all(len(pids) == 1 for pids in per_quote_pids.values()), "a per-process flight crossed processes"
    assert 1 <= seen["max_concurrency"] <= W
    assert seen["hits"] >= len({body["pid"] for body in bodies})  # at least one flight per process that served
