"""singleflight_sync.django.SingleFlightCache over real Django backends: LocMem, files, the database and Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # the integration extra installs Django in CI: a missing one must fail there
    pytest.importorskip("django")

import django_project
from helpers import Gate, followers_of, start, wait_until

django_project.setup()

from asgiref.sync import sync_to_async  # noqa: E402 - Django's dependency: after the importorskip
from django.conf import settings  # noqa: E402 - after setup()
from django.core.cache import caches  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.test import override_settings  # noqa: E402

from singleflight_sync import MISSING, _django  # noqa: E402
from singleflight_sync._cachestate import Shared  # noqa: E402
from singleflight_sync.django import SingleFlightCache  # noqa: E402

N = 16
TABLE = "singleflight_test_cache"
NAMESPACE = "sf-tests-django"
BACKENDS = {
    "locmem": "django.core.cache.backends.locmem.LocMemCache",
    "file": "django.core.cache.backends.filebased.FileBasedCache",
    "db": "django.core.cache.backends.db.DatabaseCache",
    "redis": "django.core.cache.backends.redis.RedisCache",
    "redis+REDIS": "django.core.cache.backends.redis.RedisCache",  # rebuilds coordinated across processes
}
KINDS = list(BACKENDS)
# Values stored without envelopes, and in envelopes (REFRESH_AFTER on).
MODES = {"plain": {}, "envelope": {"REFRESH_AFTER": 30}}


class FakeClock:
    """The wall clock of a filler, moved by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def close_pools(cache) -> None:
    """Close the sockets of a RedisCache (Django's close() leaves its pools open)."""
    for pool in cache._cache._pools.values():
        pool.disconnect()


class ClosingExecutor(ThreadPoolExecutor):
    """The refresh executor of these tests: closes the database connections a refresh opened in its thread."""

    def submit(self, fn, /, *args, **kwargs):
        def run():
            try:
                return fn(*args, **kwargs)
            finally:
                connections.close_all()

        return super().submit(run)


class Setup:
    """One backend of ``kind`` behind a SingleFlightCache, installed as ``caches["sf"]`` for one test."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self.prefix = f"sf-{uuid.uuid4().hex}"
        self.redis_url = request.getfixturevalue("redis_url") if kind.startswith("redis") else None
        if kind == "db":
            request.getfixturevalue("cache_table")
        self.location = {
            "locmem": f"sf-{uuid.uuid4().hex}",
            "file": str(tmp_path / "file-cache"),
            "db": TABLE,
        }.get(kind, self.redis_url)
        self.clock = FakeClock()
        self.executor = ClosingExecutor(2, thread_name_prefix="sf-test-refresh")
        self._override: override_settings | None = None
        self._made: list[SingleFlightCache] = []  # every thread's instance, closed at the end
        request.addfinalizer(self.close)

    def params(self, timeout: float | None = 300, **options: object) -> dict:
        sf_options: dict = {"BACKEND": BACKENDS[self.kind], **options}
        if self.kind == "redis+REDIS":
            sf_options.setdefault("REDIS", self.redis_url)
            sf_options.setdefault("NAMESPACE", NAMESPACE)
        return {
            "BACKEND": "singleflight_sync.django.SingleFlightCache",
            "LOCATION": self.location,
            "KEY_PREFIX": self.prefix,
            "TIMEOUT": timeout,
            "OPTIONS": sf_options,
        }

    def use(self, timeout: float | None = 300, **options: object) -> SingleFlightCache:
        """Install ``caches["sf"]`` with these options; return this thread's instance."""
        self._disable()
        self._override = override_settings(CACHES={**settings.CACHES, "sf": self.params(timeout, **options)})
        self._override.enable()
        return self.cache()

    def cache(self) -> SingleFlightCache:
        """This thread's ``caches["sf"]`` (Django makes one per thread), on the fake clock."""
        cache = caches["sf"]
        assert isinstance(cache, SingleFlightCache)
        cache.filler._clock = self.clock
        cache.filler._executor = self.executor
        if all(made is not cache for made in self._made):
            self._made.append(cache)
        if self.kind.startswith("redis"):
            # Django creates its connection pool lazily without a lock.
            cache.get("warm-up")
        return cache

    def thread(self, fn, *args):
        """Start ``fn(*args)`` in a thread that releases its connections when it ends."""

        def body():
            try:
                return fn(*args)
            finally:
                self.release_thread()

        return start(body)

    def release_thread(self) -> None:
        connections.close_all()

    def raw(self, key: str):
        """What the wrapped backend holds for ``key`` (an envelope, a tombstone, a value, or MISSING)."""
        return caches["sf"].wrapped.get(key, MISSING)

    def _disable(self) -> None:
        if self._override is not None:
            self._override.disable()
            self._override = None

    def other(self, **options: object) -> SingleFlightCache:
        """Another process's instance of the cache, simulated: it does not share this process's invalidations."""
        other = SingleFlightCache(self.location, self.params(**options))
        other.filler._shared = Shared()
        other.filler._clock = self.clock
        self._made.append(other)
        return other

    def close(self) -> None:
        # Background refreshes use the instance of the thread that started them: wait for them first.
        self.executor.shutdown(wait=True)
        if self.kind.startswith("redis") and self._made:
            client = self._made[0]._cache.get_client(write=True)
            keys = list(client.scan_iter(match=f"{self.prefix}:*"))
            if keys:
                client.delete(*keys)
            for cache in self._made:
                close_pools(cache)
        self._made.clear()
        self._disable()
        connections.close_all()


@pytest.fixture(scope="module")
def cache_table():
    call_command("createcachetable", TABLE, verbosity=0)
    yield
    connections.close_all()


@pytest.fixture(scope="module", autouse=True)
def close_redis_groups():
    """Close the RedisGroups made for REDIS (one per URL and namespace, kept by the module)."""
    yield
    with _django._groups_lock:
        groups = list(_django._groups.items())
        _django._groups.clear()
    for _, group in groups:
        group.close()


@pytest.fixture(params=KINDS)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Setup:
    return Setup(request.param, request, tmp_path)


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> dict:
    return MODES[request.param]


def arun(coro):
    """asyncio.run(coro), closing the database connections its executor threads opened."""

    async def main():
        loop = asyncio.get_running_loop()
        executor = ClosingExecutor(4, thread_name_prefix="sf-test-loop")
        loop.set_default_executor(executor)
        try:
            return await coro
        finally:
            # Django's sync_to_async runs in a thread of its own.
            await sync_to_async(connections.close_all)()

    return asyncio.run(main())


def flight_key(cache: SingleFlightCache, key: str):
    return cache.filler._flight_key((key, cache.version))


# -- get_or_set: one build for a burst -----------------------------------------------------


def test_a_burst_of_misses_builds_once(setup, mode):
    setup.use(**mode)
    gate = Gate({"rows": [1, 2, 3]})
    barrier = threading.Barrier(N)

    def request():
        cache = setup.cache()  # each thread's own caches["sf"], as in a Django server
        barrier.wait()
        return cache.get_or_set("report", gate, 60)

    threads = [setup.thread(request) for _ in range(N)]
    assert gate.entered.wait(10)
    cache = setup.cache()
    group = cache.filler.group
    # Nothing is stored while the build is held: every other request missed and waits for it.
    wait_until(lambda: followers_of(group, flight_key(cache, "report")) == N - 1, what=f"{N - 1} followers")
    assert cache.get("report") is None
    gate.finish({"rows": [1, 2, 3]})
    for t in threads:
        t.join()
        assert t.result == {"rows": [1, 2, 3]}
    assert gate.calls == 1
    # Stored for everyone: plain reads see the value, and the next get_or_set is a hit.
    assert cache.get("report") == {"rows": [1, 2, 3]}
    assert cache.get_or_set("report", lambda: pytest.fail("rebuilt a cached value"), 60) == {"rows": [1, 2, 3]}
    stats = cache.filler.stats()
    assert (stats.waits, stats.hits) == (N, 1)


def test_a_value_that_is_not_callable_is_stored_as_the_default(setup, mode):
    cache = setup.use(**mode)
    assert cache.get_or_set("k", "default", 60) == "default"
    assert cache.get_or_set("k", "other", 60) == "default"
    assert cache.get("k") == "default"
    assert cache.get_or_set("none", None, 60) is None
    assert cache.get_or_set("none", lambda: pytest.fail("None is a cached value"), 60) is None


def test_version_is_part_of_the_key(setup, mode):
    cache = setup.use(**mode)
    assert cache.get_or_set("k", lambda: "v1", 60, version=1) == "v1"
    assert cache.get_or_set("k", lambda: "v2", 60, version=2) == "v2"
    assert (cache.get("k", version=1), cache.get("k", version=2), cache.get("k")) == ("v1", "v2", "v1")


def test_a_failed_build_stores_nothing(setup, mode):
    cache = setup.use(**mode)
    gate = Gate()
    threads = [setup.thread(lambda: setup.cache().get_or_set("flaky", gate, 60)) for _ in range(4)]
    assert gate.entered.wait(10)
    wait_until(lambda: followers_of(cache.filler.group, flight_key(cache, "flaky")) == 3, what="3 followers")
    gate.fail(LookupError("database down"))
    for t in threads:
        with pytest.raises(LookupError, match="database down"):
            t.join()
    assert gate.calls == 1
    assert setup.raw("flaky") is MISSING
    assert cache.get_or_set("flaky", lambda: "second try", 60) == "second try"


# -- REFRESH_AFTER: stale while one refresh runs ---------------------------------------------


def test_a_stale_hit_is_served_at_once_while_one_refresh_runs(setup):
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("price", lambda: "old", 100) == "old"
    setup.clock.now += 40  # past REFRESH_AFTER, within the timeout
    gate = Gate("new")
    barrier = threading.Barrier(N)

    def request():
        cache = setup.cache()
        barrier.wait()
        return cache.get_or_set("price", gate, 100)

    threads = [setup.thread(request) for _ in range(N)]
    # Every request returns the old value while the refresh is still held.
    for t in threads:
        t.join()
        assert t.result == "old"
    assert gate.entered.wait(10)
    assert gate.calls == 1
    assert cache.get("price") == "old"
    gate.finish("new")
    wait_until(lambda: cache.get("price") == "new", what="the refresh to store its value")
    assert gate.calls == 1
    assert cache.get_or_set("price", lambda: pytest.fail("refreshed twice"), 100) == "new"
    stats = cache.filler.stats()
    assert (stats.stale_hits, stats.refreshes_started, stats.waits) == (N, 1, 1)


def test_a_timeout_not_longer_than_refresh_after_is_only_stampede_safe(setup):
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("k", lambda: "old", 20) == "old"
    setup.clock.now += 25  # past the 20 s timeout: a miss for the reader, which rebuilds and waits
    assert cache.get("k") is None
    assert cache.get_or_set("k", lambda: "new", 20) == "new"
    assert cache.filler.stats().refreshes_started == 0


def test_the_default_timeout_applies(setup):
    cache = setup.use(timeout=50, REFRESH_AFTER=30)
    assert cache.get_or_set("k", lambda: "v1") == "v1"
    assert cache.wrapped.get("k")["ttl"] == 50.0
    setup.clock.now += 60
    assert cache.get("k") is None
    assert cache.get_or_set("k", lambda: "v2") == "v2"


def test_stale_if_error_serves_the_last_value_but_reads_see_a_miss(setup):
    cache = setup.use(STALE_IF_ERROR=60)
    assert cache.get_or_set("k", lambda: "good", 10) == "good"
    setup.clock.now += 20  # past the timeout; kept only for STALE_IF_ERROR
    raw = setup.raw("k")
    assert isinstance(raw, dict)
    assert raw["value"] == "good"
    # Plain reads see a miss, as for any expired entry...
    assert cache.get("k") is None
    assert cache.get("k", "dflt") == "dflt"
    assert cache.get_many(["k"]) == {}
    assert not cache.has_key("k")
    assert "k" not in cache

    # ...and a failing rebuild serves the last good value.
    def fail():
        raise LookupError("down")

    assert cache.get_or_set("k", fail, 10) == "good"
    assert cache.filler.stats().refreshes_failed == 1


# -- plain reads unwrap envelopes --------------------------------------------------------------


def test_get_and_get_many_see_plain_values(setup):
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("a", lambda: {"x": 1}, 60) == {"x": 1}
    assert cache.get_or_set("b", lambda: None, 60) is None
    cache.set("c", "plain")
    raw = setup.raw("a")
    assert isinstance(raw, dict)
    assert raw["__singleflight_envelope__"] == 1  # stored in an envelope...
    assert cache.get("a") == {"x": 1}  # ...read as the value
    assert cache.get("b", "dflt") is None
    assert cache.get_many(["a", "b", "c", "absent"]) == {"a": {"x": 1}, "b": None, "c": "plain"}
    assert cache.has_key("a")
    assert cache.has_key("b")
    assert "a" in cache
    # A plain value written by set() is served by get_or_set as it is.
    assert cache.get_or_set("c", lambda: pytest.fail("rebuilt a plain value"), 60) == "plain"


# -- delete wins over a rebuild that started before it ----------------------------------------


def test_delete_during_a_rebuild_keeps_its_value_out(setup, mode):
    cache = setup.use(**mode)
    gate = Gate("old")
    leader = setup.thread(lambda: setup.cache().get_or_set("k", gate, 60))
    assert gate.entered.wait(10)
    assert cache.delete("k") is False  # nothing was stored yet
    setup.clock.now += 1
    gate.finish("old")
    leader.join()
    assert leader.result == "old"  # the build's own caller still gets its value
    assert cache.get("k") is None
    assert not cache.has_key("k")
    raw = setup.raw("k")
    assert raw is MISSING or "value" not in raw  # nothing, or a tombstone
    assert cache.get_or_set("k", lambda: "new", 60) == "new"
    assert cache.get("k") == "new"


def test_a_caller_after_delete_does_not_join_the_older_rebuild(setup, mode):
    cache = setup.use(**mode)
    gate = Gate("old")
    leader = setup.thread(lambda: setup.cache().get_or_set("k", gate, 60))
    assert gate.entered.wait(10)
    cache.delete("k")
    setup.clock.now += 1
    builds = []
    if setup.kind == "redis+REDIS":
        # The older rebuild holds the key's lease in Redis: this caller waits for it to land, finds that it
        # stored nothing, and builds anew.
        after = setup.thread(lambda: setup.cache().get_or_set("k", lambda: builds.append(1) or "new", 60))
        key = flight_key(cache, "k")
        wait_until(lambda: cache.filler.group.in_flight(key), what="the caller after the delete to wait")
        gate.finish("old")
        after.join()
        assert after.result == "new"
    else:
        # Not held by the build that started before the delete: this caller builds anew at once.
        assert cache.get_or_set("k", lambda: builds.append(1) or "new", 60) == "new"
        gate.finish("old")
    leader.join()
    assert leader.result == "old"
    assert builds == [1]
    assert cache.get("k") == "new"


def test_delete_during_a_refresh_keeps_its_value_out(setup):
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("k", lambda: "v1", 100) == "v1"
    setup.clock.now += 40
    gate = Gate("v2")
    assert cache.get_or_set("k", gate, 100) == "v1"  # stale: served, and the refresh starts
    assert gate.entered.wait(10)
    assert cache.delete("k") is True
    setup.clock.now += 1
    assert cache.get("k") is None
    gate.finish("v2")
    # The refresh has landed when its flight is gone; it stored nothing.
    wait_until(lambda: not cache.filler.group.in_flight(flight_key(cache, "k")), what="the refresh to land")
    assert cache.get("k") is None
    assert cache.get_or_set("k", lambda: "v3", 100) == "v3"
    assert gate.calls == 1


def test_delete_stops_a_refresh_in_another_process(setup):
    """A tombstone stops a rebuild that another process started before the delete (simulated: its own state)."""
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("k", lambda: "v1", 100) == "v1"
    setup.clock.now += 200  # expired: the other process rebuilds, and its callers wait
    other = setup.other(REFRESH_AFTER=30)
    gate = Gate("v2")
    t = setup.thread(other.get_or_set, "k", gate, 100)
    assert gate.entered.wait(10)
    setup.clock.now += 1  # the delete comes after the rebuild started
    cache.delete("k")
    setup.clock.now += 1
    gate.finish("v2")
    t.join()
    assert t.result == "v2"
    assert cache.get("k") is None
    assert cache.get_or_set("k", lambda: "v3", 100) == "v3"


def test_set_during_a_rebuild_wins(setup, mode):
    cache = setup.use(**mode)
    gate = Gate("old")
    leader = setup.thread(lambda: setup.cache().get_or_set("k", gate, 60))
    assert gate.entered.wait(10)
    cache.set("k", "written")
    gate.finish("old")
    leader.join()
    assert cache.get("k") == "written"


# -- everything else passes through -------------------------------------------------------------


def test_the_rest_of_the_api_passes_through(setup, mode):
    cache = setup.use(**mode)
    cache.set("a", 1)
    assert cache.get("a") == 1
    assert cache.wrapped.get("a") == 1  # set() stores plain values
    assert cache.add("a", 2) is False
    assert cache.add("b", 2) is True
    assert cache.get("b") == 2
    assert cache.incr("a") == 2
    assert cache.incr("a", 10) == 12
    assert cache.decr("a", 2) == 10
    with pytest.raises(ValueError, match="not found"):
        cache.incr("absent")
    assert cache.set_many({"c": 3, "d": [4]}) == []
    assert cache.get_many(["a", "b", "c", "d", "absent"]) == {"a": 10, "b": 2, "c": 3, "d": [4]}
    assert cache.has_key("c")
    assert cache.touch("c", 100) is True
    assert cache.touch("absent", 100) is False
    assert cache.delete("c") is True
    assert cache.delete("c") is False
    assert not cache.has_key("c")
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "d"]) == {"d": [4]}
    cache.set("v", "at version 2", version=2)
    assert cache.get("v") is None
    assert cache.get("v", version=2) == "at version 2"
    cache.clear()
    assert cache.get_many(["d", "v"]) == {}
    assert cache.get("v", version=2) is None


def test_the_async_api_passes_through(setup, mode):
    cache = setup.use(**mode)

    async def main():
        await cache.aset("a", 1)
        assert await cache.aget("a") == 1
        assert await cache.aadd("a", 2) is False
        assert await cache.aadd("b", 2) is True
        assert await cache.aincr("a", 5) == 6
        assert await cache.adecr("a") == 5
        await cache.aset_many({"c": 3, "d": 4})
        assert await cache.aget_many(["a", "b", "c", "d", "absent"]) == {"a": 5, "b": 2, "c": 3, "d": 4}
        assert await cache.ahas_key("c")
        assert await cache.atouch("c", 100) is True
        assert await cache.adelete("c") is True
        assert not await cache.ahas_key("c")
        await cache.adelete_many(["a", "b"])
        assert await cache.aget_many(["a", "b", "d"]) == {"d": 4}
        assert await cache.aget_or_set("e", lambda: "built", 60) == "built"
        assert await cache.aget("e") == "built"
        await cache.aclear()
        assert await cache.aget("d") is None

    arun(main())


def test_a_lock_taken_with_add_can_be_taken_again_after_delete(setup, mode):
    """The classic Django lock: add(), work, delete(); the next add() must succeed."""
    cache = setup.use(**mode)
    for _ in range(3):
        assert cache.add("lock", "me", 30) is True
        assert cache.add("lock", "other", 30) is False
        assert cache.delete("lock") is True
    cache.delete("never-taken")
    assert cache.add("never-taken", "me", 30) is True
    assert cache.get("never-taken") == "me"


def test_a_deleted_get_or_set_key_reads_as_missing_everywhere(setup):
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("k", lambda: 5, 60) == 5
    assert cache.delete("k") is True
    assert cache.get("k") is None
    assert cache.get_many(["k"]) == {}
    assert not cache.has_key("k")
    assert cache.delete("k") is False
    assert cache.touch("k", 60) is False
    with pytest.raises(ValueError, match="not found"):
        cache.incr("k")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("k")
    assert cache.add("k", 7, 60) is True
    assert cache.get("k") == 7
    assert cache.incr("k") == 8


def test_incr_and_touch_on_a_value_from_get_or_set(setup):
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("hits", 0, 60) == 0
    assert cache.incr("hits") == 1
    assert cache.incr("hits", 4) == 5
    assert cache.decr("hits") == 4
    assert cache.get("hits") == 4
    assert cache.get_or_set("n", lambda: "v", 60) == "v"
    assert cache.touch("n", 500) is True
    setup.clock.now += 100  # past the first timeout, within the touched one
    assert cache.get("n") == "v"
    setup.clock.now += 500
    assert cache.get("n") is None


# -- asyncio shares rebuilds and refreshes with threads ------------------------------------------


def test_aget_or_set_joins_a_rebuild_led_by_a_thread(setup, mode):
    cache = setup.use(**mode)
    gate = Gate("v")
    leader = setup.thread(lambda: setup.cache().get_or_set("k", gate, 60))
    assert gate.entered.wait(10)

    async def main():
        return await asyncio.gather(*(cache.aget_or_set("k", lambda: "from a task", 60) for _ in range(5)))

    tasks = start(arun, main())
    key = flight_key(cache, "k")
    wait_until(lambda: followers_of(cache.filler.group, key) == 5, what="5 tasks joined")
    gate.finish("v")
    leader.join()
    tasks.join()
    assert tasks.result == ["v"] * 5
    assert gate.calls == 1


def test_a_thread_joins_a_rebuild_led_by_a_task(setup, mode):
    cache = setup.use(**mode)
    gate = Gate("v")

    async def main():
        return await cache.aget_or_set("k", gate, 60)

    task = setup.thread(arun, main())
    assert gate.entered.wait(10)
    threads = [setup.thread(lambda: setup.cache().get_or_set("k", lambda: "from a thread", 60)) for _ in range(4)]
    wait_until(lambda: followers_of(cache.filler.group, flight_key(cache, "k")) == 4, what="4 threads joined")
    gate.finish("v")
    task.join()
    assert task.result == "v"
    for t in threads:
        t.join()
        assert t.result == "v"
    assert gate.calls == 1
    assert cache.get("k") == "v"


def test_aget_or_set_shares_a_refresh_with_threads(setup):
    cache = setup.use(REFRESH_AFTER=30)
    assert cache.get_or_set("k", lambda: "old", 100) == "old"
    setup.clock.now += 40
    gate = Gate("new")
    assert cache.get_or_set("k", gate, 100) == "old"  # a thread starts the refresh
    assert gate.entered.wait(10)

    async def main():
        return await asyncio.gather(*(cache.aget_or_set("k", gate, 100) for _ in range(5)))

    assert arun(main()) == ["old"] * 5  # served at once, joining the refresh
    gate.finish("new")
    wait_until(lambda: cache.get("k") == "new", what="the refresh to store its value")
    assert gate.calls == 1


# -- Redis: rebuilds shared across processes -----------------------------------------------------

CHILD = r"""
import json, sys, threading
from fractions import Fraction

import redis

import django_project

django_project.setup()
from singleflight_sync.django import SingleFlightCache

url, prefix, namespace, n_threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
control = redis.Redis.from_url(url)
options = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "REDIS": url, "NAMESPACE": namespace}
# phase: (the value, the wrapper's options); "envelope" stores the value in an envelope (REFRESH_AFTER).
PHASES = {
    "json": (lambda: {"rows": [1, 2, 3], "pair": (1, 2)}, options),
    "pickle-only": (lambda: Fraction(1, 3), options),
    "envelope": (lambda: Fraction(2, 3), {**options, "REFRESH_AFTER": 30}),
}
out = {}
for phase, (make, phase_options) in PHASES.items():
    params = {"KEY_PREFIX": prefix, "TIMEOUT": 60, "OPTIONS": phase_options}
    def build(phase=phase, make=make):
        control.incr(f"{prefix}:builds:{phase}")
        control.rpush(f"{prefix}:entered:{phase}", 1)
        if control.blpop([f"{prefix}:release:{phase}"], 20) is None:
            raise RuntimeError("never released")
        return make()

    caches = [SingleFlightCache(url, params) for _ in range(n_threads)]  # one per thread, as Django makes them
    for cache in caches:
        cache.get("warm-up")
    barrier = threading.Barrier(n_threads)
    results = [None] * n_threads

    def request(i, phase=phase, build=build):
        barrier.wait()
        results[i] = repr(caches[i].get_or_set(phase, build))

    control.rpush(f"{prefix}:ready:{phase}", 1)
    if control.blpop([f"{prefix}:go:{phase}"], 20) is None:
        raise SystemExit("never started")
    threads = [threading.Thread(target=request, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out[phase] = results
    for cache in caches:
        for pool in cache._cache._pools.values():
            pool.disconnect()
print(json.dumps(out))
"""


def test_one_build_across_processes(redis_url):
    import redis  # noqa: PLC0415

    processes, threads = 3, 4
    prefix = f"sf-{uuid.uuid4().hex}"
    control = redis.Redis.from_url(redis_url)
    probe = SingleFlightCache(
        redis_url,
        {"KEY_PREFIX": prefix, "OPTIONS": {"BACKEND": BACKENDS["redis"], "REDIS": redis_url, "NAMESPACE": NAMESPACE}},
    )
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [here, os.environ.get("PYTHONPATH")] if p)}
    args = [sys.executable, "-c", CHILD, redis_url, prefix, NAMESPACE, str(threads)]
    children = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        expected = {
            "json": repr({"rows": [1, 2, 3], "pair": (1, 2)}),
            "pickle-only": repr(Fraction(1, 3)),
            "envelope": repr(Fraction(2, 3)),
        }
        for phase in expected:
            for _ in range(processes):
                assert control.blpop([f"{prefix}:ready:{phase}"], 30) is not None, "a child did not start"
            control.rpush(f"{prefix}:go:{phase}", *[1] * processes)
            assert control.blpop([f"{prefix}:entered:{phase}"], 10) is not None, "no build started"
            # Every other process waits on the Redis flight: subscribed to its wake-up channel.
            channel = probe.filler.group.redis_key(flight_key(probe, phase), "done")
            wait_until(
                lambda channel=channel: control.pubsub_numsub(channel)[0][1] == processes - 1,
                what="the other processes to wait on the flight",
            )
            # Enough releases for every build, so that a second one fails the count instead of hanging.
            control.rpush(f"{prefix}:release:{phase}", *[1] * processes)
        outputs = []
        for child in children:
            stdout, stderr = child.communicate(timeout=30)
            assert child.returncode == 0, stderr
            outputs.append(json.loads(stdout))
        for phase, value in expected.items():
            assert int(control.get(f"{prefix}:builds:{phase}")) == 1
            assert [out[phase] for out in outputs] == [[value] * threads] * processes
        assert probe.get("json") == {"rows": [1, 2, 3], "pair": (1, 2)}
        assert probe.get("pickle-only") == Fraction(1, 3)
        assert probe.get("envelope") == Fraction(2, 3)
        assert probe.wrapped.get("envelope")["value"] == Fraction(2, 3)  # stored in an envelope
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
        keys = list(control.scan_iter(match=f"{prefix}*"))
        if keys:
            control.delete(*keys)
        control.close()
        close_pools(probe)


@pytest.fixture
def redis_setup(request, tmp_path) -> Setup:
    return Setup("redis+REDIS", request, tmp_path)


def test_a_value_json_cannot_carry_is_shared_too(redis_setup, mode):
    """Django caches pickle their values: REDIS must not limit get_or_set to what JSON can carry."""
    cache = redis_setup.use(**mode)
    assert cache.get_or_set("k", lambda: Fraction(1, 3), 60) == Fraction(1, 3)
    assert cache.get("k") == Fraction(1, 3)


def test_delete_of_a_missing_key_stops_a_rebuild_in_another_process(redis_setup):
    """With REDIS the flight's lease tells that a rebuild runs somewhere: delete leaves a tombstone for it."""
    cache = redis_setup.use(REFRESH_AFTER=30)
    other = redis_setup.other(REFRESH_AFTER=30)
    gate = Gate("old")
    t = redis_setup.thread(other.get_or_set, "k", gate, 100)
    assert gate.entered.wait(10)
    redis_setup.clock.now += 1
    assert cache.delete("k") is False
    redis_setup.clock.now += 1
    gate.finish("old")
    t.join()
    assert cache.get("k") is None
    assert cache.get_or_set("k", lambda: "new", 100) == "new"


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, r"OPTIONS\['BACKEND'\]"),
        ({"BACKEND": 3}, r"OPTIONS\['BACKEND'\]"),
        ({"BACKEND": "no.such.Backend"}, r"OPTIONS\['BACKEND'\].*no\.such\.Backend"),
        ({"BACKEND": BACKENDS["locmem"], "REFRESH": 30}, r"unknown OPTIONS \['REFRESH'\]"),
        ({"BACKEND": BACKENDS["locmem"], "REFRESH_AFTER": "30"}, r"REFRESH_AFTER"),
        ({"BACKEND": BACKENDS["locmem"], "REFRESH_AFTER": 0}, r"REFRESH_AFTER"),
        ({"BACKEND": BACKENDS["locmem"], "STALE_IF_ERROR": -1}, r"STALE_IF_ERROR"),
        ({"BACKEND": BACKENDS["locmem"], "BETA": "high"}, r"BETA"),
        ({"BACKEND": BACKENDS["locmem"], "WAIT_TIMEOUT": 0}, r"WAIT_TIMEOUT"),
        ({"BACKEND": BACKENDS["locmem"], "REDIS": 6379}, r"REDIS"),
        ({"BACKEND": BACKENDS["locmem"], "REDIS": "redis://localhost", "NAMESPACE": ""}, r"NAMESPACE"),
        ({"BACKEND": BACKENDS["locmem"], "OPTIONS": ["x"]}, r"OPTIONS\['OPTIONS'\]"),
    ],
)
def test_bad_configuration_names_the_option(options, match):
    with pytest.raises(ImproperlyConfigured, match=match):
        SingleFlightCache("bad", {"OPTIONS": options})


def test_bad_configuration_is_reported_through_caches():
    bad = {"BACKEND": "singleflight_sync.django.SingleFlightCache", "OPTIONS": {"BACKEND": BACKENDS["locmem"], "X": 1}}
    with override_settings(CACHES={**settings.CACHES, "bad": bad}), pytest.raises(ImproperlyConfigured, match="X"):
        caches["bad"]


def test_the_wrapped_backend_gets_its_own_options_and_the_common_ones(tmp_path):
    cache = SingleFlightCache(
        str(tmp_path),
        {
            "TIMEOUT": 77,
            "KEY_PREFIX": "p",
            "VERSION": 3,
            "OPTIONS": {"BACKEND": BACKENDS["file"], "OPTIONS": {"MAX_ENTRIES": 5}, "REFRESH_AFTER": 10},
        },
    )
    assert type(cache.wrapped).__name__ == "FileBasedCache"
    assert (cache.wrapped.default_timeout, cache.wrapped.key_prefix, cache.wrapped.version) == (77, "p", 3)
    assert cache.wrapped._max_entries == 5
    assert cache._dir == cache.wrapped._dir  # the wrapped backend's attributes are reachable
