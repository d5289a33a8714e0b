"""Cache-rebuild protection: one rebuild per missing cache key.

When a hot cache entry expires, every request that arrives before it is
stored again misses at once. :class:`CacheFiller` puts a flight between the
miss and the rebuild: the first caller rebuilds and stores the value, the
others wait for that value, and a caller that missed just before the value
was stored finds it when it enters the flight instead of rebuilding again.

Any cache with Django's ``get(key, default)`` and ``set(key, value[, timeout])``
works (every Django cache backend, cachelib), and so does a mutable mapping
(``dict``, a ``cachetools`` cache). The cache is never imported here.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar, cast

from ._group import DEFAULT, Group, _check_timeout

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["MISSING", "CacheFiller", "cache_fill"]

P = ParamSpec("P")
V = TypeVar("V")


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


class _ById(NamedTuple):
    """The default scope: the identity of the cache object."""

    cache_id: int


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
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        msg = f"ttl must be a number of seconds or None (never expire), got {type(ttl).__name__} {ttl!r}"
        raise TypeError(msg)
    if math.isnan(ttl) or ttl < 0:
        msg = f"ttl must be >= 0 seconds, got {ttl!r}"
        raise ValueError(msg)


class CacheFiller:
    """Read through ``cache``, rebuilding a missing key once for all concurrent callers.

    Args:
        cache: an object with Django's ``get(key, default)`` and
            ``set(key, value[, timeout])`` (any ``django.core.cache`` backend),
            or a mutable mapping such as a ``dict`` or a ``cachetools`` cache.
        group: the :class:`Group` that holds the rebuild flights; by default
            one shared by every filler. Flights are keyed by the cache and
            the key, so one group can serve many caches.
        ttl: seconds passed as the third argument of ``cache.set`` (Django's
            ``timeout``). ``None`` is passed too (in Django: never expire).
            Not given: ``set`` is called without it and the cache's default
            applies. A mapping cannot expire single entries, so ``ttl`` is
            refused for one; use ``cachetools.TTLCache`` instead.
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

    Raises:
        TypeError: ``cache`` has neither interface, or ``ttl`` was given
            with a mapping.

    A value of ``None`` is cached like any other: a miss is told apart with
    :data:`MISSING`. An exception from the build reaches every caller that
    shared it (each gets its own copy) and nothing is stored.

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
        timeout: float | None = None,
        lock: AbstractContextManager[Any] | None = None,
        scope: Hashable | None = None,
    ) -> None:
        _check_options(group, ttl, timeout, lock)
        # id(cache) is safe as a scope: while a flight for it is in the map
        # its leader holds this filler and so the cache, which therefore
        # cannot be collected and its id reused by another cache.
        self._scope: Hashable = _ById(id(cache)) if scope is None else scope
        self.cache = cache
        self.group: Group[Any, Any] = _default_group if group is None else group
        self._timeout = self.group._timeout if timeout is None else timeout
        self._lock = lock
        self._get, self._set = _adapt(cache, ttl)

    def fill(self, key: Hashable, build: Callable[[], V], /) -> V:
        """Return the cached value of ``key``, or build, store and return it once.

        ``build`` takes no arguments (use a ``lambda`` or
        ``functools.partial``). Callers that miss while a rebuild of ``key``
        runs wait for it and get its value.

        Raises:
            FlightTimeoutError: this caller waited longer than ``timeout``.
            Exception: whatever ``build`` or the cache raised.
        """
        value = self._read(key)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        info = self.group.call(self._flight_key(key), self._rebuild, (key, build), timeout=self._timeout)
        return info.value  # type: ignore[no-any-return]

    async def fill_async(self, key: Hashable, build: Callable[[], V], /) -> V:
        """Await :meth:`fill` from asyncio; a rebuild is shared with threads and other tasks.

        A hit is read with the cache's ``aget(key, default)`` when it has one
        (Django's async cache API) and no ``lock`` was given, else with
        ``get``, on the event loop. A miss joins the rebuild flight through
        :meth:`Group.do_async`, so the build and the store run in the loop's
        default executor when this task leads. ``timeout`` does not apply:
        bound the wait with ``asyncio.timeout()``, which cancels only this
        caller's wait, never the rebuild.

        Example::

            >>> import asyncio
            >>> cache = {}
            >>> asyncio.run(CacheFiller(cache).fill_async("k", lambda: "v")), cache
            ('v', {'k': 'v'})
        """
        aget = getattr(self.cache, "aget", None) if self._lock is None else None
        value = await aget(key, MISSING) if aget is not None else self._read(key)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        return await self.group.do_async(self._flight_key(key), self._rebuild, key, build)  # type: ignore[no-any-return]

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
        return (_SCOPE, self._scope, key)

    def _read(self, key: Hashable) -> Any:
        if self._lock is None:
            return self._get(key)
        with self._lock:
            return self._get(key)

    def _rebuild(self, key: Hashable, build: Callable[[], V]) -> V:
        # Read again inside the flight: a caller that missed just before the
        # previous leader stored the value, and arrived after its flight
        # landed, leads a new flight here and must find that value.
        value = self._read(key)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        value = build()
        if self._lock is None:
            self._set(key, value)
        else:
            with self._lock:
                self._set(key, value)
        return value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} cache={type(self.cache).__name__} group={self.group!r}>"


def _takes_default(get: Callable[..., Any]) -> bool:
    """Whether ``get(key, default)`` can be called (Django, mappings), or only ``get(key)`` (cachelib)."""
    try:
        inspect.signature(get).bind("key", MISSING)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): assume the common protocol
        return True
    return True


def _adapt(cache: Any, ttl: Any) -> tuple[Callable[[Hashable], Any], Callable[[Hashable, Any], object]]:
    """Return ``get(key)`` (``MISSING`` on a miss) and ``set(key, value)`` for ``cache``."""
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
        if ttl is not DEFAULT:
            msg = (
                f"ttl={ttl!r} cannot be applied to a {name}: a mapping has no per-entry expiry; "
                "leave ttl out and use an expiring mapping (cachetools.TTLCache) or a cache with set(key, value, ttl)"
            )
            raise TypeError(msg)
        store_item: Callable[[Hashable, Any], object] = getattr(cast("object", cache), "__setitem__")  # noqa: B009
        return read, store_item
    if ttl is DEFAULT:
        return read, setter  # type: ignore[return-value]

    def store(key: Hashable, value: Any) -> object:
        return setter(key, value, ttl)  # type: ignore[misc]

    return read, store


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
