"""A Django cache backend that wraps any other and makes ``get_or_set`` stampede-safe."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

from . import _cachestate as state
from ._cache import MISSING, TOMBSTONE_TTL, CacheFiller, _check_seconds, _make_policy, _Policy
from ._envelope import DEAD, Entry, classify, is_envelope, open_envelope, tombstone
from ._group import _check_timeout
from .envelope import unwrap

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._group import Group
    from .redis import RedisGroup

    # Django ships no type information: what this module uses of it, typed.
    DEFAULT_TIMEOUT: Any = object()

    class BaseCache:
        """``django.core.cache.backends.base.BaseCache``, as far as this module uses it."""

        default_timeout: float | None
        key_prefix: str
        version: int

        def __init__(self, params: dict[str, Any]) -> None: ...

    class ImproperlyConfigured(Exception):
        """``django.core.exceptions.ImproperlyConfigured``."""

    def import_string(dotted_path: str) -> Any: ...

else:
    from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.module_loading import import_string

__all__ = ["SingleFlightCache"]

_NAME = "singleflight_sync.django.SingleFlightCache"
_OPTIONS = ("BACKEND", "OPTIONS", "REFRESH_AFTER", "STALE_IF_ERROR", "BETA", "REDIS", "NAMESPACE", "WAIT_TIMEOUT")


class _Versioned:
    """The wrapped backend seen by a CacheFiller: keys are ``(key, version)``."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def get(self, key: tuple[str, int], default: Any) -> Any:
        return self.cache.get(key[0], default, version=key[1])

    async def aget(self, key: tuple[str, int], default: Any) -> Any:
        return await self.cache.aget(key[0], default, version=key[1])

    def set(self, key: tuple[str, int], value: Any, timeout: Any) -> None:
        self.cache.set(key[0], value, timeout, version=key[1])

    def delete(self, key: tuple[str, int]) -> bool:
        return bool(self.cache.delete(key[0], version=key[1]))


class _Reread:
    """The type of :data:`_REREAD`."""

    def __repr__(self) -> str:
        return "REREAD"


# What get_or_set gets from a rebuild that ran in another process: the value
# is in the cache, to be read from there.
_REREAD: Any = _Reread()


class _InTheCache:
    """The serializer of the RedisGroup behind ``REDIS``: a rebuild's value travels through the cache.

    The process that rebuilt a key has stored its value in the Django cache
    (pickled, as every Django backend does); the others read it from there
    when the flight lands, so any value a Django cache takes is shared, not
    only those JSON can carry, and a value whose store a ``delete`` stopped
    is never handed to a process that did not build it.
    """

    def dumps(self, _value: Any, /) -> bytes:
        return b"in-cache"

    def loads(self, _data: bytes, /) -> Any:
        return _REREAD

    def __repr__(self) -> str:
        return "the Django cache"


# _groups_lock protects _groups: one RedisGroup per (URL, namespace) in a
# process, shared by every thread's cache object. Groups are made outside it.
_groups_lock = threading.Lock()
_groups: dict[tuple[str, str], RedisGroup[Any, Any]] = {}


def _redis_group(url: str, namespace: str) -> RedisGroup[Any, Any]:
    with _groups_lock:
        group = _groups.get((url, namespace))
    if group is not None:
        return group
    from .redis import RedisGroup  # noqa: PLC0415 - redis-py is needed only when REDIS is set

    made: RedisGroup[Any, Any] = RedisGroup(url, namespace=namespace, serializer=_InTheCache())
    with _groups_lock:
        group = _groups.setdefault((url, namespace), made)
    if group is not made:
        made.close()  # another thread made one first
    return group


def _improper(option: str, exc: BaseException) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{_NAME}: OPTIONS[{option!r}]: {exc}")


def _options(params: dict[str, Any]) -> dict[str, Any]:
    """The wrapper's OPTIONS, checked: ImproperlyConfigured names the option that is wrong."""
    raw: object = params.get("OPTIONS") or {}
    if not isinstance(raw, dict):
        msg = f"{_NAME}: OPTIONS must be a dict, got {type(raw).__name__}"
        raise ImproperlyConfigured(msg)
    options: dict[str, Any] = dict(cast("dict[str, Any]", raw))
    unknown = sorted(set(options) - set(_OPTIONS), key=str)
    if unknown:
        msg = (
            f"unknown OPTIONS {unknown} for {_NAME}; it takes {list(_OPTIONS)}: "
            "put the wrapped backend's own options in OPTIONS['OPTIONS']"
        )
        raise ImproperlyConfigured(msg)
    if not isinstance(options.get("BACKEND"), str):
        msg = (
            f"{_NAME} needs OPTIONS['BACKEND'], the dotted path of the backend it wraps, "
            f"e.g. 'django.core.cache.backends.redis.RedisCache'; got {options.get('BACKEND')!r}"
        )
        raise ImproperlyConfigured(msg)
    inner = options.get("OPTIONS")
    if inner is not None and not isinstance(inner, dict):
        msg = f"{_NAME}: OPTIONS['OPTIONS'] (the wrapped backend's own options) must be a dict, got {inner!r}"
        raise ImproperlyConfigured(msg)
    checks: tuple[tuple[str, Callable[[Any], object]], ...] = (
        ("REFRESH_AFTER", lambda v: v is None or _check_seconds(v, "it", "a number of seconds or None", positive=True)),
        ("STALE_IF_ERROR", lambda v: _check_seconds(v, "it")),
        ("BETA", lambda v: v is None or _check_seconds(v, "it", "a number (1.0 is the paper's choice) or None")),
        ("WAIT_TIMEOUT", lambda v: _check_timeout(v, "it")),
    )
    for name, check in checks:
        if name in options:
            try:
                check(options[name])
            except (TypeError, ValueError) as exc:
                raise _improper(name, exc) from exc
    url = options.get("REDIS")
    if url is not None and not (isinstance(url, str) and url):
        raise _improper("REDIS", TypeError(f"it must be a Redis URL such as 'redis://localhost:6379/0', got {url!r}"))
    namespace = options.get("NAMESPACE", "singleflight")
    if not (isinstance(namespace, str) and namespace):
        raise _improper("NAMESPACE", TypeError(f"it must be a non-empty str, got {namespace!r}"))
    return options


class SingleFlightCache(BaseCache):
    """Wrap any Django cache backend; ``get_or_set`` rebuilds a missing key once for all callers.

    Configure it in ``settings.CACHES``; ``LOCATION``, ``TIMEOUT``,
    ``KEY_PREFIX``, ``VERSION`` and ``KEY_FUNCTION`` go to the wrapped
    backend, named in ``OPTIONS`` with its own options::

        CACHES = {
            "default": {
                "BACKEND": "singleflight_sync.django.SingleFlightCache",
                "LOCATION": "redis://127.0.0.1:6379/1",
                "TIMEOUT": 300,
                "OPTIONS": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "OPTIONS": {},  # the wrapped backend's own OPTIONS
                    "REFRESH_AFTER": 30,  # serve stale past 30 s while one refresh runs
                    "STALE_IF_ERROR": 60,  # serve the last good value for 60 s past expiry on errors
                    "REDIS": "redis://127.0.0.1:6379/0",  # share rebuilds across processes (optional)
                },
            }
        }

    ``get_or_set(key, callable, timeout)`` (and ``aget_or_set``) runs the
    callable once for all concurrent callers of the key, in this process,
    or in every process when ``REDIS`` names a server for
    :class:`~singleflight_sync.redis.RedisGroup` (``NAMESPACE``, default
    ``"singleflight"``). Other processes read the value from the cache when
    the rebuild lands, so any value the wrapped backend can store is shared.
    ``REFRESH_AFTER``, ``STALE_IF_ERROR`` and ``BETA`` are
    :class:`~singleflight_sync.CacheFiller`'s options, against the call's
    ``timeout``; a call whose timeout is not longer than ``REFRESH_AFTER``
    is only stampede-safe. ``WAIT_TIMEOUT`` bounds a caller's wait for
    another's rebuild (seconds).

    Everything else passes through: ``get`` and ``get_many`` return plain
    values (never an envelope, nor an entry kept past its timeout only for
    ``STALE_IF_ERROR``), and ``add``, ``incr``, ``decr``, ``touch`` and
    ``has_key`` treat a deleted or expired ``get_or_set`` entry as missing.
    ``delete``, ``set`` and ``clear`` stop rebuilds that started before
    them in this process from storing an older value over theirs. With
    envelopes, ``delete`` also leaves a tombstone on a key ``get_or_set``
    stored, or one whose rebuild holds its ``REDIS`` lease, which stops
    rebuilds in other processes too; other keys (locks taken with ``add``,
    counters) are deleted as usual. Without ``REDIS`` a rebuild that another
    process started before the ``delete`` of a key absent at that moment
    can still store its value.
    """

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        options = _options(params)
        backend: str = options["BACKEND"]
        inner_params = {name: value for name, value in params.items() if name not in ("OPTIONS", "BACKEND")}
        inner_params["OPTIONS"] = dict(options.get("OPTIONS") or {})
        super().__init__(inner_params)
        try:
            backend_class = import_string(backend)
        except ImportError as exc:
            raise _improper("BACKEND", ImportError(f"cannot import {backend!r}: {exc}")) from exc
        self.wrapped: Any = backend_class(location, inner_params)
        refresh_after = options.get("REFRESH_AFTER")
        stale_if_error = options.get("STALE_IF_ERROR", 0)
        beta = options.get("BETA")
        # ttl=None here: each call's timeout is checked against REFRESH_AFTER in _policy().
        self._base = _make_policy(None, refresh_after, stale_if_error, beta)
        url = options.get("REDIS")
        self._redis: RedisGroup[Any, Any] | None = None
        if url is not None:
            try:
                self._redis = _redis_group(url, options.get("NAMESPACE", "singleflight"))
            except (ImportError, TypeError, ValueError) as exc:
                raise _improper("REDIS", exc) from exc
        group: Group[Any, Any] | None = self._redis
        self.filler = CacheFiller(
            _Versioned(self.wrapped),
            group=group,
            ttl=None,
            refresh_after=refresh_after,
            stale_if_error=stale_if_error,
            beta=beta,
            timeout=options.get("WAIT_TIMEOUT"),
            scope=f"{backend}|{location}|{self.key_prefix}",
        )
        # _policies_lock protects _policies (a policy per call timeout seen). Django
        # makes a cache object per thread, but one may still be shared.
        self._policies_lock = threading.Lock()
        self._policies: dict[Any, _Policy] = {}

    def _policy(self, timeout: Any) -> _Policy:
        """The filler's policy for a call's ``timeout`` (Django's: seconds, None, or DEFAULT_TIMEOUT)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        ttl = None if timeout is None else max(0.0, float(timeout))
        with self._policies_lock:
            policy = self._policies.get(ttl)
        if policy is None:
            base = self._base
            refresh_after = base.refresh_after
            if refresh_after is not None and ttl is not None and refresh_after >= ttl:
                refresh_after = None  # too short a timeout to serve stale: only stampede-safe
            policy = base._replace(ttl=ttl, refresh_after=refresh_after)
            with self._policies_lock:
                if len(self._policies) > 64:
                    self._policies.clear()  # a few timeouts are usual; do not grow for ever
                self._policies[ttl] = policy
        return policy

    def _now(self) -> float:
        return self.filler._clock()

    def _key(self, key: str, version: int | None) -> tuple[str, int]:
        return (key, self.version if version is None else version)

    def _dead(self, raw: Any) -> bool:
        """Whether ``raw``, read from the wrapped backend, is there but reads as missing (a tombstone, expired)."""
        return is_envelope(raw) and unwrap(raw, MISSING, now=self._now()) is MISSING

    # -- stampede-safe -----------------------------------------------------------------------

    def get_or_set(self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> Any:
        build: Callable[[], Any] = default if callable(default) else (lambda: default)
        vkey, policy = self._key(key, version), self._policy(timeout)
        value = self.filler._fill(vkey, build, policy)
        if value is _REREAD:
            # Rebuilt by another process: its value is in the cache.
            value = self._stored(self.wrapped.get(key, MISSING, version=version), policy)
            if value is MISSING:
                # Not stored (a delete came after that rebuild started, or the backend dropped it): once more.
                value = self.filler._fill(vkey, build, policy)
                if value is _REREAD:
                    value = self._stored(self.wrapped.get(key, MISSING, version=version), policy)
                    if value is MISSING:
                        value = build()  # the backend keeps nothing: give this caller a value anyway
        return value

    async def aget_or_set(
        self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        build: Callable[[], Any] = default if callable(default) else (lambda: default)
        vkey, policy = self._key(key, version), self._policy(timeout)
        value = await self.filler._fill_async(vkey, build, policy)
        if value is _REREAD:
            value = self._stored(await self.wrapped.aget(key, MISSING, version=version), policy)
            if value is MISSING:
                value = await self.filler._fill_async(vkey, build, policy)
                if value is _REREAD:
                    value = self._stored(await self.wrapped.aget(key, MISSING, version=version), policy)
                    if value is MISSING:
                        import asyncio  # noqa: PLC0415 - keep asyncio off the import path of sync users

                        value = await asyncio.get_running_loop().run_in_executor(None, build)
        return value

    def _stored(self, raw: Any, policy: _Policy) -> Any:
        """The value another process's rebuild left in the cache, as its own callers got it; MISSING if none.

        An entry past its timeout is served when ``STALE_IF_ERROR`` still
        keeps it: that rebuild failed and served it too.
        """
        if raw is MISSING:
            return MISSING
        entry = open_envelope(raw)
        if not isinstance(entry, Entry):
            return MISSING  # a tombstone, or a format from a later release
        if entry.created is not None:
            now = self._now()
            kind = classify(
                entry, now, refresh_after=policy.refresh_after, stale_if_error=policy.stale_if_error, beta=0.0
            )
            if kind == DEAD:
                return MISSING
        return entry.value

    # -- reads unwrap envelopes ---------------------------------------------------------------

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        raw = self.wrapped.get(key, MISSING, version=version)
        if raw is MISSING:
            return default
        return unwrap(raw, default, now=self._now())

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        now = self._now()
        found: dict[str, Any] = {}
        for key, raw in self.wrapped.get_many(keys, version=version).items():
            value = unwrap(raw, MISSING, now=now)
            if value is not MISSING:
                found[key] = value
        return found

    def has_key(self, key: str, version: int | None = None) -> bool:
        return self.get(key, MISSING, version=version) is not MISSING

    # -- writes stop older rebuilds from storing over them ------------------------------------

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self.filler._invalidated(self._key(key, version))
        self.wrapped.set(key, value, timeout, version=version)

    def set_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[str]:
        for key in data:
            self.filler._invalidated(self._key(key, version))
        return list(self.wrapped.set_many(data, timeout, version=version))

    def delete(self, key: str, version: int | None = None) -> bool:
        vkey = self._key(key, version)
        self.filler._invalidated(vkey)
        if self._base.envelope:
            # Asked first: a rebuild that takes the lease after this builds from the data as it is now.
            running = self._rebuilding_elsewhere(vkey)
            raw = self.wrapped.get(key, MISSING, version=version)
            if running or is_envelope(raw):
                # A key of get_or_set: a tombstone stops the rebuilds of other processes that started before now.
                self.wrapped.set(key, tombstone(self._now()), TOMBSTONE_TTL, version=version)
                return raw is not MISSING and not self._dead(raw)
            # Any other key (a lock taken with add(), a counter) is deleted as usual, so that add() takes it again.
        return bool(self.wrapped.delete(key, version=version))

    def _rebuilding_elsewhere(self, key: tuple[str, int]) -> bool:
        """Whether a process holds the ``REDIS`` lease of ``key``'s rebuild (True when Redis cannot tell)."""
        group = self._redis
        if group is None:
            return False
        try:
            return bool(group.client.exists(group.redis_key(self.filler._flight_key(key), "lock")))
        except Exception:
            return True  # a tombstone too many costs nothing but a rebuild

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        for key in keys:
            self.delete(key, version=version)

    def clear(self) -> None:
        self.filler._shared.invalidate(state._EVERY_KEY)
        self.wrapped.clear()

    # -- the rest passes through, a deleted or expired entry of get_or_set being missing --------

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        if self.wrapped.add(key, value, timeout, version=version):
            return True
        if not self._base.envelope or not self._dead(self.wrapped.get(key, MISSING, version=version)):
            return False
        # A tombstone, or an entry kept past its timeout only for STALE_IF_ERROR: missing for add() too.
        self.filler._invalidated(self._key(key, version))
        self.wrapped.delete(key, version=version)
        return bool(self.wrapped.add(key, value, timeout, version=version))

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        raw = self.wrapped.get(key, MISSING, version=version) if self._base.envelope else MISSING
        if not is_envelope(raw):
            return bool(self.wrapped.touch(key, timeout, version=version))
        entry = open_envelope(raw)
        if not isinstance(entry, Entry) or entry.created is None or self._dead(raw):
            return False
        # The envelope carries its own timeout: give it the new one, counted from now.
        policy = self._policy(timeout)
        touched = dict(raw)
        touched["ttl"] = None if policy.ttl is None else self._now() - entry.created + policy.ttl
        self.wrapped.set(key, touched, policy.expiry(), version=version)
        return True

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> Any:
        try:
            return self.wrapped.incr(key, delta, version=version)
        except Exception:
            raw = self.wrapped.get(key, MISSING, version=version) if self._base.envelope else MISSING
            if not is_envelope(raw):
                raise
        # Stored by get_or_set, in an envelope: Django's own incr() for a backend without one.
        entry = open_envelope(raw)
        if not isinstance(entry, Entry) or self._dead(raw):
            msg = f"Key '{key}' not found."
            raise ValueError(msg) from None
        value = entry.value + delta
        left = None if entry.ttl is None or entry.created is None else entry.created + entry.ttl - self._now()
        self.set(key, value, left, version=version)
        return value

    def decr(self, key: str, delta: int = 1, version: int | None = None) -> Any:
        return self.incr(key, -delta, version=version)

    def close(self, **kwargs: Any) -> None:
        self.wrapped.close(**kwargs)

    def __getattr__(self, name: str) -> Any:
        # The wrapped backend's own attributes (RedisCache's _cache, a pool, ...).
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)
