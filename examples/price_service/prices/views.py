"""JSON views: ``/price/<symbol>``, ``/volume/<symbol>``, their ``-raw`` twins, cached prices, and counters."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpResponseNotAllowed, JsonResponse

from . import db, services

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest


def healthz(request: HttpRequest) -> JsonResponse:
    # sys._is_gil_enabled() exists on 3.13+; False on a free-threaded build with the GIL off.
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return JsonResponse({"ok": True, "pid": os.getpid(), "python": sys.version.split()[0], "gil": gil})


def _price(symbol: str, fetch: Callable[[str], dict[str, Any]], mode: str) -> JsonResponse:
    try:
        quote = fetch(symbol)
    except services.UpstreamError as exc:
        # A 429 (or any failure) upstream is our gateway's failure: 502, with the upstream status.
        # Under singleflight every request that shared the flight gets this same answer.
        return JsonResponse({"symbol": symbol, "error": str(exc), "upstream_status": exc.status}, status=502)
    body = {"symbol": symbol, "price": quote["price"], "quote_id": quote["quote_id"], "mode": mode, "pid": os.getpid()}
    return JsonResponse(body)


def price(request: HttpRequest, symbol: str) -> JsonResponse:
    if settings.SINGLEFLIGHT:
        return _price(symbol, services.get_price, "singleflight")
    return _price(symbol, services.fetch_price, "raw")


def price_redis(request: HttpRequest, symbol: str) -> JsonResponse:
    if not settings.REDIS_URL:
        return JsonResponse({"error": "set PRICE_SERVICE_REDIS_URL to serve /price-redis/"}, status=503)
    from singleflight_sync.redis import RemoteFlightError  # noqa: PLC0415 - only with Redis

    try:
        return _price(symbol, services.get_price_shared, "redis")
    except RemoteFlightError as exc:
        # The exchange failed for a leader in another worker process: the same 502.
        return JsonResponse({"symbol": symbol, "error": exc.remote_message, "upstream_status": None}, status=502)


def _price_cached(symbol: str, alias: str, mode: str) -> JsonResponse:
    if not settings.REDIS_URL:
        return JsonResponse({"error": f"set PRICE_SERVICE_REDIS_URL to serve /{mode}/"}, status=503)
    from singleflight_sync.redis import RemoteFlightError  # noqa: PLC0415 - only with Redis

    try:
        return _price(symbol, lambda s: services.get_price_cached(s, alias), mode)
    except RemoteFlightError as exc:
        # A miss rebuilt by another worker process, whose exchange call failed: the same 502.
        return JsonResponse({"symbol": symbol, "error": exc.remote_message, "upstream_status": None}, status=502)


def price_swr(request: HttpRequest, symbol: str) -> JsonResponse:
    """The cached quote; past ``PRICE_REFRESH_AFTER`` it is served stale while one refresh runs (all processes)."""
    return _price_cached(symbol, "swr", "price-swr")


def price_cached(request: HttpRequest, symbol: str) -> JsonResponse:
    """The cached quote; a missing one is fetched once per process while that process's requests wait."""
    return _price_cached(symbol, "blocking", "price-cached")


def price_raw(request: HttpRequest, symbol: str) -> JsonResponse:
    return _price(symbol, services.fetch_price, "raw")


def volume(request: HttpRequest, symbol: str) -> JsonResponse:
    fn = services.get_volume if settings.SINGLEFLIGHT else services.query_volume
    return JsonResponse({"symbol": symbol, **fn(symbol)})


def volume_raw(request: HttpRequest, symbol: str) -> JsonResponse:
    return JsonResponse({"symbol": symbol, **services.query_volume(symbol)})


def _cache_aliases() -> list[str]:
    return ["swr", "blocking"] if settings.REDIS_URL else []


def stats(request: HttpRequest) -> JsonResponse:
    # The cache counters are this worker process's (FillerStats); another request may reach another process.
    return JsonResponse(
        {
            "pid": os.getpid(),
            "singleflight": settings.SINGLEFLIGHT,
            "db_queries": db.executions(),
            "get_price": services.get_price.stats()._asdict(),
            "get_volume": services.get_volume.stats()._asdict(),
            "caches": {alias: caches[alias].filler.stats()._asdict() for alias in _cache_aliases()},
        },
    )


def reset_stats(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    db.reset()
    services.get_price.group.reset_stats()
    services.get_volume.group.reset_stats()
    for alias in _cache_aliases():
        caches[alias].filler.reset_stats()
    return stats(request)
