"""What the views call: one upstream request or one SQL query each, with and without singleflight.

``get_price`` and ``get_volume`` are the same functions as ``fetch_price``
and ``query_volume`` behind ``@singleflight``: when 200 requests ask for
BTCUSDT at once, the first runs the call and the other 199 wait for its
result. Nothing is cached: the next request after the flight lands asks the
exchange again.

``get_price_cached`` does cache: it reads the quote through one of the two
``SingleFlightCache`` aliases of ``settings.CACHES`` (with
``PRICE_SERVICE_REDIS_URL``), ``"swr"`` (stale-while-revalidate, coordinated
across processes) or ``"blocking"`` (callers wait for a missing quote).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db.models import Avg, Count, F, Max, Min, Sum

from singleflight_sync import singleflight

from .db import SlowSum
from .models import Trade


class UpstreamError(Exception):
    """The exchange answered with an error status (429 when it rate-limits us) or not at all."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


def fetch_price(symbol: str) -> dict[str, Any]:
    """Ask the exchange for the price of ``symbol``; raise :class:`UpstreamError` on failure."""
    query = urllib.parse.urlencode({"symbol": symbol})
    url = f"{settings.EXCHANGE_URL}/api/v3/ticker/price?{query}"
    try:
        with urllib.request.urlopen(url, timeout=settings.EXCHANGE_TIMEOUT) as response:
            return json.load(response)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        raise UpstreamError(exc.code, f"exchange answered {exc.code} for {symbol}") from None
    except OSError as exc:
        raise UpstreamError(None, f"exchange unreachable: {exc}") from None


def query_volume(symbol: str) -> dict[str, Any]:
    """Aggregate the trades of ``symbol`` in SQLite (a deliberately slow query)."""
    stats = Trade.objects.filter(symbol=symbol).aggregate(
        trades=Count("id"),
        volume=SlowSum("qty"),
        notional=Sum(F("price") * F("qty")),
        avg_price=Avg("price"),
        low=Min("price"),
        high=Max("price"),
    )
    volume = stats["volume"] or 0.0
    stats["vwap"] = stats["notional"] / volume if volume else None
    return stats


get_price = singleflight(fetch_price)
get_volume = singleflight(query_volume)

# get_price_shared: fetch_price behind a RedisGroup, so that one exchange call
# serves a burst across every worker process, not one call per process. Each
# worker builds its group on first use, after gunicorn forked it. _shared_lock
# guards _shared.
_shared_lock = threading.Lock()
_shared: dict[str, Any] = {}


def shared_fetch() -> Any:
    """This process's :func:`fetch_price` behind a RedisGroup (None without ``settings.REDIS_URL``)."""
    if not settings.REDIS_URL:
        return None
    with _shared_lock:
        fetch = _shared.get("fetch")
        if fetch is None:
            from singleflight_sync.redis import RedisGroup  # noqa: PLC0415 - only with Redis

            group = RedisGroup(settings.REDIS_URL, namespace="price-service", timeout=settings.EXCHANGE_TIMEOUT + 5)
            fetch = _shared["fetch"] = singleflight(group=group)(fetch_price)
    return fetch


def get_price_shared(symbol: str) -> dict[str, Any]:
    """:func:`fetch_price` with one flight per symbol across processes (needs ``settings.REDIS_URL``)."""
    return shared_fetch()(symbol)  # type: ignore[no-any-return]


# Cached quotes: fetch_price behind a SingleFlightCache (settings.CACHES, with
# settings.REDIS_URL). A quote is stored under this key for
# settings.PRICE_CACHE_TIMEOUT seconds.
def cache_key(symbol: str) -> str:
    """The key of ``symbol``'s quote in the ``"swr"`` and ``"blocking"`` caches (before Django's KEY_PREFIX)."""
    return f"price:{symbol}"


def get_price_cached(symbol: str, alias: str) -> dict[str, Any]:
    """``symbol``'s quote from the cache ``alias``, fetched from the exchange once when it is missing or stale.

    ``"swr"`` serves a quote past ``PRICE_REFRESH_AFTER`` at once and refreshes
    it in the background, once across processes; ``"blocking"`` makes callers
    wait for a missing quote, rebuilt once per process.
    """
    cache = caches[alias]
    return cache.get_or_set(cache_key(symbol), lambda: fetch_price(symbol), settings.PRICE_CACHE_TIMEOUT)  # type: ignore[no-any-return]
