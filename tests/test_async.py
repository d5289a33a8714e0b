"""do_async: coroutines and threads share one flight; Django sync and async views share one ORM query."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from helpers import DEADLINE, Gate, followers_of, start

from singleflight_sync import CacheFiller, FlightTimeoutError, Group, LeaderInterrupted


async def until(predicate, what: str) -> None:
    """Poll published state from the event loop without blocking it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not predicate():
        if loop.time() > deadline:
            msg = f"timed out waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(0.001)


def test_threads_and_tasks_share_a_flight_led_by_a_thread():
    group: Group[str, dict] = Group()
    gate = Gate()
    leader = start(group.do, "k", gate)
    assert gate.entered.wait(10)
    threads = [start(group.do, "k", gate) for _ in range(3)]

    async def main():
        tasks = [asyncio.create_task(group.do_async("k", gate)) for _ in range(5)]
        await until(lambda: followers_of(group, "k") == 8, "3 threads and 5 tasks joined")
        value = {"shared": True}
        gate.finish(value)
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    leader.join()
    for t in threads:
        t.join()
    everything = [leader.result, *(t.result for t in threads), *results]
    assert all(r is everything[0] for r in everything)  # the very same object
    assert gate.calls == 1
    s = group.stats()
    assert (s.calls, s.executions, s.shared) == (9, 1, 8)


def test_a_task_leads_and_threads_follow():
    group: Group[str, int] = Group()
    gate = Gate()

    async def main():
        task = asyncio.create_task(group.do_async("k", gate))
        # The function runs in the loop's default executor, not on the loop.
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        assert group.in_flight("k")
        threads = [start(group.do, "k", gate) for _ in range(4)]
        await until(lambda: followers_of(group, "k") == 4, "4 threads joined")
        gate.finish(42)
        return await task, threads

    value, threads = asyncio.run(main())
    assert value == 42
    for t in threads:
        t.join()
        assert t.result == 42
    assert gate.calls == 1


def test_cancelling_the_awaiting_task_does_not_cancel_the_flight():
    group: Group[str, str] = Group()
    gate = Gate()

    async def main():
        leader = asyncio.create_task(group.do_async("k", gate))
        other = asyncio.create_task(group.do_async("k", gate))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        await until(lambda: followers_of(group, "k") == 1, "the second task joined")
        leader.cancel()  # the task whose call started the flight
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert group.in_flight("k")
        thread = start(group.do, "k", gate)
        await until(lambda: followers_of(group, "k") == 2, "a thread joined")
        gate.finish("done")
        return await other, thread

    value, thread = asyncio.run(main())
    thread.join()
    assert (value, thread.result) == ("done", "done")
    assert gate.calls == 1


def test_group_timeout_bounds_an_async_followers_wait_only():
    group: Group[str, int] = Group(timeout=0.05)
    gate = Gate()
    leader = start(group.do, "k", gate)
    assert gate.entered.wait(10)

    async def main():
        with pytest.raises(FlightTimeoutError) as info:
            await group.do_async("k", gate)
        assert isinstance(info.value, TimeoutError)
        assert info.value.key == "k"
        # The withdrawn handle no longer counts as a follower of the flight.
        assert followers_of(group, "k") == 0

    asyncio.run(main())
    gate.finish(7)
    leader.join()
    assert leader.result == 7
    assert gate.calls == 1
    s = group.stats()
    assert (s.calls, s.executions, s.shared, s.timeouts, s.in_flight) == (2, 1, 0, 1, 0)


def test_group_timeout_does_not_fire_when_the_flight_lands_in_time():
    group: Group[str, int] = Group(timeout=30)
    assert asyncio.run(group.do_async("k", max, 3, 4)) == 4
    assert group.stats().timeouts == 0


def test_exceptions_reach_tasks_as_copies():
    group: Group[str, int] = Group()
    gate = Gate()
    leader = start(group.do, "k", gate)
    assert gate.entered.wait(10)

    async def main():
        tasks = [asyncio.create_task(group.do_async("k", gate)) for _ in range(4)]
        await until(lambda: followers_of(group, "k") == 4, "4 tasks joined")
        gate.fail(KeyError("user:7"))
        return await asyncio.gather(*tasks, return_exceptions=True)

    errors = asyncio.run(main())
    with pytest.raises(KeyError) as info:
        leader.join()
    original = info.value
    assert all(type(e) is KeyError and e.args == ("user:7",) for e in errors)
    assert len({id(e) for e in errors}) == 4
    assert all(e is not original and e.__cause__ is original for e in errors)


def test_an_interrupted_thread_leader_reaches_tasks_as_leader_interrupted():
    group: Group[str, int] = Group()
    gate = Gate()
    leader = start(group.do, "k", gate)
    assert gate.entered.wait(10)

    async def main():
        task = asyncio.create_task(group.do_async("k", gate))
        await until(lambda: followers_of(group, "k") == 1, "the task joined")
        gate.fail(KeyboardInterrupt())
        with pytest.raises(LeaderInterrupted) as info:
            await task
        return info.value

    err = asyncio.run(main())
    assert isinstance(err.__cause__, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        leader.join()


# -- CacheFiller.fill_async -------------------------------------------------------------------


def test_fill_async_shares_one_rebuild_with_threads():
    group: Group[object, str] = Group()
    cache: dict = {}
    filler = CacheFiller(cache, group=group)
    gate = Gate()
    fkey = filler._flight_key("k")
    leader = start(filler.fill, "k", gate)
    assert gate.entered.wait(10)

    async def main():
        tasks = [asyncio.create_task(filler.fill_async("k", gate)) for _ in range(10)]
        await until(lambda: followers_of(group, fkey) == 10, "10 tasks joined the rebuild")
        gate.finish("built")
        values = await asyncio.gather(*tasks)
        # Now a hit: no flight, no build.
        values.append(await filler.fill_async("k", lambda: pytest.fail("rebuilt")))
        return values

    values = asyncio.run(main())
    leader.join()
    assert values == ["built"] * 11
    assert leader.result == "built"
    assert cache == {"k": "built"}
    assert gate.calls == 1
    assert group.stats().calls == 11


def test_fill_async_leads_and_a_cancelled_task_does_not_stop_the_rebuild():
    group: Group[object, str] = Group()
    cache: dict = {}
    filler = CacheFiller(cache, group=group)
    gate = Gate()
    fkey = filler._flight_key("k")

    async def main():
        first = asyncio.create_task(filler.fill_async("k", gate))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        thread = start(filler.fill, "k", gate)
        await until(lambda: followers_of(group, fkey) == 1, "a thread joined")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        gate.finish("built")
        return thread

    thread = asyncio.run(main())
    thread.join()
    assert thread.result == "built"
    assert cache == {"k": "built"}
    assert gate.calls == 1


def test_fill_async_uses_djangos_aget_for_hits():
    if not os.environ.get("CI"):
        pytest.importorskip("django")
    import uuid  # noqa: PLC0415

    from django.core.cache.backends.locmem import LocMemCache  # noqa: PLC0415

    class CountingLocMem(LocMemCache):
        agets = 0

        async def aget(self, key, default=None, version=None):
            CountingLocMem.agets += 1
            return await super().aget(key, default, version)

    cache = CountingLocMem(f"aget-{uuid.uuid4()}", {})
    filler = CacheFiller(cache, group=Group(), ttl=30)

    async def main():
        first = await filler.fill_async("k", lambda: None)  # None is a value like any other
        second = await filler.fill_async("k", lambda: pytest.fail("rebuilt"))
        return first, second

    assert asyncio.run(main()) == (None, None)
    assert CountingLocMem.agets == 2


# -- Django: a sync view (thread, Client) and an async view (AsyncClient) share the ORM query ----


@pytest.fixture(scope="module")
def django_db():
    """The test project's SQLite file with the Item table; removed at the end of the module."""
    if not os.environ.get("CI"):
        pytest.importorskip("django")
    import django_project  # noqa: PLC0415

    django_project.setup()
    from django.conf import settings  # noqa: PLC0415
    from django.db import connection  # noqa: PLC0415

    yield connection
    connection.close()
    if not os.environ.get("SINGLEFLIGHT_DJANGO_DB"):
        Path(settings.DATABASES["default"]["NAME"]).unlink(missing_ok=True)


@pytest.fixture
def django_items(django_db):
    connection = django_db
    from django_project import views  # noqa: PLC0415
    from django_project.models import Item  # noqa: PLC0415

    if Item._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Item)
    Item.objects.all().delete()
    Item.objects.bulk_create([Item(name=n) for n in ("bolt", "nut", "washer")])
    views.STATE.group = Group()
    yield views
    views.STATE.before_count = lambda: None


@pytest.mark.parametrize("leader", ["sync", "async"])
def test_django_sync_and_async_views_share_one_orm_query(django_items, leader):
    from django.test import AsyncClient, Client  # noqa: PLC0415

    views = django_items
    gate = Gate()
    views.STATE.before_count = gate  # holds the query of whichever request leads
    executions_before = gate.calls
    group = views.STATE.group

    async def main():
        thread = None
        if leader == "sync":
            thread = start(lambda: Client().get("/items"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
            task = asyncio.create_task(AsyncClient().get("/aitems"))
        else:
            task = asyncio.create_task(AsyncClient().get("/aitems"))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
            thread = start(lambda: Client().get("/items"))
        await until(lambda: followers_of(group, "items") == 1, "the other view joined")
        gate.finish()
        return await task, thread

    async_response, thread = asyncio.run(main())
    thread.join()
    sync_response = thread.result
    assert sync_response.status_code == async_response.status_code == 200
    assert sync_response.json() == async_response.json() == {"items": ["bolt", "nut", "washer"]}
    assert gate.calls - executions_before == 1
    s = group.stats()
    assert (s.calls, s.executions, s.shared) == (2, 1, 1)


def test_django_refuses_the_orm_on_the_event_loop_which_is_why_do_async_uses_a_thread(django_items):
    from django.core.exceptions import SynchronousOnlyOperation  # noqa: PLC0415

    async def main():
        return django_items.list_items()

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(main())


def test_many_async_requests_and_threads_one_query(django_items):
    from django.test import AsyncClient, Client  # noqa: PLC0415

    views = django_items
    gate = Gate()
    views.STATE.before_count = gate
    group = views.STATE.group
    barrier = threading.Barrier(5)

    def sync_request():
        client = Client()
        barrier.wait()
        return client.get("/items")

    async def main():
        threads = [start(sync_request) for _ in range(5)]
        tasks = [asyncio.create_task(AsyncClient().get("/aitems")) for _ in range(10)]
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        await until(lambda: followers_of(group, "items") == 14, "all 15 requests on one flight")
        gate.finish()
        return await asyncio.gather(*tasks), threads

    responses, threads = asyncio.run(main())
    for t in threads:
        t.join()
        responses.append(t.result)
    assert [r.json() for r in responses] == [{"items": ["bolt", "nut", "washer"]}] * 15
    assert gate.calls == 1


def test_django_sync_and_async_cache_views_share_one_rebuild(django_items):
    from django.core.cache import caches  # noqa: PLC0415
    from django.test import AsyncClient, Client  # noqa: PLC0415

    views = django_items
    caches["default"].clear()
    gate = Gate()
    views.STATE.price = gate
    group = views.STATE.group

    async def main():
        thread = start(lambda: Client().get("/cached-price/LTC"))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        tasks = [asyncio.create_task(AsyncClient().get("/acached-price/LTC")) for _ in range(5)]
        await until(lambda: len(group.keys()) == 1 and followers_of(group, group.keys()[0]) == 5, "5 async joins")
        gate.finish(88.0)
        return await asyncio.gather(*tasks), thread

    try:
        responses, thread = asyncio.run(main())
    finally:
        views.STATE.price = lambda symbol: 1.0
    thread.join()
    responses.append(thread.result)
    assert [r.json() for r in responses] == [{"symbol": "LTC", "price": 88.0}] * 6
    assert gate.calls == 1
    assert caches["default"].get("price:LTC") == 88.0
