"""Views that put singleflight_sync between requests and slow work.

The work itself is looked up in :data:`STATE` at call time, so that a test
can hold it with an event and count its executions.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.db import close_old_connections
from django.http import JsonResponse

from singleflight_sync import CacheFiller, Group, singleflight

from .models import Item

if TYPE_CHECKING:
    from django.http import HttpRequest

# Replaced by the tests: price(symbol) -> float, and the group the ORM views share.
STATE = SimpleNamespace(price=lambda symbol: 1.0, group=Group(), before_count=lambda: None)


@singleflight
def load_price(symbol: str) -> Any:
    return STATE.price(symbol)


def price(request: HttpRequest, symbol: str) -> JsonResponse:
    return JsonResponse({"symbol": symbol, "price": load_price(symbol)})


def cached_price(request: HttpRequest, symbol: str) -> JsonResponse:
    # caches["default"] is a different object in each thread: scope= says they are one cache.
    filler = CacheFiller(caches["default"], group=STATE.group, ttl=60, scope="default")
    value = filler.fill(f"price:{symbol}", lambda: STATE.price(symbol))
    return JsonResponse({"symbol": symbol, "price": value})


async def acached_price(request: HttpRequest, symbol: str) -> JsonResponse:
    # Same cache, scope and key as cached_price: a sync and an async request share one rebuild.
    filler = CacheFiller(caches["default"], group=STATE.group, ttl=60, scope="default")
    value = await filler.fill_async(f"price:{symbol}", lambda: STATE.price(symbol))
    return JsonResponse({"symbol": symbol, "price": value})


def list_items() -> list[str]:
    """A blocking ORM query: fine in a thread, refused by Django on the event loop."""
    STATE.before_count()
    try:
        return sorted(Item.objects.values_list("name", flat=True))
    finally:
        # This may run in a thread Django does not manage (the event loop's
        # executor, when an async view leads): close its connection here,
        # as Django asks of code that uses the ORM outside a request.
        close_old_connections()


def items(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": STATE.group.do("items", list_items)})


async def aitems(request: HttpRequest) -> JsonResponse:
    # do_async runs list_items in the loop's executor when this task leads,
    # or waits for the thread (sync view) that leads it.
    return JsonResponse({"items": await STATE.group.do_async("items", list_items)})
