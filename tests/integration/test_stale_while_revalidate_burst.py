"""An expiring hot key under a 200-request burst: 4 gunicorn processes, Redis, with and without ``REFRESH_AFTER``.

The price service runs under gunicorn with ``W = 4`` gthread worker processes
of ``T = 32`` threads, and ``PRICE_SERVICE_REDIS_URL`` set, so that it has two
``SingleFlightCache`` aliases around Django's ``RedisCache`` (see
``examples/price_service/price_service/settings.py``):

* ``/price-swr/`` (alias ``"swr"``): ``REFRESH_AFTER`` and ``REDIS``. A quote
  past ``REFRESH_AFTER`` is served at once while one background refresh,
  coordinated across the processes by a ``RedisGroup``, replaces it.
* ``/price-cached/`` (alias ``"blocking"``): neither. A missing quote is
  rebuilt under a flight of each process, and requests wait for it.

Each burst is ``N = 200`` GETs from 200 client threads released together by
a Barrier (``harness.burst``). The exchange answers each price request after
``L = 1.5 s`` and counts them: that count is the number of rebuilds, in every
process together. Time does not pass in the test: the stored envelope's
``created`` is moved ``AGE`` seconds into the past in Redis (the entry is
then stale, not expired), and an expired plain entry is one Redis has
deleted, which the test does itself.

The bound on the stale burst's latencies, derived rather than tuned. Let
``R`` be the Barrier's release, ``s_i``/``e_i`` request i's start and end
(client side, ``time.monotonic``, the exchange's clock too) and
``delta = max s_i - R`` the spread of the starts.

* A request that waited for the rebuild cannot end before the rebuild's
  exchange call returns. That call starts after ``R`` (nothing reads the key
  between the ageing and the release, and the first read of the burst
  starts it) and lasts at least ``L`` (the exchange sleeps ``L``). So
  ``e_i >= R + L``, and its latency ``e_i - s_i >= L - delta``.
* A hit's latency is what the same server gives a burst of pure hits: ``H``,
  the slowest request of two such bursts, measured just before. A burst of
  hits before those warms every worker thread (the first use of the cache
  in a thread that had not served yet) and is not counted: the stale burst
  runs on warm threads too.
* Any bound between ``H`` and ``L - delta`` tells the two apart; the test
  takes the middle of the room the exchange's latency gives, ``H + L / 2``.
  It separates them when ``H + L / 2 < L - delta``, that is
  ``H + delta < L / 2``, which the test checks first: on a machine so slow
  that a burst of hits takes half of ``L``, it fails saying so rather than
  assert something that cannot tell a hit from a wait. ``L`` only sets how
  much room there is: on the 2-core CI machine ``H + delta`` is 0.25 to
  0.35 s idle and up to 0.45 s with both cores busy elsewhere, so
  ``L = 1.5 s`` leaves ``L / 2 = 0.75 s``.

Then ``max latency <= H + L / 2`` means that no request waited. It also
gives ``e_i <= R + delta + H + L / 2 < R + L``: every request was answered
before the refresh's exchange call returned, which the test checks against
the exchange's own record of that call. And every request got the quote
stored before the ageing (each quote carries the number of the exchange
call that made it).

Rebuilds with ``REFRESH_AFTER``: every process that serves the stale entry
starts its refresh (one per process); the ``RedisGroup`` runs one of them
and hands its outcome to those of the other processes that wait on it, and
a refresh that starts after it landed finds the entry newer than the one it
saw stale and does not rebuild. So the exchange sees exactly one call for this expiry, counted once
the new envelope is in Redis; a burst of hits after it gets the new quote
from every process without another call.

Without (``/price-cached/``): a process's flight rebuilds a missing key once
(a caller that enters a flight after the previous one stored finds the
value), and flights of different processes are not shared, so the exchange
sees between 1 and ``W`` calls, at most one per process that served the
burst. Until the first rebuild stores, at ``R + L`` at the earliest, every
read misses and waits; every later read is after ``R + L``. So every request
ends at least ``L`` after the release: they all waited.

One gunicorn serves the module (module-scoped fixture); its cache keys have
their own prefix, so runs sharing a Redis never see each other's quotes.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import harness
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from exchange import Exchange

pytest.importorskip("django", reason="needs the integration extra (Django, gunicorn, waitress)")
pytest.importorskip("redis", reason="needs the redis extra")

from price_service import settings as app_settings  # plain constants: Django is not set up here

N = 200  # simultaneous requests per burst
W = 4  # gunicorn worker processes
T = 32  # threads per worker
L = 1.5  # exchange latency, seconds: the cost of one rebuild
SYMBOL = "BTCUSDT"
# How far the test moves a quote into the past: stale (past REFRESH_AFTER), not expired (before TIMEOUT).
AGE = (app_settings.PRICE_REFRESH_AFTER + app_settings.PRICE_CACHE_TIMEOUT) / 2

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"swr-burst-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def app(
    exchange: Exchange, price_db: Path, redis_url: str, prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.AppServer]:
    server = harness.start_app_server(
        "gunicorn",
        workdir=tmp_path_factory.mktemp("gunicorn-swr"),
        exchange_url=exchange.url,
        db_path=price_db,
        threads=T,
        workers=W,
        env={"PRICE_SERVICE_REDIS_URL": redis_url, "PRICE_SERVICE_CACHE_PREFIX": prefix},
    )
    try:
        yield server
    finally:
        server.stop()
    assert server.process.poll() is not None


@pytest.fixture
def slow_exchange(fresh_exchange: Exchange) -> Exchange:
    """The module's exchange, zeroed, answering every price request after L."""
    with fresh_exchange.lock:
        fresh_exchange.latency = L
    return fresh_exchange


def _fire(url: str) -> tuple[harness.BurstResult, list[dict[str, Any]]]:
    result = harness.burst(url, N, timeout=30)
    assert result.statuses == {200: N}, (result.statuses, result.responses[:3])
    return result, [body for _, body, _ in result.responses]


def _latencies(result: harness.BurstResult) -> list[float]:
    return sorted(seconds for _, _, seconds in result.responses)


def _wait_for(predicate: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_stale_hot_key_is_refreshed_once_across_workers_and_no_request_waits(
    app: harness.AppServer, slow_exchange: Exchange, redis_url: str, prefix: str
) -> None:
    url = f"{app.url}/price-swr/{SYMBOL}"
    key = harness.cached_quote_key("swr", SYMBOL, prefix=prefix)

    # The quote is cached once (a miss: this request waits for the one exchange call).
    status, body = harness.http_json(url)
    assert status == 200, body
    old_quote = body["quote_id"]
    stored = harness.read_cached(redis_url, key)
    assert stored["__singleflight_envelope__"] == 1
    assert stored["value"]["quote_id"] == old_quote

    # H: the slowest of two bursts of pure hits, after one that warms every worker thread.
    warm_up = _fire(url)
    hit_bursts = [_fire(url), _fire(url)]
    for _, bodies in [warm_up, *hit_bursts]:
        assert Counter(b["quote_id"] for b in bodies) == {old_quote: N}
    assert len({b["pid"] for _, bodies in hit_bursts for b in bodies}) >= 2, "the hits reached one process only"
    h = max(_latencies(result)[-1] for result, _ in hit_bursts)
    assert slow_exchange.snapshot()["hits"] == 1

    # Stale: the same quote, AGE seconds older. Then the burst. (The exchange keeps counting: its
    # quote_ids number its calls, so the refreshed quote has a new one.)
    aged = harness.age_cached(redis_url, key, AGE)
    stale, bodies = _fire(url)
    latencies = _latencies(stale)
    delta = max(start for start, _ in stale.spans) - stale.released
    print(
        f"\nhits: H = {h * 1000:.0f} ms (p99 of the second burst {hit_bursts[1][0].latency_ms(99):.0f} ms); "
        f"stale burst: max {latencies[-1] * 1000:.0f} ms, p99 {stale.latency_ms(99):.0f} ms, "
        f"p50 {stale.latency_ms(50):.0f} ms, start spread {delta * 1000:.0f} ms; bound H + L/2 = "
        f"{(h + L / 2) * 1000:.0f} ms"
    )
    assert h + delta < L / 2, f"too slow to tell a hit from a wait: H {h:.3f} s + spread {delta:.3f} s >= L/2"
    assert Counter(b["quote_id"] for b in bodies) == {old_quote: N}, "a request did not get the stale quote"
    pids = {b["pid"] for b in bodies}
    assert len(pids) >= 2, "the stale burst reached one worker process only"
    assert latencies[-1] <= h + L / 2, (latencies[-1], h)

    # The refresh lands: a new envelope, then count the exchange calls.
    fresh = _wait_for(
        lambda: (e := harness.read_cached(redis_url, key)) is not None and e["created"] > aged["created"] and e,
        "the background refresh to store a new quote",
    )
    seen = slow_exchange.snapshot(detail=True)
    rebuilds = seen["hits"] - 1  # the first was the warm-up's
    print(f"rebuilds for this expiry, all {W} workers together: {rebuilds} (the stale burst reached {len(pids)})")
    assert rebuilds == 1, seen
    (refresh_start, refresh_end) = seen["intervals"][1]
    assert fresh["value"]["quote_id"] == old_quote + 1
    assert refresh_start >= stale.released
    assert max(end for _, end in stale.spans) < refresh_end, "a request ended after the refresh's upstream call"

    # Every process now serves the new quote, and nobody calls the exchange again.
    after, after_bodies = _fire(url)
    assert Counter(b["quote_id"] for b in after_bodies) == {fresh["value"]["quote_id"]: N}
    assert len({b["pid"] for b in after_bodies}) >= 2
    assert slow_exchange.snapshot()["hits"] == 2
    assert _latencies(after)[-1] <= h + L / 2


def test_expired_hot_key_without_refresh_after_is_rebuilt_per_worker_and_requests_wait(
    app: harness.AppServer, slow_exchange: Exchange, redis_url: str, prefix: str
) -> None:
    url = f"{app.url}/price-cached/{SYMBOL}"
    harness.delete_cached(redis_url, harness.cached_quote_key("blocking", SYMBOL, prefix=prefix))

    result, bodies = _fire(url)
    seen = slow_exchange.snapshot()
    pids = {b["pid"] for b in bodies}
    latencies = _latencies(result)
    first_end = min(end for _, end in result.spans) - result.released
    print(
        f"\nexpired, no REFRESH_AFTER: {seen['hits']} rebuilds across {len(pids)} workers; "
        f"latency min {latencies[0] * 1000:.0f} ms, p50 {result.latency_ms(50):.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; first answer {first_end * 1000:.0f} ms after the release"
    )
    assert 1 <= seen["hits"] <= len(pids) <= W, (seen, pids)
    # Every rebuild's quote reached at least the request that led it.
    assert {b["quote_id"] for b in bodies} == set(range(1, seen["hits"] + 1))
    assert first_end >= L, "a request was answered before any rebuild could have finished"
    delta = max(start for start, _ in result.spans) - result.released
    assert latencies[0] >= L - delta, "a request that started by R + delta ended by R + L"
