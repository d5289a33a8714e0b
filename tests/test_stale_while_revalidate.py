"""CacheFiller's soft expiry: stale-while-revalidate, stale-if-error, early refresh (XFetch), invalidation.

Time is a fake wall clock (``clock=``) that only the test moves; threads are
held with events, and background refreshes run on a real thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import Gate, start, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from singleflight_sync import CacheFiller, Group
from singleflight_sync import _cache as cache_mod
from singleflight_sync import _cachestate as cachestate
from singleflight_sync._cachestate import REFRESH_THREADS
from singleflight_sync._envelope import DEAD, EXPIRED, FRESH, STALE, Entry, classify, wrap
from singleflight_sync.envelope import MARK, is_envelope, unwrap

N = 50


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self._lock = threading.Lock()
        self.now = now

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool():
    with ThreadPoolExecutor(2, thread_name_prefix="test-refresh") as executor:
        yield executor


def quiet(group: Group) -> None:
    """Wait until no flight (rebuild or refresh) of ``group`` runs."""
    wait_until(lambda: len(group) == 0, what="refreshes to land")


def filler_for(cache, clock, pool, **options) -> CacheFiller:
    options.setdefault("ttl", 100)
    return CacheFiller(cache, group=Group(), clock=clock, refresh_executor=pool, **options)


# -- stale-while-revalidate ----------------------------------------------------------


def test_a_stale_hit_returns_at_once_and_one_refresh_runs_for_every_caller(clock, pool):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, refresh_after=10)
    assert filler.fill("k", lambda: "old") == "old"
    clock.advance(11)
    gate = Gate("new")
    barrier = threading.Barrier(N)

    def read():
        barrier.wait()
        return filler.fill("k", gate)

    threads = [start(read) for _ in range(N)]
    # Every caller returns the old value while the one refresh is held in its build.
    assert [t.join() or t.result for t in threads] == ["old"] * N
    assert gate.entered.wait(10)
    assert gate.calls == 1
    assert filler.group.in_flight(("k",)) is False  # the refresh's key is the filler's, not a bare key
    gate.finish("new")
    quiet(filler.group)
    assert gate.calls == 1
    assert filler.fill("k", lambda: "unused") == "new"
    stats = filler.stats()
    assert stats.stale_hits == N
    assert stats.refreshes_started == 1
    assert stats.waits == 1  # the first fill only


def test_past_ttl_callers_wait_for_the_rebuild(clock, pool):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, ttl=30, refresh_after=10)
    filler.fill("k", lambda: "old")
    clock.advance(31)
    gate = Gate("new")
    first = start(filler.fill, "k", gate)
    assert gate.entered.wait(10)
    others = [start(filler.fill, "k", lambda: "not me") for _ in range(5)]
    wait_until(lambda: filler.stats().waits == 7, what="the callers to wait on the rebuild")
    assert first.is_alive()
    gate.finish("new")
    for t in [first, *others]:
        t.join()
        assert t.result == "new"
    assert gate.calls == 1


def test_a_refresh_is_not_started_while_a_rebuild_of_the_key_runs(clock, pool):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, ttl=30, refresh_after=10)
    filler.fill("k", lambda: "old")
    clock.advance(11)
    gate = Gate("new")
    assert filler.fill("k", gate) == "old"  # starts the refresh
    assert gate.entered.wait(10)
    for _ in range(20):
        assert filler.fill("k", lambda: "second refresh") == "old"
    gate.finish("new")
    quiet(filler.group)
    assert gate.calls == 1
    assert filler.stats().refreshes_started == 1


def test_refreshes_run_on_a_bounded_shared_pool(clock):
    cache: dict = {}
    group = Group()
    filler = CacheFiller(cache, group=group, ttl=100, refresh_after=10, clock=clock)
    keys = [f"k{i}" for i in range(3 * REFRESH_THREADS)]
    for key in keys:
        filler.fill(key, lambda: "old")
    clock.advance(11)
    release = threading.Event()
    running = []
    lock = threading.Lock()

    def build():
        with lock:
            running.append(threading.current_thread().name)
        release.wait(10)
        return "new"

    for key in keys:
        assert filler.fill(key, build) == "old"
    wait_until(lambda: len(running) == REFRESH_THREADS, what="the pool to fill")
    refresh_threads = [t for t in threading.enumerate() if t.name.startswith("singleflight-refresh")]
    assert len(refresh_threads) == REFRESH_THREADS
    release.set()
    quiet(group)
    assert len(running) == len(keys)
    assert {filler.fill(key, lambda: "unused") for key in keys} == {"new"}


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"ttl": 10, "refresh_after": 10}, ValueError, r"refresh_after \(10s\) must be shorter than ttl \(10s\)"),
        ({"ttl": 10, "refresh_after": 20}, ValueError, r"must be shorter than ttl"),
        ({"refresh_after": 5}, ValueError, r"need ttl="),
        ({"stale_if_error": 5}, ValueError, r"need ttl="),
        ({"ttl": 10, "refresh_after": 0}, ValueError, r"^refresh_after must be > 0"),
        ({"ttl": 10, "refresh_after": "5"}, TypeError, r"^refresh_after must be"),
        ({"ttl": 10, "stale_if_error": -1}, ValueError, r"^stale_if_error must be >= 0"),
        ({"ttl": 10, "beta": math.nan}, ValueError, r"^beta must be >= 0"),
        ({"ttl": 10, "stale_if_error": 5, "backoff": 0}, ValueError, r"^backoff must be > 0"),
        ({"ttl": 10, "refresh_after": 5, "refresh_executor": object()}, TypeError, r"^refresh_executor must be"),
        ({"ttl": 10, "refresh_after": 5, "on_refresh_error": 1}, TypeError, r"on_refresh_error"),
        ({"ttl": 10, "refresh_after": 5, "clock": 3}, TypeError, r"^clock must be"),
    ],
)
def test_bad_refresh_options_name_the_argument(options, error, match):
    with pytest.raises(error, match=match):
        CacheFiller({}, **options)


# -- envelopes ---------------------------------------------------------------------


def test_envelopes_only_with_a_refresh_option(clock, pool):
    plain: dict = {}
    CacheFiller(plain).fill("k", lambda: {"v": 1})
    assert plain == {"k": {"v": 1}}
    wrapped: dict = {}
    filler = filler_for(wrapped, clock, pool, ttl=60, refresh_after=30)
    filler.fill("k", lambda: {"v": 1})
    raw = wrapped["k"]
    assert is_envelope(raw)
    assert raw == {MARK: 1, "value": {"v": 1}, "created": clock(), "duration": 0.0, "ttl": 60}
    assert unwrap(raw, now=clock()) == {"v": 1}
    assert unwrap(raw, "gone", now=clock() + 60) == "gone"


def test_a_plain_value_from_the_previous_release_is_fresh_until_the_cache_drops_it(clock, pool):
    cache = {"k": "written by 0.1"}
    filler = filler_for(cache, clock, pool, ttl=10, refresh_after=5)
    clock.advance(1000)
    assert filler.fill("k", lambda: "rebuilt") == "written by 0.1"
    assert filler.stats().refreshes_started == 0


def test_a_dict_honours_ttl_with_envelopes_and_keeps_the_dead_entry(clock, pool):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, ttl=10, stale_if_error=5)
    filler.fill("k", lambda: 1)
    clock.advance(16)  # past ttl + stale_if_error: a miss
    assert filler.fill("k", lambda: 2) == 2
    # A dict never frees an entry by itself: the entry is replaced, not expired.
    assert list(cache) == ["k"]


def test_an_envelope_of_a_later_format_is_a_miss(clock, pool):
    cache = {"k": {MARK: 2, "value": "from the future", "created": 0.0}}
    filler = filler_for(cache, clock, pool, ttl=10, refresh_after=5)
    assert filler.fill("k", lambda: "rebuilt") == "rebuilt"
    assert unwrap({MARK: 2, "anything": 1}, "default") == "default"


def test_the_cache_keeps_entries_for_ttl_plus_stale_if_error(clock, pool):
    timeouts = []

    class Recording:
        def get(self, key, default):
            return default

        def set(self, key, value, timeout):
            timeouts.append(timeout)

    filler_for(Recording(), clock, pool, ttl=30, refresh_after=10, stale_if_error=60).fill("k", lambda: 1)
    filler_for(Recording(), clock, pool, ttl=30, refresh_after=10).fill("k", lambda: 1)
    filler_for(Recording(), clock, pool, ttl=None, refresh_after=10).fill("k", lambda: 1)
    assert timeouts == [90, 30, None]


# -- stale-if-error and backoff --------------------------------------------------------


class Flaky:
    """A build that fails while ``failing`` is set, counting attempts with their times."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.failing = True
        self.attempts: list[float] = []
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.attempts.append(self.clock())
        if self.failing:
            raise ConnectionError("backend down")
        return "new"


def test_a_failing_rebuild_serves_the_last_good_value_for_stale_if_error_then_the_error(clock, pool, caplog):
    cache: dict = {}
    errors = []
    filler = filler_for(
        cache,
        clock,
        pool,
        ttl=10,
        stale_if_error=60,
        backoff=1,
        max_backoff=8,
        on_refresh_error=lambda k, e: errors.append((k, e)),
    )
    filler.fill("k", lambda: "good")
    flaky = Flaky(clock)
    clock.advance(10)  # expired: callers wait for the rebuild, which fails: the last good value
    with caplog.at_level(logging.WARNING, logger="singleflight_sync.cache"):
        for _ in range(69):
            assert filler.fill("k", flaky) == "good"
            clock.advance(0.5)  # each step stays inside the window: 10 + 69 * 0.5 < 70 (ttl + stale_if_error)
    assert clock() - 1_000_000.0 < 70
    clock.advance(70 - (clock() - 1_000_000.0))  # exactly ttl + stale_if_error: the entry is dead
    with pytest.raises(ConnectionError, match="backend down"):
        filler.fill("k", flaky)
    # Retries were spaced by the backoff, so far fewer than the 69 reads.
    tries = len(flaky.attempts) - 1  # the last attempt had nothing to fall back on
    assert 3 <= tries <= 12
    assert len(errors) == tries
    assert all(k == "k" and isinstance(e, ConnectionError) for k, e in errors)
    warnings = [r for r in caplog.records if "rebuild of cache key 'k' failed" in r.getMessage()]
    assert len(warnings) == tries  # once per attempt, that is once per backoff interval
    assert filler.stats().refreshes_failed == tries


def test_backoff_spacing_doubles_with_jitter_up_to_the_cap(clock, pool, monkeypatch):
    for jitter in (0.0, 1.0 - 1e-12):  # the two ends of random()
        monkeypatch.setattr(cachestate.rng, "random", lambda j=jitter: j)
        cache: dict = {}
        filler = filler_for(cache, clock, pool, ttl=10, stale_if_error=1000, backoff=1, max_backoff=8)
        filler.fill("k", lambda: "good")
        flaky = Flaky(clock)
        clock.advance(10)
        step = 0.125
        for _ in range(int(60 / step)):
            assert filler.fill("k", flaky) == "good"
            clock.advance(step)
        gaps = [b - a for a, b in zip(flaky.attempts, flaky.attempts[1:], strict=False)]
        scale = 0.5 + 0.5 * jitter
        expected = [min(8, 2**i) * scale for i in range(len(gaps))]
        # Each retry comes on the first read at or after its time (reads are `step` apart).
        for gap, want in zip(gaps, expected, strict=False):
            assert want <= gap < want + step + 1e-9, (gaps, expected)
        assert len(gaps) >= 6
        # Success clears the backoff: the next failure starts again at `backoff`.
        flaky.failing = False
        clock.advance(8)
        assert filler.fill("k", flaky) == "new"


def test_a_failing_background_refresh_keeps_serving_and_backs_off(clock, pool):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, ttl=100, refresh_after=10, backoff=5, max_backoff=5)
    filler.fill("k", lambda: "good")
    flaky = Flaky(clock)
    clock.advance(11)
    assert filler.fill("k", flaky) == "good"
    quiet(filler.group)
    assert len(flaky.attempts) == 1
    for _ in range(10):  # within the backoff: no new refresh
        assert filler.fill("k", flaky) == "good"
        quiet(filler.group)
    assert len(flaky.attempts) == 1
    clock.advance(5)
    flaky.failing = False
    assert filler.fill("k", flaky) == "good"
    quiet(filler.group)
    assert filler.fill("k", flaky) == "new"
    assert filler.stats().refreshes_failed == 1


# -- every read agrees with classify() --------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entry=st.tuples(  # the envelope's age and its stored ttl
        st.one_of(st.floats(0.0, 400.0), st.sampled_from([0.0, 20.0, 50.0, 100.0, 150.0, 300.0])),
        st.one_of(st.none(), st.sampled_from([50.0, 100.0]), st.floats(1.0, 300.0)),
    ),
    refresh_after=st.one_of(st.none(), st.sampled_from([20.0, 49.0]), st.floats(0.5, 49.0)),
    stale_if_error=st.sampled_from([0.0, 50.0]),
    use_async=st.booleans(),
)
def test_every_read_does_what_classify_says(entry, refresh_after, stale_if_error, use_async, pool):
    """The hit path decides fresh and stale envelopes without classify(); it must agree with it at every age.

    An envelope ``age`` seconds old, stored with its own ``stored_ttl``, is
    read by a filler with ``refresh_after`` (or none) and ``stale_if_error``:
    the value served, the counter moved and whether a refresh ran follow
    from classify() (beta off, the default).
    """
    age, stored_ttl = entry
    clock = Clock()
    if refresh_after is None and stale_if_error == 0.0:
        stale_if_error = 1.0  # some envelope option, or the filler would store plain values
    filler = filler_for({}, clock, pool, ttl=50.0, refresh_after=refresh_after, stale_if_error=stale_if_error)
    cache = filler.cache
    cache["k"] = wrap("old", clock() - age, 0.5, stored_ttl)
    kind = classify(
        Entry("old", clock() - age, 0.5, stored_ttl),
        clock(),
        refresh_after=refresh_after,
        stale_if_error=stale_if_error,
        beta=0.0,
    )

    if use_async:
        got = asyncio.run(filler.fill_async("k", lambda: "new"))
    else:
        got = filler.fill("k", lambda: "new")
    quiet(filler.group)
    stats = filler.stats()
    if kind == FRESH:
        assert (got, stats.hits, stats.stale_hits, stats.waits, stats.refreshes_started) == ("old", 1, 0, 0, 0)
    elif kind == STALE:
        assert (got, stats.hits, stats.stale_hits, stats.waits, stats.refreshes_started) == ("old", 0, 1, 0, 1)
        assert unwrap(cache["k"], now=clock()) == "new"
    else:  # EXPIRED or DEAD: this caller waited for the rebuild
        assert kind in (EXPIRED, DEAD)
        assert (got, stats.hits, stats.stale_hits, stats.waits, stats.refreshes_started) == ("new", 0, 0, 1, 0)


def test_jitter_and_early_draws_leave_the_global_random_stream_alone(clock, pool):
    """An application that seeds ``random`` gets the same numbers with a filler at work: we draw from our own."""
    filler = filler_for({}, clock, pool, ttl=100, stale_if_error=50, beta=1.0)
    filler.fill("k", timed_build(clock, 1.0, "v"))
    before = random.getstate()
    clock.advance(50)
    assert filler.fill("k", lambda: "early?") in ("v", "early?")  # an XFetch draw
    clock.advance(60)  # expired: the rebuild fails, the stale value is served and the retry jittered
    assert filler.fill("k", Flaky(clock)) == "v"
    assert filler.stats().refreshes_failed == 1
    assert random.getstate() == before


# -- early refresh (XFetch) ------------------------------------------------------------


def timed_build(clock: Clock, seconds: float, value):
    def build():
        clock.advance(seconds)
        return value

    return build


def test_xfetch_draw_rebuilds_before_expiry_without_refresh_after(clock, pool, monkeypatch):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, ttl=100, beta=1.0)
    filler.fill("k", timed_build(clock, 2.0, "first"))  # duration 2 s, created at t0 + 2
    # -ln(draw) = 1: early once age + duration * beta >= ttl, i.e. age >= 98.
    monkeypatch.setattr(cache_mod, "_draw", lambda: math.exp(-1))
    clock.advance(97.5)
    assert filler.fill("k", lambda: "too early") == "first"
    clock.advance(0.5)
    assert filler.fill("k", lambda: "early") == "early"  # the reader that drew rebuilt, synchronously
    assert filler.stats().waits == 2


def test_xfetch_draw_with_refresh_after_starts_the_background_refresh(clock, pool, monkeypatch):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, ttl=100, refresh_after=50, beta=2.0)
    filler.fill("k", timed_build(clock, 1.0, "first"))
    monkeypatch.setattr(cache_mod, "_draw", lambda: math.exp(-1))
    clock.advance(47.5)  # age + 1 * 2 * 1 = 49.5 < 50
    assert filler.fill("k", lambda: "too early") == "first"
    clock.advance(0.5)  # 50: early
    gate = Gate("refreshed")
    assert filler.fill("k", gate) == "first"
    assert gate.entered.wait(10)
    gate.finish("refreshed")
    quiet(filler.group)
    assert filler.fill("k", lambda: "unused") == "refreshed"
    assert filler.stats().refreshes_started == 1


def test_xfetch_is_off_by_default(clock, pool, monkeypatch):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, ttl=100, refresh_after=50)
    filler.fill("k", timed_build(clock, 10.0, "first"))
    monkeypatch.setattr(cache_mod, "_draw", lambda: 1e-300)  # the most extreme draw
    clock.advance(49)
    assert filler.fill("k", lambda: "never") == "first"
    assert filler.stats().refreshes_started == 0


# -- invalidation ------------------------------------------------------------------------


@pytest.mark.parametrize("envelopes", [False, True])
def test_invalidation_wins_over_a_rebuild_that_started_before_it(clock, pool, envelopes):
    from django.core.cache.backends.locmem import LocMemCache  # noqa: PLC0415

    cache = LocMemCache(f"invalidate-{envelopes}", {})
    options = {"ttl": 100, "refresh_after": 10} if envelopes else {"ttl": 100}
    filler = filler_for(cache, clock, pool, **options)
    gate = Gate("read before the write")
    leader = start(filler.fill, "k", gate)
    assert gate.entered.wait(10)
    # The classic race: the database is written, then the key is invalidated,
    # while a rebuild that read the old data is still running.
    filler.invalidate("k")
    gate.finish("read before the write")
    leader.join()
    assert leader.result == "read before the write"  # its own caller still gets it
    assert unwrap(cache.get("k")) is None  # but it was not stored
    assert filler.fill("k", lambda: "after the write") == "after the write"


def test_invalidation_during_the_write_takes_the_write_back(clock, pool):
    entered, release = threading.Event(), threading.Event()

    store: dict = {}

    class Cache:
        def get(self, key, default):
            return store.get(key, default)

        def set(self, key, value, timeout):
            if is_envelope(value) and "value" in value:
                entered.set()
                assert release.wait(10)
            store[key] = value

        def delete(self, key):
            return store.pop(key, None) is not None

    filler = filler_for(Cache(), clock, pool, ttl=100, refresh_after=10)
    leader = start(filler.fill, "k", lambda: "old")
    assert entered.wait(10)  # the builder checked for invalidations and is inside its write
    filler.invalidate("k")  # the tombstone is written first ...
    assert is_envelope(store["k"])
    assert "value" not in store["k"]
    release.set()  # ... then the old value lands over it, and is taken back
    leader.join()
    assert leader.result == "old"
    assert unwrap(store.get("k"), "missing") == "missing"
    assert filler.fill("k", lambda: "new") == "new"


def test_a_tombstone_stops_a_rebuild_of_another_process(clock, pool):
    from django.core.cache.backends.locmem import LocMemCache  # noqa: PLC0415

    cache = LocMemCache("tombstone", {})
    # Two fillers with different scopes share no in-process state, as two processes would not.
    here = CacheFiller(cache, group=Group(), ttl=100, refresh_after=10, clock=clock, scope="here")
    there = CacheFiller(cache, group=Group(), ttl=100, refresh_after=10, clock=clock, scope="there")
    gate = Gate("stale data")
    leader = start(here.fill, "k", gate)
    assert gate.entered.wait(10)
    clock.advance(1)
    there.invalidate("k")
    gate.finish("stale data")
    leader.join()
    assert unwrap(cache.get("k"), "missing") == "missing"
    assert there.fill("k", lambda: "fresh") == "fresh"


# -- asyncio ---------------------------------------------------------------------------------


def test_fill_async_serves_stale_and_shares_the_refresh_with_threads(clock, pool):
    cache: dict = {}
    filler = filler_for(cache, clock, pool, refresh_after=10)
    filler.fill("k", lambda: "old")
    clock.advance(11)
    gate = Gate("new")

    async def main():
        return await asyncio.gather(*(filler.fill_async("k", gate) for _ in range(10)))

    assert asyncio.run(main()) == ["old"] * 10
    assert gate.entered.wait(10)
    assert filler.fill("k", lambda: "thread's refresh") == "old"  # joins nothing new
    gate.finish("new")
    quiet(filler.group)
    assert gate.calls == 1
    assert asyncio.run(filler.fill_async("k", lambda: "unused")) == "new"


# -- random interleavings --------------------------------------------------------------------

TTL, REFRESH, STALE_IF_ERROR = 10.0, 4.0, 6.0

ops = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(1, 4)),  # that many threads read at once
        # Steps that land in each state (fresh, stale, expired, dead) often, and any others.
        st.tuples(st.just("advance"), st.one_of(st.sampled_from([1.0, 4.5, 6.0, 10.5, 16.5]), st.floats(0.0, 8.0))),
        st.tuples(st.just("fail"), st.booleans()),  # builds fail from now on, or not
        st.tuples(st.just("invalidate"), st.just(0)),  # the filler forgets the key
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_interleavings_never_serve_too_old_a_value_nor_overlap_refreshes(ops):
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-refresh")
    try:
        interleave(ops, pool)
    finally:
        # A refresh that an invalidation forgot is no longer in the group, so
        # quiet() does not wait for it: wait here, so that none of this
        # example's work runs on into the next one.
        pool.shutdown(wait=True)


def interleave(ops, pool) -> None:
    """Run one example of the test above: ``ops`` against a filler whose refreshes run on ``pool``."""
    clock = Clock()
    cache: dict = {}
    group = Group()
    filler = CacheFiller(
        cache,
        group=group,
        ttl=TTL,
        refresh_after=REFRESH,
        stale_if_error=STALE_IF_ERROR,
        backoff=1,
        max_backoff=4,
        clock=clock,
        refresh_executor=pool,
    )
    lock = threading.Lock()
    # After an invalidation the next caller rebuilds at once, even while a
    # build asked for before it still runs (that is the point of
    # invalidating): overlaps are counted among builds asked for between the
    # same two invalidations.
    state = {"failing": False, "epoch": 0, "overlap": 0}
    running: dict[int, int] = {}
    dwell = threading.Event()

    def build(epoch):
        with lock:
            running[epoch] = running.get(epoch, 0) + 1
            state["overlap"] = max(state["overlap"], running[epoch])
            failing = state["failing"]
        dwell.wait(0.002)  # never set: widens the window in which a second refresh would overlap
        try:
            if failing:
                raise ConnectionError("down")
            return clock()  # the value is its own creation time
        finally:
            with lock:
                running[epoch] -= 1

    def read():
        with contextlib.suppress(ConnectionError):
            with lock:
                epoch = state["epoch"]
            value = filler.fill("k", functools.partial(build, epoch))
            age = clock() - value
            assert age < TTL + STALE_IF_ERROR, f"served a value {age}s old"

    for op, arg in ops:
        if op == "read":
            barrier = threading.Barrier(arg)

            def together(barrier=barrier):
                barrier.wait()
                read()

            threads = [start(together) for _ in range(arg)]
            for t in threads:
                t.join()
        elif op == "advance":
            quiet(group)  # the clock moves between reads; refreshes may still run concurrently with reads
            clock.advance(arg)
        elif op == "fail":
            with lock:
                state["failing"] = arg
        else:
            with lock:
                state["epoch"] += 1
            filler.invalidate("k")
    quiet(group)
    assert state["overlap"] <= 1
