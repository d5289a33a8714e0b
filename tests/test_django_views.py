"""@singleflight and CacheFiller inside real Django views, called through Django's test client."""

from __future__ import annotations

import os
import threading

import pytest

if not os.environ.get("CI"):  # in CI the integration extra installs Django: a missing one must fail
    pytest.importorskip("django")

import django_project
from helpers import Gate, followers_of, start, wait_until

django_project.setup()

from django.core.cache import caches  # noqa: E402 - after setup()
from django.test import Client, RequestFactory  # noqa: E402
from django_project import views  # noqa: E402

from singleflight_sync import Group, LeaderInterrupted  # noqa: E402

N = 24


@pytest.fixture(autouse=True)
def fresh_state():
    views.STATE.group = Group()
    views.load_price.group.reset_stats()
    caches["default"].clear()
    yield
    views.STATE.price = lambda symbol: 1.0


def get_many(path: str, n: int, *, clients: list[Client] | None = None) -> tuple[list, threading.Barrier]:
    """Start n threads that GET path together (one Client each); return them and the barrier."""
    barrier = threading.Barrier(n)

    def request() -> object:
        # raise_request_exception stays off: the client captures exceptions
        # through a signal receiver with one fixed dispatch_uid, so across
        # threads one client could see another's exception.
        client = Client(raise_request_exception=False)
        barrier.wait()
        return client.get(path)

    return [start(request) for _ in range(n)], barrier


def test_decorated_function_runs_once_for_concurrent_requests():
    gate = Gate(101.5)
    views.STATE.price = gate
    threads, _ = get_many("/price/BTC", N)
    assert gate.entered.wait(10)
    # The leader is held in the function; wait for every other request to join its flight.
    wait_until(lambda: followers_of(views.load_price.group, ("BTC",)) == N - 1, what="all requests joined")
    gate.finish(101.5)
    bodies = []
    for t in threads:
        t.join()
        assert t.result.status_code == 200
        bodies.append(t.result.json())
    assert bodies == [{"symbol": "BTC", "price": 101.5}] * N
    assert gate.calls == 1
    stats = views.load_price.stats()
    assert (stats.calls, stats.executions, stats.shared, stats.in_flight) == (N, 1, N - 1, 0)


def test_different_symbols_do_not_share():
    seen: list[str] = []
    lock = threading.Lock()

    def price(symbol):
        with lock:
            seen.append(symbol)
        return float(len(symbol))

    views.STATE.price = price
    client = Client()
    assert client.get("/price/ETH").json() == {"symbol": "ETH", "price": 3.0}
    assert client.get("/price/DOGE").json() == {"symbol": "DOGE", "price": 4.0}
    # Not a cache: the same symbol runs again once its flight has landed.
    assert client.get("/price/ETH").json()["price"] == 3.0
    assert seen == ["ETH", "DOGE", "ETH"]


def call_view_many(view, path: str, n: int, *args) -> list:
    """Call ``view`` directly with RequestFactory requests from n threads released together."""
    barrier = threading.Barrier(n)

    def request() -> object:
        req = RequestFactory().get(path)
        barrier.wait()
        return view(req, *args)

    return [start(request) for _ in range(n)]


def test_each_request_gets_its_own_copy_of_the_error():
    # The view is called directly (RequestFactory) so that each thread sees
    # the exception its request raised, not Django's 500 page.
    gate = Gate()
    views.STATE.price = gate
    threads = call_view_many(views.price, "/price/XRP", 8, "XRP")
    assert gate.entered.wait(10)
    wait_until(lambda: followers_of(views.load_price.group, ("XRP",)) == 7, what="all requests joined")
    gate.fail(ConnectionError("exchange down"))
    errors = []
    for t in threads:
        with pytest.raises(ConnectionError, match="exchange down") as info:
            t.join()
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 8
    originals = [e for e in errors if e.__cause__ is None]
    assert len(originals) == 1  # the leader's
    assert all(e.__cause__ is originals[0] for e in errors if e is not originals[0])
    assert views.load_price.stats().errors == 1


def test_cache_rebuild_in_a_view_builds_once_and_later_requests_hit():
    gate = Gate(7.25)
    views.STATE.price = gate
    threads, _ = get_many("/cached-price/SOL", N)
    assert gate.entered.wait(10), [t.exc for t in threads]
    group = views.STATE.group
    wait_until(lambda: len(group.keys()) == 1, what="the rebuild flight")
    (fkey,) = group.keys()
    wait_until(lambda: followers_of(group, fkey) == N - 1, what="all requests joined the rebuild")
    gate.finish(7.25)
    for t in threads:
        t.join()
        assert t.result.json() == {"symbol": "SOL", "price": 7.25}
    assert gate.calls == 1
    assert caches["default"].get("price:SOL") == 7.25
    # The value is cached now: later requests neither build nor start a flight.
    assert Client().get("/cached-price/SOL").json()["price"] == 7.25
    assert gate.calls == 1
    assert group.stats().executions == 1


def test_interrupted_leader_reaches_requests_as_leader_interrupted():
    gate = Gate()
    views.STATE.price = gate
    leader = start(views.price, RequestFactory().get("/price/ADA"), "ADA")
    assert gate.entered.wait(10)
    followers = call_view_many(views.price, "/price/ADA", 3, "ADA")
    wait_until(lambda: followers_of(views.load_price.group, ("ADA",)) == 3, what="followers joined")
    gate.fail(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        leader.join()
    for t in followers:
        with pytest.raises(LeaderInterrupted):
            t.join()
