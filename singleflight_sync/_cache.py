"""Cache-rebuild protection: one rebuild per missing cache key, and stale values while it runs.

When a hot cache entry expires, every request that arrives before it is
stored again misses at once. :class:`CacheFiller` puts a flight between the
miss and the rebuild: the first caller rebuilds and stores the value, the
others wait for that value, and a caller that missed just before the value
was stored finds it when it enters the flight instead of rebuilding again.

With ``refresh_after`` nobody waits: a hit past that age is served at once
and one background refresh replaces it (stale-while-revalidate). With
``stale_if_error`` a failing rebuild serves the last good value for a while,
and with ``beta`` entries are refreshed early at random (XFetch). These
options store values in an envelope (:mod:`singleflight_sync._envelope`).

Any cache with Django's ``get(key, default)`` and ``set(key, value[, timeout])``
works (every Django cache backend, cachelib), and so does a mutable mapping
(``dict``, a ``cachetools`` cache). The cache is never imported here.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar, cast

from . import _cachestate as state
from ._envelope import (
    DEAD,
    EARLY,
    EXPIRED,
    FRESH,
    MARK,
    STALE,
    VERSION,
    Entry,
    classify,
    open_envelope,
    tombstone,
    wrap,
)
from ._group import DEFAULT, Group, _check_timeout, _require_callable

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future
    from contextlib import AbstractContextManager

__all__ = ["MISSING", "CacheFiller", "cache_fill"]

P = ParamSpec("P")
V = TypeVar("V")

log = logging.getLogger("singleflight_sync.cache")

# Seconds a tombstone stays in a cache with expiry: longer than any rebuild
# that could still try to store over it.
TOMBSTONE_TTL = 300


class _Missing:
    """The type of :data:`MISSING`."""

    def __reduce__(self) -> str:
        # Copies and unpickled copies are the module's one instance.
        return "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""What a cache lookup returns for an absent key, so that ``None`` can be cached."""


class _Scope:
    """Prefix of every flight key of a filler, so they never meet plain ``Group.do`` keys."""

    def __repr__(self) -> str:
        return "cache_fill"


_SCOPE = _Scope()
# The same prefix for a group shared across processes, where a key must be
# plain data with the same name in every process.
_SHARED_SCOPE = "singleflight_sync.cache_fill"


class _ById(NamedTuple):
    """The default scope: the identity of the cache object."""

    cache_id: int


class _Policy(NamedTuple):
    """How a filler treats ages: fixed per filler, or per call for Django's ``timeout``."""

    ttl: Any  # seconds, None (never), or DEFAULT (the cache's own)
    refresh_after: float | None
    stale_if_error: float
    beta: float
    envelope: bool  # store values in envelopes (any of the three options above is on)

    def expiry(self) -> Any:
        """The expiry to give the cache for a value: ``ttl``, plus ``stale_if_error`` for an envelope."""
        if not self.envelope or self.ttl is None or self.ttl is DEFAULT:
            return self.ttl
        return self.ttl + self.stale_if_error


# The group of every filler created without group=. Flights are keyed by the
# scope (by default the cache object) and the key, so fillers of different
# caches never share a flight and fillers of the same cache do.
_default_group: Group[Any, Any] = Group()


def _check_options(group: object, ttl: object, timeout: object, lock: object) -> None:
    if group is not None and not isinstance(group, Group):
        msg = f"group must be a singleflight_sync.Group, got {type(group).__name__}"
        raise TypeError(msg)
    _check_ttl(ttl)
    _check_timeout(timeout)
    if lock is not None and not (hasattr(lock, "__enter__") and hasattr(lock, "__exit__")):
        msg = f"lock must be a context manager such as threading.Lock() (or None), got {type(lock).__name__}"
        raise TypeError(msg)


def _check_key(key: object) -> None:
    if not callable(key):
        msg = f"key must be a callable that builds the cache key from the arguments, got {key!r}"
        raise TypeError(msg)


def _check_ttl(ttl: Any) -> None:
    if ttl is DEFAULT or ttl is None:
        return
    _check_seconds(ttl, "ttl", "a number of seconds or None (never expire)")


def _check_seconds(value: Any, name: str, what: str = "a number of seconds", *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be {what}, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if math.isnan(value) or value < 0 or (positive and value == 0) or math.isinf(value):
        msg = f"{name} must be {'>' if positive else '>='} 0 seconds and finite, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _make_policy(ttl: Any, refresh_after: Any, stale_if_error: Any, beta: Any) -> _Policy:
    """Check the expiry options together and return them as a policy."""
    if refresh_after is not None:
        refresh_after = _check_seconds(refresh_after, "refresh_after", "a number of seconds or None", positive=True)
    stale_if_error = _check_seconds(stale_if_error, "stale_if_error")
    if beta is None:
        beta = 0.0
    beta = _check_seconds(beta, "beta", "a number (1.0 is the paper's choice) or None")
    envelope = refresh_after is not None or stale_if_error > 0 or beta > 0
    if envelope and ttl is DEFAULT:
        msg = (
            "refresh_after, stale_if_error and beta need ttl= (the seconds a value may be served, or None for "
            "no limit): the filler must know when an entry expires"
        )
        raise ValueError(msg)
    if refresh_after is not None and ttl is not None and refresh_after >= ttl:
        msg = (
            f"refresh_after ({refresh_after:g}s) must be shorter than ttl ({ttl:g}s): an entry is served "
            "stale between the two while one caller refreshes it"
        )
        raise ValueError(msg)
    return _Policy(ttl, refresh_after, stale_if_error, beta, envelope)


class CacheFiller:
    """Read through ``cache``, rebuilding a missing key once for all concurrent callers.

    Args:
        cache: an object with Django's ``get(key, default)`` and
            ``set(key, value[, timeout])`` (any ``django.core.cache`` backend),
            or a mutable mapping such as a ``dict`` or a ``cachetools`` cache.
        group: the :class:`Group` that holds the rebuild flights; by default
            one shared by every filler. Flights are keyed by the cache and
            the key, so one group can serve many caches. A
            :class:`~singleflight_sync.redis.RedisGroup` shares rebuilds and
            refreshes across processes (it needs ``scope=``).
        ttl: seconds passed as the third argument of ``cache.set`` (Django's
            ``timeout``). ``None`` is passed too (in Django: never expire).
            Not given: ``set`` is called without it and the cache's default
            applies. Without an envelope option a mapping cannot expire
            single entries, so ``ttl`` is refused for one; use
            ``cachetools.TTLCache`` instead.
        refresh_after: seconds after which a hit is served stale: returned
            at once while one background refresh of the key runs (one per
            process, or one across processes with a ``RedisGroup``). Must be
            shorter than ``ttl``; past ``ttl`` callers wait for the rebuild.
        stale_if_error: seconds past ``ttl`` during which a failing rebuild
            or refresh serves the last good value instead of its error. The
            cache keeps entries for ``ttl + stale_if_error``. Failed keys are
            retried after a backoff that doubles from ``backoff`` up to
            ``max_backoff`` seconds (with jitter); meanwhile the last good
            value is served without a retry.
        beta: refresh early at random (XFetch, Vattani et al., VLDB 2015):
            each read rebuilds ahead of the refresh point with a probability
            that rises as it nears, starting about ``beta`` times the last
            build's duration before it; ``1.0`` is the paper's choice,
            larger refreshes earlier, ``None`` (default) never.
        refresh_executor: where background refreshes run; by default a pool
            of 4 threads shared by every filler of the process.
        on_refresh_error: called with ``(key, exception)`` in the thread of
            a rebuild or refresh whose failure was hidden by a stale value
            (such a failure is also logged, once per retry).
        timeout: seconds a caller waits for another caller's rebuild before
            it raises :class:`FlightTimeoutError`; by default the group's.
        lock: a lock held around every read and write of the cache, for a
            cache that is not thread-safe (``cachetools`` caches). Never held
            while the value is being built.
        scope: what makes two fillers "the same cache", so that they share
            rebuilds: by default the identity of ``cache``. Pass the same
            cache object from every thread (for Django the
            ``django.core.cache.cache`` proxy), or name it here: Django's
            ``caches["alias"]`` is a different object in each thread, so use
            ``scope="alias"`` with it.
        clock: the wall clock in seconds (``time.time``); envelopes are read
            by other processes, so it must be the same clock in all of them.

    Raises:
        TypeError: ``cache`` has neither interface, or an option has the
            wrong type (the message names it).
        ValueError: an option has a wrong value, or ``refresh_after`` is not
            shorter than ``ttl``.

    A value of ``None`` is cached like any other: a miss is told apart with
    :data:`MISSING`. An exception from the build reaches every caller that
    shared it (each gets its own copy) and nothing is stored.

    With an envelope option (``refresh_after``, ``stale_if_error`` or
    ``beta``) values are stored in envelopes, whose format
    :mod:`singleflight_sync.envelope` documents, and ``ttl`` applies to
    mappings too: an entry past its time reads as a miss, but a ``dict``
    never frees it by itself.

    Example::

        >>> cache = {}
        >>> users = CacheFiller(cache)
        >>> users.fill("user:1", lambda: {"name": "Ada"})
        {'name': 'Ada'}
        >>> cache
        {'user:1': {'name': 'Ada'}}
        >>> users.fill("user:1", lambda: 1 / 0)  # a hit: the build does not run
        {'name': 'Ada'}
    """

    def __init__(  # noqa: PLR0913 - options are keyword-only
        self,
        cache: Any,
        *,
        group: Group[Any, Any] | None = None,
        ttl: float | None = DEFAULT,
        refresh_after: float | None = None,
        stale_if_error: float = 0,
        beta: float | None = None,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        refresh_executor: Executor | None = None,
        on_refresh_error: Callable[[Any, BaseException], object] | None = None,
        timeout: float | None = None,
        lock: AbstractContextManager[Any] | None = None,
        scope: Hashable | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_options(group, ttl, timeout, lock)
        self._policy = _make_policy(ttl, refresh_after, stale_if_error, beta)
        self._backoff = _check_seconds(backoff, "backoff", positive=True)
        self._max_backoff = max(self._backoff, _check_seconds(max_backoff, "max_backoff", positive=True))
        if refresh_executor is not None and not callable(getattr(refresh_executor, "submit", None)):
            msg = f"refresh_executor must be a concurrent.futures.Executor, got {type(refresh_executor).__name__}"
            raise TypeError(msg)
        _require_callable(on_refresh_error, "on_refresh_error", "a callable taking (key, exception)")
        if not callable(cast("object", clock)):
            msg = f"clock must be a callable returning the time in seconds, like time.time; got {clock!r}"
            raise TypeError(msg)
        self.group: Group[Any, Any] = _default_group if group is None else group
        if self.group._shares_across_processes:
            if not isinstance(scope, str):
                msg = (
                    "a CacheFiller with a group shared across processes needs scope=, a str that names the cache "
                    "the same way in every process (for example scope='default' for a Django cache alias)"
                )
                raise TypeError(msg)
            self._prefix: Hashable = _SHARED_SCOPE
        else:
            self._prefix = _SCOPE
        # id(cache) is safe as a scope: while a flight for it is in the map
        # its leader holds this filler and so the cache, which therefore
        # cannot be collected and its id reused by another cache.
        self._scope: Hashable = _ById(id(cache)) if scope is None else scope
        self.cache = cache
        self._timeout = self.group._timeout if timeout is None else timeout
        self._lock = lock
        self._executor = refresh_executor
        self._on_refresh_error = on_refresh_error
        self._clock = clock
        self._mapping = isinstance(cache, Mapping)
        # The cache's get (MISSING on a miss), set and delete, each under ``lock`` when one is given.
        self._read, self._write, self._delete = _adapt(cache, ttl, envelope=self._policy.envelope, lock=lock)
        # The state every filler of this cache shares in this process.
        self._shared = state.shared_for(self._scope)

    # -- reading -------------------------------------------------------------------------

    def fill(self, key: Hashable, build: Callable[[], V], /) -> V:
        """Return the cached value of ``key``, or build, store and return it once.

        ``build`` takes no arguments (use a ``lambda`` or
        ``functools.partial``). Callers that miss while a rebuild of ``key``
        runs wait for it and get its value. With ``refresh_after`` a stale
        hit returns at once and starts the key's one background refresh.

        Raises:
            FlightTimeoutError: this caller waited longer than ``timeout``.
            Exception: whatever ``build`` or the cache raised.
        """
        return self._fill(key, build, self._policy)  # type: ignore[no-any-return]

    def _fill(self, key: Hashable, build: Callable[[], Any], policy: _Policy) -> Any:
        raw = self._read(key)
        if raw is not MISSING and (raw.__class__ is not dict or MARK not in raw):
            self._shared.count(state.HITS)
            return raw  # a plain value: the common case, and every hit without envelopes
        served, seen = self._serve(key, build, raw, policy)
        if served is not MISSING:
            return served
        self._shared.count(state.WAITS)
        info = self.group.call(self._flight_key(key), self._rebuild, (key, build, seen, policy), timeout=self._timeout)
        return _value_of(info.value)

    async def fill_async(self, key: Hashable, build: Callable[[], V], /) -> V:
        """Await :meth:`fill` from asyncio; rebuilds and refreshes are shared with threads and other tasks.

        A hit is read with the cache's ``aget(key, default)`` when it has one
        (Django's async cache API) and no ``lock`` was given, else with
        ``get``, on the event loop. A miss joins the rebuild flight through
        :meth:`Group.do_async`, so the build and the store run in the loop's
        default executor when this task leads; a stale hit starts the same
        background refresh as :meth:`fill`. ``timeout`` does not apply:
        bound the wait with ``asyncio.timeout()``, which cancels only this
        caller's wait, never the rebuild.

        Example::

            >>> import asyncio
            >>> cache = {}
            >>> asyncio.run(CacheFiller(cache).fill_async("k", lambda: "v")), cache
            ('v', {'k': 'v'})
        """
        return await self._fill_async(key, build, self._policy)  # type: ignore[no-any-return]

    async def _fill_async(self, key: Hashable, build: Callable[[], Any], policy: _Policy) -> Any:
        aget = getattr(self.cache, "aget", None) if self._lock is None else None
        raw = await aget(key, MISSING) if aget is not None else self._read(key)
        if raw is not MISSING and (raw.__class__ is not dict or MARK not in raw):
            self._shared.count(state.HITS)
            return raw
        served, seen = self._serve(key, build, raw, policy)
        if served is not MISSING:
            return served
        self._shared.count(state.WAITS)
        return _value_of(await self.group.do_async(self._flight_key(key), self._rebuild, key, build, seen, policy))

    def _serve(self, key: Hashable, build: Callable[[], Any], raw: Any, policy: _Policy) -> tuple[Any, float | None]:
        """Decide on an envelope (or a miss): the value to serve now, or MISSING and what the rebuild saw.

        A stale entry is served and its background refresh started here.
        """
        if raw is not MISSING and not policy.beta and raw[MARK] == VERSION and "value" in raw:
            # An envelope before its ttl, read without XFetch: what classify()
            # calls FRESH or STALE (the hit paths), decided without an Entry.
            created = raw["created"]
            age = self._clock() - created
            ttl = raw["ttl"]
            if ttl is None or age < ttl:
                if policy.refresh_after is None or age < policy.refresh_after:
                    self._shared.count(state.HITS)
                else:
                    self._shared.count(state.STALE_HITS)
                    self._refresh(key, build, created, policy)
                return raw["value"], None
        entry = open_envelope(raw) if raw is not MISSING else None
        if not isinstance(entry, Entry):
            return MISSING, None  # a miss, a tombstone, or a format from a later release
        now = self._clock()
        kind = classify(
            entry,
            now,
            refresh_after=policy.refresh_after,
            stale_if_error=policy.stale_if_error,
            beta=policy.beta,
            draw=_draw() if policy.beta else 1.0,
        )
        if kind == FRESH:
            self._shared.count(state.HITS)
            return entry.value, None
        if kind == STALE or (kind == EARLY and policy.refresh_after is not None):
            self._shared.count(state.HITS if kind == EARLY else state.STALE_HITS)
            self._refresh(key, build, entry.created, policy)
            return entry.value, None
        if kind == EXPIRED:
            retry_at = self._shared.retry_at(state._Key(key))
            if retry_at is not None and now < retry_at:
                # Its last rebuild failed: serve the last good value until the backoff ends.
                self._shared.count(state.STALE_HITS)
                return entry.value, None
        # EARLY without refresh_after: this caller rebuilds (others may join);
        # EXPIRED: rebuild, serving this entry only if that fails; DEAD: a miss.
        return MISSING, entry.created if kind != DEAD else None

    def _refresh(self, key: Hashable, build: Callable[[], Any], created: float | None, policy: _Policy) -> None:
        """Start the refresh of ``key`` (whose entry was ``created`` then), unless one runs or it is backing off."""
        flight_key = self._flight_key(key)
        if self.group.in_flight(flight_key):
            return  # the common case while a refresh runs: no handle to make and deliver
        retry_at = self._shared.retry_at(state._Key(key))
        if retry_at is not None and self._clock() < retry_at:
            return
        executor = self._executor if self._executor is not None else state.default_executor()
        try:
            # Two callers may both pass the check above: submit() lets one
            # lead, and the other joins its flight instead of starting one.
            handle = self.group.submit(executor, flight_key, self._rebuild, key, build, created, policy, refresh=True)
        except Exception:
            # The caller has its value; a refused refresh only leaves the entry stale.
            log.exception("could not start the refresh of cache key %r", key)
            return
        if getattr(handle, "leads", False):
            handle.add_done_callback(functools.partial(_report_refresh, key))

    # -- rebuilding ----------------------------------------------------------------------

    def _rebuild(
        self, key: Hashable, build: Callable[[], Any], seen: float | None, policy: _Policy, *, refresh: bool = False
    ) -> Any:
        """Run by the flight's leader: build, store and return the value (an envelope with envelopes on).

        ``seen`` is the creation time of the entry that sent this caller here
        (None for a miss): an entry newer than that, found now, is returned
        instead of building again. ``refresh``: a background refresh, counted
        when it builds (with a ``RedisGroup``, in the one process that does).
        """
        # Read again inside the flight: a caller that missed just before the
        # previous leader stored the value, and arrived after its flight
        # landed, leads a new flight here and must find that value.
        raw = self._read(key)
        entry = open_envelope(raw) if raw is not MISSING else None
        kind = DEAD
        if isinstance(entry, Entry):
            if entry.created is None:
                return raw  # a plain value: stored by a plain filler, or by other code
            now = self._clock()
            kind = classify(
                entry, now, refresh_after=policy.refresh_after, stale_if_error=policy.stale_if_error, beta=0.0
            )
            if kind in (FRESH, STALE) and (seen is None or entry.created > seen):
                return raw  # rebuilt by someone else since this caller looked
            retry_at = self._shared.retry_at(state._Key(key)) if kind != DEAD else None
            if retry_at is not None and now < retry_at:
                return raw  # backing off after a failure: keep serving the last good value
        mark = self._shared.mark()
        if refresh:
            self._shared.count(state.REFRESHES_STARTED)
        started = self._clock()
        try:
            value = build()
        except Exception as exc:
            if kind == DEAD or not isinstance(entry, Entry):
                raise  # nothing to fall back on: every caller gets the error
            self._failed(key, exc, entry)
            return raw
        finished = self._clock()
        self._shared.succeeded(state._Key(key))
        out = wrap(value, finished, max(0.0, finished - started), policy.ttl) if policy.envelope else value
        self._store(key, out, policy, mark, started)
        return out

    def _failed(self, key: Hashable, exc: Exception, entry: Entry) -> None:
        """A build failed and ``entry`` is served instead: back off, log, count and report it."""
        now = self._clock()
        failures, delay = self._shared.failed(state._Key(key), now, self._backoff, self._max_backoff)
        self._shared.count(state.REFRESHES_FAILED)
        age = now - (entry.created or 0.0)
        # Logged once per attempt, and attempts are spaced by the backoff.
        log.warning(
            "rebuild of cache key %r failed (%d in a row): serving the value stored %.1fs ago, next try in %.1fs",
            key,
            failures,
            age,
            delay,
            exc_info=exc,
        )
        hook = self._on_refresh_error
        if hook is not None:
            try:
                hook(key, exc)
            except Exception:
                log.exception("on_refresh_error hook raised for cache key %r", key)

    def _store(self, key: Hashable, out: Any, policy: _Policy, mark: int, started: float) -> None:
        """Store a rebuilt value, unless the key was invalidated after the rebuild started."""
        shared = self._shared
        if shared.invalidated_since(key, mark):
            return  # invalidated in this process while it was being built
        if policy.envelope and not self._mapping:
            # Another process invalidates with a tombstone: do not store over a newer one.
            found = open_envelope(self._read(key))
            if isinstance(found, float) and found >= started:
                return
        self._write(key, out, policy.expiry())
        if shared.invalidated_since(key, mark):
            # Invalidated between the check and the write: take the write back.
            self._erase(key, policy)

    # -- invalidation ---------------------------------------------------------------------

    def invalidate(self, key: Hashable, /) -> None:
        """Drop ``key`` from the cache so that no rebuild or refresh that started before stores over it.

        Call it after writing the data the value is built from. A rebuild
        of ``key`` that is running in this process does not store its
        value (its callers still get it), and the next caller starts a new
        rebuild. With envelopes, a tombstone (kept ``TOMBSTONE_TTL`` = 300 s)
        also stops rebuilds in other processes that started before it, all
        but one that is between its check and its write at that moment.

        Example::

            >>> cache = {}
            >>> users = CacheFiller(cache)
            >>> users.fill("user:1", lambda: "Ada")
            'Ada'
            >>> users.invalidate("user:1")
            >>> users.fill("user:1", lambda: "Ada Lovelace")
            'Ada Lovelace'
        """
        self._invalidated(key)
        self._erase(key, self._policy)

    def _invalidated(self, key: Hashable) -> None:
        """Stop rebuilds of ``key`` that started before now from storing; call before changing the entry."""
        self._shared.invalidate(key)
        self.group.forget(self._flight_key(key))

    def _erase(self, key: Hashable, policy: _Policy) -> None:
        if policy.envelope and not self._mapping:
            self._write(key, tombstone(self._clock()), TOMBSTONE_TTL)
        else:
            self._delete(key)

    def stats(self) -> state.FillerStats:
        """Counters of every filler of this cache (the same ``scope``) in this process.

        Example::

            >>> filler = CacheFiller({}, scope="stats-example")
            >>> filler.fill("k", lambda: 1), filler.fill("k", lambda: 2)
            (1, 1)
            >>> filler.stats()
            FillerStats(hits=1, stale_hits=0, waits=1, refreshes_started=0, refreshes_failed=0)
        """
        return self._shared.stats()

    def reset_stats(self) -> None:
        """Set the counters of :meth:`stats` to zero."""
        self._shared.reset_stats()

    def cached(self, *, key: Callable[..., Hashable]) -> Callable[[Callable[P, V]], Callable[P, V]]:
        """Decorate a function so that its calls read through this filler.

        ``key`` builds the cache key from the function's arguments; it is
        required, because a cache key is usually shared with other code
        (invalidation, other processes) and should be spelled out.

        Example::

            >>> cache = {}
            >>> @CacheFiller(cache).cached(key=lambda n: f"square:{n}")
            ... def square(n):
            ...     return n * n
            >>> square(12), cache
            (144, {'square:12': 144})
        """
        _check_key(key)

        def decorate(fn: Callable[P, V]) -> Callable[P, V]:
            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> V:
                return self.fill(key(*args, **kwargs), functools.partial(fn, *args, **kwargs))

            wrapper.filler = self  # type: ignore[attr-defined]
            return wrapper

        return decorate

    def _flight_key(self, key: Hashable) -> tuple[Any, Hashable, Hashable]:
        return (self._prefix, self._scope, key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} cache={type(self.cache).__name__} group={self.group!r}>"


def _draw() -> float:
    """Uniform in (0, 1], for the XFetch draw (log(0) is undefined)."""
    return 1.0 - state.rng.random()


def _value_of(result: Any) -> Any:
    """A flight's result for its callers: an envelope's value, or a plain value as it is."""
    if result.__class__ is dict and MARK in result:
        return result["value"]
    return result


def _report_refresh(key: Hashable, handle: Future[Any]) -> None:
    """Log a background refresh that failed in a way no stale value could hide (the cache itself raised)."""
    if handle.cancelled():
        return
    exc = handle.exception()
    if exc is not None:
        log.warning("background refresh of cache key %r failed", key, exc_info=exc)


def _takes_default(get: Callable[..., Any]) -> bool:
    """Whether ``get(key, default)`` can be called (Django, mappings), or only ``get(key)`` (cachelib)."""
    try:
        inspect.signature(get).bind("key", MISSING)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): assume the common protocol
        return True
    return True


_Ops = tuple[Callable[[Hashable], Any], Callable[[Hashable, Any, Any], object], Callable[[Hashable], object]]


def _adapt(cache: Any, ttl: Any, *, envelope: bool, lock: AbstractContextManager[Any] | None) -> _Ops:
    """Return ``get(key)`` (``MISSING`` on a miss), ``set(key, value, expiry)`` and ``delete(key)`` for ``cache``.

    With ``lock``, each holds it around its call of the cache.
    """
    read, store, delete = _cache_ops(cache, ttl, envelope=envelope)
    if lock is None:
        return read, store, delete

    def locked_read(key: Hashable) -> Any:
        with lock:
            return read(key)

    def locked_store(key: Hashable, value: Any, expiry: Any) -> object:
        with lock:
            return store(key, value, expiry)

    def locked_delete(key: Hashable) -> object:
        with lock:
            return delete(key)

    return locked_read, locked_store, locked_delete


def _cache_ops(cache: Any, ttl: Any, *, envelope: bool) -> _Ops:
    """:func:`_adapt` without a lock."""
    get = getattr(cache, "get", None)
    setter = getattr(cache, "set", None)
    is_mapping = isinstance(cache, Mapping)
    name = type(cast("object", cache)).__name__
    if not callable(get) or not (
        (callable(setter) and not is_mapping) or (is_mapping and hasattr(cast("object", cache), "__setitem__"))
    ):
        msg = (
            "cache must have get(key, default) and set(key, value[, timeout]) like a Django cache, "
            f"or be a mutable mapping such as dict or a cachetools cache; got {name}"
        )
        raise TypeError(msg)

    # Django's get(key, default) and Mapping.get(key, default) take the
    # default positionally alike; a stored None is a hit, MISSING a miss.
    def read(key: Hashable) -> Any:
        return get(key, MISSING)

    if not is_mapping and not _takes_default(get):
        # cachelib's get(key) has no default: None is a miss or a stored
        # None, and has(key) tells them apart.
        has = getattr(cache, "has", None)
        if not callable(has):
            msg = (
                f"cache.get() of {type(cache).__name__} takes no default and the cache has no has(key), so a "
                "miss cannot be told from a stored None; pass a cache with get(key, default), or with get(key) and "
                "has(key) like cachelib's"
            )
            raise TypeError(msg)

        def read(key: Hashable) -> Any:
            value = get(key)
            if value is None and not has(key):
                return MISSING
            return value

    if is_mapping:
        if ttl is not DEFAULT and not envelope:
            msg = (
                f"ttl={ttl!r} cannot be applied to a {name}: a mapping has no per-entry expiry; "
                "leave ttl out and use an expiring mapping (cachetools.TTLCache) or a cache with set(key, value, ttl), "
                "or set refresh_after/stale_if_error, whose envelopes carry their own expiry"
            )
            raise TypeError(msg)
        mapping = cast("Any", cache)

        def store_item(key: Hashable, value: Any, expiry: Any) -> object:
            mapping[key] = value
            return None

        def pop_item(key: Hashable) -> object:
            return mapping.pop(key, None)

        return read, store_item, pop_item

    def store(key: Hashable, value: Any, expiry: Any) -> object:
        if expiry is DEFAULT:
            return setter(key, value)  # type: ignore[misc]
        return setter(key, value, expiry)  # type: ignore[misc]

    def refuse(key: Hashable) -> object:
        msg = f"{name} has no delete(key), so CacheFiller.invalidate() cannot drop a key from it"
        raise TypeError(msg)

    delete: Any = getattr(cache, "delete", None)
    return read, store, delete if callable(delete) else refuse


def cache_fill(  # noqa: PLR0913 - the CacheFiller options, all keyword-only
    cache: Any,
    key: Hashable,
    build: Callable[[], V],
    /,
    *,
    group: Group[Any, Any] | None = None,
    ttl: float | None = DEFAULT,
    timeout: float | None = None,
    lock: AbstractContextManager[Any] | None = None,
    scope: Hashable | None = None,
) -> V:
    """Return ``cache``'s value for ``key``, or build and store it once for all concurrent callers.

    A one-call form of ``CacheFiller(cache, ...).fill(key, build)``; see
    :class:`CacheFiller` for the arguments. Callers of the same cache and
    key share one rebuild whether they use this function or a filler, as
    long as they use the same group (by default they do).

    Example::

        >>> cache = {}
        >>> cache_fill(cache, "answer", lambda: 42)
        42
        >>> cache_fill(cache, "answer", lambda: 0)
        42
    """
    return CacheFiller(cache, group=group, ttl=ttl, timeout=timeout, lock=lock, scope=scope).fill(key, build)
