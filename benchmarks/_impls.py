"""Adapters: the library, the reference and the peers behind one interface.

Each implementation is bound to a function ``fn(key)`` and called as either
``target(key, fn, key)`` (the group form, ``Group.do``-like) or ``target(key)``
(the decorator form). Peers are imported lazily; one that is missing or has no
thread (sync) API is listed with the reason, never replaced by something else.
"""

# ruff: noqa: PLC0415 - the peers (and matplotlib) are optional: each is imported where it is used

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, NamedTuple

from ._reference import ReferenceGroup

if TYPE_CHECKING:
    from collections.abc import Callable


class Bound(NamedTuple):
    target: Callable[..., Any]
    is_group: bool
    # Followers that joined so far, where the implementation can tell.
    joined: Callable[[], int] | None


@dataclass(frozen=True)
class Impl:
    name: str
    kind: str  # "library", "reference" or "peer"
    notes: str
    bind: Callable[[Callable[[Any], Any]], Bound] | None = None
    missing: str = ""

    @property
    def available(self) -> bool:
        return self.bind is not None


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- the library -----------------------------------------------------------


def _lib_group(fn: Callable[[Any], Any]) -> Bound:
    from singleflight_sync import Group

    g: Any = Group()

    def joined() -> int:
        s = g.stats()
        return int(s.calls - s.executions)

    return Bound(g.do, True, joined)


def _lib_decorator(fn: Callable[[Any], Any]) -> Bound:
    from singleflight_sync import singleflight

    f: Any = singleflight(fn)

    def joined() -> int:
        s = f.stats()
        return int(s.calls - s.executions)

    return Bound(f, False, joined)


def _reference(fn: Callable[[Any], Any]) -> Bound:
    g = ReferenceGroup()
    return Bound(g.do, True, lambda: g.joined)


# -- peers -----------------------------------------------------------------


def _coalescer_group(fn: Callable[[Any], Any]) -> Bound:
    from coalescer.sync import Coalescer

    return Bound(Coalescer().do, True, None)


def _coalescer_decorator(fn: Callable[[Any], Any]) -> Bound:
    from coalescer.sync import coalesce

    return Bound(coalesce(fn), False, None)


def _oneflight_group(fn: Callable[[Any], Any]) -> Bound:
    from oneflight import OneFlight

    return Bound(OneFlight().do, True, None)


def _oneflight_decorator(fn: Callable[[Any], Any]) -> Bound:
    from oneflight import singleflight

    return Bound(singleflight(fn), False, None)


def _concurrent_coalesce(fn: Callable[[Any], Any]) -> Bound:
    from concurrent_coalesce import coalesce

    return Bound(coalesce()(fn), False, None)


def cachetools_cached(fn: Callable[..., Any], *, store: bool) -> Any:
    """``cachetools.cached`` with a lock and a condition, the way its docs stop a stampede.

    ``store=False`` uses ``Cache(maxsize=0)``, which refuses every value, so
    every call takes the miss path (the closest cachetools gets to "not a
    cache"). ``store=True`` uses an unbounded cache, new for each binding.
    """
    import cachetools

    lock = threading.Lock()
    cond = threading.Condition(lock)
    cache = cachetools.Cache(maxsize=float("inf") if store else 0)
    return cachetools.cached(cache, lock=lock, condition=cond)(fn)


def _cachetools_miss(fn: Callable[[Any], Any]) -> Bound:
    return Bound(cachetools_cached(fn, store=False), False, None)


def _cachetools_store(fn: Callable[[Any], Any]) -> Bound:
    return Bound(cachetools_cached(fn, store=True), False, None)


def _probe(module: str, dist: str) -> str:
    """Empty if ``module`` imports, else why not."""
    try:
        __import__(module)
    except ImportError as exc:
        return f"{dist} not installed ({exc}); pip install 'singleflight-sync[bench]'"
    return ""


LIB_NOTES = "not a cache; per-caller exception copies; timeouts, cycle checks, stats"

_SPECS: list[tuple[str, str, str, str, str, Callable[[Callable[[Any], Any]], Bound]]] = [
    # name, kind, import probe, distribution, notes, binder
    ("singleflight_sync Group.do", "library", "singleflight_sync", "singleflight-sync", LIB_NOTES, _lib_group),
    (
        "singleflight_sync @singleflight",
        "library",
        "singleflight_sync",
        "singleflight-sync",
        "keys normalised by signature: f(1, 2) == f(a=1, b=2)",
        _lib_decorator,
    ),
    ("reference (Future per call)", "reference", "", "", "minimal: lock + dict + Future; no features", _reference),
    (
        "coalescer Coalescer.do",
        "peer",
        "coalescer.sync",
        "coalescer",
        "not a cache; Future per call; waiters re-raise one shared exception",
        _coalescer_group,
    ),
    (
        "coalescer @coalesce",
        "peer",
        "coalescer.sync",
        "coalescer",
        "key (fn, args, kwargs): f(1, 2) != f(a=1, b=2)",
        _coalescer_decorator,
    ),
    (
        "oneflight OneFlight.do",
        "peer",
        "oneflight",
        "oneflight",
        "not a cache; Event per call; returns (value, shared); shared exception",
        _oneflight_group,
    ),
    (
        "oneflight @singleflight",
        "peer",
        "oneflight",
        "oneflight",
        "key args + kwargs: f(1, 2) != f(a=1, b=2)",
        _oneflight_decorator,
    ),
    (
        "concurrent_coalesce @coalesce",
        "peer",
        "concurrent_coalesce",
        "concurrent-coalesce",
        "decorator only; a BaseException in the leader leaves followers hanging",
        _concurrent_coalesce,
    ),
    (
        "cachetools @cached (maxsize=0)",
        "peer",
        "cachetools",
        "cachetools",
        "a CACHE storing nothing (every call misses): followers wait, then each re-runs fn",
        _cachetools_miss,
    ),
]

CACHETOOLS_STORING = (
    "cachetools @cached (cache)",
    "peer",
    "cachetools",
    "cachetools",
    "a CACHE: followers read the kept value; after a failure each re-runs fn in turn",
    _cachetools_store,
)


def _build(spec: tuple[str, str, str, str, str, Callable[[Callable[[Any], Any]], Bound]]) -> Impl:
    name, kind, module, dist, notes, binder = spec
    missing = _probe(module, dist) if module else ""
    return Impl(name, kind, notes, None if missing else binder, missing)


def implementations(*, storing_cache: bool = False) -> list[Impl]:
    """Every implementation, the unavailable ones included with their reason."""
    specs = [*_SPECS, CACHETOOLS_STORING] if storing_cache else _SPECS
    return [_build(s) for s in specs]


PEER_DISTS = ("cachetools", "coalescer", "oneflight", "concurrent-coalesce")
