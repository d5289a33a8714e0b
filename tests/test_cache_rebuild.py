"""CacheFiller / cache_fill: one rebuild per missing key, over dict, cachetools, Django LocMem and Django Redis."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import MutableMapping

import pytest
from helpers import Gate, followers_of, start, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from singleflight_sync import MISSING, CacheFiller, FlightTimeoutError, Group, cache_fill

N = 100

if not os.environ.get("CI"):  # the integration extra installs Django in CI: a missing one must fail there
    pytest.importorskip("django")

import django_project  # noqa: E402

django_project.setup()

from django.core.cache import cache as django_default_cache  # noqa: E402
from django.core.cache.backends.locmem import LocMemCache  # noqa: E402


def need_cachetools():
    """cachetools, or a skip (a failure under CI, where the integration extra installs it)."""
    if os.environ.get("CI"):
        import cachetools  # noqa: PLC0415

        return cachetools
    return pytest.importorskip("cachetools")


# -- a private Redis server -----------------------------------------------------------


# redis_url: the session's Redis server (tests/conftest.py).


def disconnect(cache) -> None:
    """Delete this cache's keys (the server may be shared), then close its sockets.

    Django's RedisCache.close() leaves the connection pools open, and
    clear() would flush the whole database.
    """
    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:*"))
    if keys:
        client.delete(*keys)
    for pool in cache._cache._pools.values():
        pool.disconnect()


# -- the caches under test ----------------------------------------------------------------


def make_cache(kind: str, request: pytest.FixtureRequest) -> tuple[object, dict]:
    """A fresh cache of ``kind`` and the CacheFiller options it needs."""
    if kind == "dict":
        return {}, {}
    if kind == "cachetools":
        # cachetools caches are not thread-safe: lock= guards every read and write.
        return need_cachetools().TTLCache(maxsize=1000, ttl=60), {"lock": threading.Lock()}
    if kind == "locmem":
        return LocMemCache(f"rebuild-{uuid.uuid4()}", {}), {"ttl": 60}
    if kind == "django-proxy":
        django_default_cache.clear()
        return django_default_cache, {"ttl": 60}
    if kind == "redis":
        from django.core.cache.backends.redis import RedisCache  # noqa: PLC0415

        url = request.getfixturevalue("redis_url")
        cache = RedisCache(url, {"KEY_PREFIX": f"sf-{uuid.uuid4().hex}"})
        request.addfinalizer(lambda: disconnect(cache))
        # Django creates its connection pool lazily without a lock: 100 threads
        # arriving at once could each create one and orphan the others' sockets.
        cache.get("warm-up")
        return cache, {"ttl": 60}
    raise AssertionError(kind)


KINDS = ["dict", "cachetools", "locmem", "django-proxy", "redis"]


@pytest.fixture(params=KINDS)
def cache_and_options(request: pytest.FixtureRequest) -> tuple[object, dict]:
    return make_cache(request.param, request)


def test_hundred_misses_at_once_build_once(cache_and_options):
    cache, options = cache_and_options
    group = Group()
    filler = CacheFiller(cache, group=group, **options)
    gate = Gate({"rows": [1, 2, 3]})
    barrier = threading.Barrier(N)

    def request():
        barrier.wait()
        return filler.fill("report:today", gate)

    threads = [start(request) for _ in range(N)]
    assert gate.entered.wait(10)
    # Every other thread missed (nothing is stored while the build is held) and joined.
    wait_until(lambda: followers_of(group, filler._flight_key("report:today")) == N - 1, what="99 followers")
    gate.finish({"rows": [1, 2, 3]})
    for t in threads:
        t.join()
        assert t.result == {"rows": [1, 2, 3]}
    assert gate.calls == 1
    assert cache.get("report:today") == {"rows": [1, 2, 3]}
    s = group.stats()
    assert (s.calls, s.executions, s.shared, s.in_flight) == (N, 1, N - 1, 0)
    # A hit does not enter a flight at all.
    assert filler.fill("report:today", lambda: pytest.fail("rebuilt a cached value")) == {"rows": [1, 2, 3]}
    assert group.stats().calls == N


def test_a_late_miss_finds_the_stored_value_inside_the_flight(cache_and_options):
    """A caller that missed before the value was stored, and enters after the flight landed, must not rebuild."""
    cache, options = cache_and_options
    group = Group()
    builds = []
    leader = CacheFiller(cache, group=group, **options)
    missed = threading.Event()
    go_on = threading.Event()

    late = CacheFiller(cache, group=group, scope=leader._scope, **options)
    read = late._read

    def held_read(key):
        # The late caller's first read happens, then it is held between its miss and the flight.
        value = read(key)
        if not missed.is_set():
            missed.set()
            assert go_on.wait(10)
        return value

    late._read = held_read
    t = start(late.fill, "k", lambda: builds.append("late") or "late value")
    assert missed.wait(10)
    assert leader.fill("k", lambda: builds.append("leader") or "leader value") == "leader value"
    assert not group.in_flight(leader._flight_key("k"))
    go_on.set()
    t.join()
    assert t.result == "leader value"
    assert builds == ["leader"]
    # The late caller did lead a flight of its own: the double-check is what saved the rebuild.
    assert group.stats().executions == 2


def test_none_is_cached_and_missing_is_a_miss(cache_and_options):
    cache, options = cache_and_options
    filler = CacheFiller(cache, **options)
    builds = []
    assert filler.fill("nothing", lambda: builds.append(1)) is None
    assert filler.fill("nothing", lambda: builds.append(2)) is None
    assert builds == [1]
    assert repr(MISSING) == "MISSING"
    assert not MISSING


def test_missing_survives_copy_and_pickle():
    import copy  # noqa: PLC0415
    import pickle  # noqa: PLC0415

    assert copy.copy(MISSING) is MISSING
    assert copy.deepcopy(MISSING) is MISSING
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING


def test_a_failed_build_stores_nothing_and_reaches_every_caller(cache_and_options):
    cache, options = cache_and_options
    group = Group()
    filler = CacheFiller(cache, group=group, **options)
    gate = Gate()
    threads = [start(filler.fill, "flaky", gate) for _ in range(5)]
    assert gate.entered.wait(10)
    wait_until(lambda: followers_of(group, filler._flight_key("flaky")) == 4, what="4 followers")
    gate.fail(LookupError("backend down"))
    errors = []
    for t in threads:
        with pytest.raises(LookupError, match="backend down") as info:
            t.join()
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 5
    assert gate.calls == 1
    assert cache.get("flaky", MISSING) is MISSING
    assert filler.fill("flaky", lambda: "second try") == "second try"


def test_follower_timeout(cache_and_options):
    cache, options = cache_and_options
    group = Group()
    filler = CacheFiller(cache, group=group, timeout=0.05, **options)
    gate = Gate("slow")
    leader = start(filler.fill, "slow", gate)
    assert gate.entered.wait(10)
    with pytest.raises(FlightTimeoutError) as info:
        filler.fill("slow", lambda: "never")
    assert info.value.key == filler._flight_key("slow")
    gate.finish("slow")
    leader.join()
    assert leader.result == "slow"
    assert filler.fill("slow", lambda: "never") == "slow"


# -- ttl --------------------------------------------------------------------------------------


def test_ttl_reaches_redis(redis_url):
    import redis  # noqa: PLC0415
    from django.core.cache.backends.redis import RedisCache  # noqa: PLC0415

    cache = RedisCache(redis_url, {"KEY_PREFIX": f"sf-{uuid.uuid4().hex}"})
    client = redis.Redis.from_url(redis_url)
    try:
        cache_fill(cache, "with-ttl", lambda: "v", ttl=120)
        cache_fill(cache, "no-expiry", lambda: "v", ttl=None)
        cache_fill(cache, "backend-default", lambda: "v")
        assert 110 <= client.ttl(cache.make_and_validate_key("with-ttl")) <= 120
        assert client.ttl(cache.make_and_validate_key("no-expiry")) == -1  # Django: None = never expire
        assert 290 <= client.ttl(cache.make_and_validate_key("backend-default")) <= 300  # Django's default 300 s
    finally:
        client.close()
        disconnect(cache)


def test_ttl_zero_in_django_means_do_not_keep():
    cache = LocMemCache(f"ttl0-{uuid.uuid4()}", {})
    builds = []
    for _ in range(3):
        assert cache_fill(cache, "k", lambda: builds.append(1) or "v", ttl=0) == "v"
    assert len(builds) == 3


def test_ttl_is_refused_for_a_mapping():
    with pytest.raises(TypeError, match=r"ttl=5 cannot be applied to a dict"):
        CacheFiller({}, ttl=5)
    with pytest.raises(TypeError, match=r"ttl=None cannot be applied to a TTLCache"):
        CacheFiller(need_cachetools().TTLCache(10, 10), ttl=None)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ttl": "60"}, TypeError, r"^ttl must be a number of seconds or None"),
        ({"ttl": True}, TypeError, r"^ttl must be"),
        ({"ttl": -1}, ValueError, r"^ttl must be >= 0"),
        ({"ttl": float("nan")}, ValueError, r"^ttl must be >= 0"),
        ({"timeout": 0}, ValueError, r"^timeout must be > 0"),
        ({"group": "g"}, TypeError, r"^group must be a singleflight_sync.Group, got str"),
        ({"lock": object()}, TypeError, r"^lock must be a context manager"),
    ],
)
def test_bad_options_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        CacheFiller(LocMemCache("bad-options", {}), **kwargs)


@pytest.mark.parametrize("cache", [[], "redis://localhost", object(), frozenset()])
def test_a_cache_without_either_interface_is_refused(cache):
    with pytest.raises(TypeError, match=r"^cache must have get\(key, default\) and set\(key, value"):
        CacheFiller(cache)


def test_a_read_only_mapping_is_refused():
    from types import MappingProxyType  # noqa: PLC0415

    with pytest.raises(TypeError, match=r"got mappingproxy$"):
        CacheFiller(MappingProxyType({}))


# -- scopes, groups and the decorator -----------------------------------------------------


def test_different_caches_never_share_a_flight():
    group = Group()
    a, b = {}, {}
    gate = Gate("from a")
    t = start(cache_fill, a, "k", gate, group=group)
    assert gate.entered.wait(10)
    # Same key, other cache: its own flight, its own build, its own value.
    assert cache_fill(b, "k", lambda: "from b", group=group) == "from b"
    gate.finish("from a")
    t.join()
    assert (a, b) == ({"k": "from a"}, {"k": "from b"})


def test_scope_joins_per_thread_cache_objects():
    """Django's caches[alias] is one object per thread; scope= makes them one cache for the flights."""
    from django.core.cache import caches  # noqa: PLC0415

    group = Group()
    caches["default"].clear()
    gate = Gate(3)
    threads = [start(lambda: cache_fill(caches["default"], "n", gate, group=group, scope="default")) for _ in range(8)]
    assert gate.entered.wait(10)
    wait_until(lambda: followers_of(group, next(iter(group.keys()), None)) == 7, what="7 followers")
    gate.finish(3)
    for t in threads:
        t.join()
        assert t.result == 3
    assert gate.calls == 1


def test_cache_fill_shares_the_default_group():
    cache: dict = {}
    gate = Gate("v")
    t = start(cache_fill, cache, "k", gate)
    assert gate.entered.wait(10)
    f = CacheFiller(cache)
    wait_until(lambda: f.group.in_flight(f._flight_key("k")), what="the flight")
    joiner = start(cache_fill, cache, "k", lambda: pytest.fail("built twice"))
    wait_until(lambda: followers_of(f.group, f._flight_key("k")) == 1, what="the follower")
    gate.finish("v")
    t.join()
    joiner.join()
    assert (t.result, joiner.result) == ("v", "v")


def test_decorator_form():
    cache: dict = {}
    filler = CacheFiller(cache)
    calls = []

    @filler.cached(key=lambda user_id, *, full=False: f"user:{user_id}:{full}")
    def load_user(user_id, *, full=False):
        """Load a user."""
        calls.append(user_id)
        return {"id": user_id, "full": full}

    assert load_user(1) == {"id": 1, "full": False}
    assert load_user(1) == {"id": 1, "full": False}
    assert load_user(1, full=True) == {"id": 1, "full": True}
    assert calls == [1, 1]
    assert set(cache) == {"user:1:False", "user:1:True"}
    assert load_user.__wrapped__.__doc__ == "Load a user."
    assert load_user.__name__ == "load_user"
    assert load_user.filler is filler
    with pytest.raises(TypeError, match=r"^key must be a callable"):
        filler.cached(key="user")


def test_lock_is_not_held_while_building():
    lock = threading.Lock()
    cache = need_cachetools().LRUCache(maxsize=10)

    def build():
        assert not lock.locked()
        return 1

    assert cache_fill(cache, "k", build, lock=lock) == 1
    assert cache["k"] == 1


# -- hypothesis: any sequence of fills behaves like "get, else build and store" --------------


class CountingDict(MutableMapping):
    def __init__(self) -> None:
        self.data: dict = {}
        self.writes = 0

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.writes += 1
        self.data[key] = value

    def __delitem__(self, key):
        del self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["fill", "delete"]), st.sampled_from(["a", "b", 3, None]), st.none() | st.integers()),
        max_size=30,
    )
)
def test_sequential_fills_match_a_model(ops):
    cache = CountingDict()
    filler = CacheFiller(cache, group=Group())
    model: dict = {}
    builds = 0
    for op, key, value in ops:
        if op == "delete":
            cache.pop(key, None)
            model.pop(key, None)
            continue
        expected = model.get(key, value)
        before = builds

        def build(value=value):
            nonlocal builds
            builds += 1
            return value

        assert filler.fill(key, build) == expected
        assert builds == before + (key not in model)
        model.setdefault(key, value)
    assert cache.data == model
    assert cache.writes == builds


def test_redis_server_fixture_is_used_or_ci_fails(redis_url):
    with contextlib.closing(socket.create_connection(_host_port(redis_url), timeout=5)):
        pass


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379
