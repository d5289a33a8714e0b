"""The envelope: a cached value with the metadata that soft expiry needs.

A :class:`~singleflight_sync.CacheFiller` with ``refresh_after``,
``stale_if_error`` or ``beta`` stores each value as a plain ``dict``, so that
every cache (Django's pickling backends, ``dict``, ``cachetools``) keeps it
as it is and any reader can recognise it::

    {"__singleflight_envelope__": 1,    # the format version
     "value": <the value>,
     "created": 1733300000.25,          # time.time() when it was stored
     "duration": 0.104,                 # seconds the build took
     "ttl": 300.0}                      # seconds it is fresh or stale; None: no hard expiry

An invalidation (:meth:`CacheFiller.invalidate`) leaves a *tombstone*, the
same marker without ``"value"``, with ``"invalidated"`` (``time.time()``) in
its place: it reads as a miss, and a rebuild that started before that time
does not store over it. Anything else read from the cache (a value written
by an older release, or by code other than a filler) is a plain value of
unknown age: fresh until the cache itself expires it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

__all__ = ["MARK", "VERSION", "Entry", "classify", "open_envelope", "tombstone", "wrap"]

MARK = "__singleflight_envelope__"
VERSION = 1

# What an entry is worth to a reader at a given time.
FRESH = 0  # serve it
STALE = 1  # serve it, and refresh it in the background (refresh_after has passed)
EARLY = 2  # fresh, but the XFetch draw says rebuild now
EXPIRED = 3  # past ttl: rebuild; serve it only if the rebuild fails (stale_if_error)
DEAD = 4  # past ttl + stale_if_error, a tombstone, or absent: a miss


class Entry(NamedTuple):
    """What a cache read found: the value and its envelope's metadata (``created`` None: unknown age)."""

    value: Any
    created: float | None
    duration: float
    ttl: float | None


def wrap(value: Any, created: float, duration: float, ttl: float | None) -> dict[str, Any]:
    """The envelope of ``value``."""
    return {MARK: VERSION, "value": value, "created": created, "duration": duration, "ttl": ttl}


def tombstone(when: float) -> dict[str, Any]:
    """The marker an invalidation leaves: a miss, newer than any rebuild that started before ``when``."""
    return {MARK: VERSION, "invalidated": when}


def is_envelope(raw: Any) -> bool:
    """Whether ``raw`` (read from a cache) is an envelope or a tombstone rather than a plain value."""
    return raw.__class__ is dict and MARK in raw


def open_envelope(raw: Any) -> Entry | float | None:
    """Read what a cache returned: an :class:`Entry`, a tombstone's time, or None for a format we cannot read.

    A plain value becomes an entry of unknown age. An envelope of a newer
    format version (written by a later release) reads as None, a miss:
    rebuilding is safe, misreading it is not.
    """
    if raw.__class__ is not dict or MARK not in raw:
        return Entry(raw, None, 0.0, None)
    fields = cast("dict[str, Any]", raw)
    if fields[MARK] != VERSION:
        return None
    if "value" not in fields:
        when = fields.get("invalidated")
        return float(when) if isinstance(when, (int, float)) else math.inf
    return Entry(fields["value"], float(fields["created"]), float(fields["duration"]), fields["ttl"])


def classify(  # noqa: PLR0911, PLR0913 - one return per state; the reader's options, spelled out
    entry: Entry,
    now: float,
    *,
    refresh_after: float | None,
    stale_if_error: float,
    beta: float,
    draw: float = 1.0,
) -> int:
    """The state of ``entry`` at ``now``: FRESH, STALE, EARLY, EXPIRED or DEAD.

    ``draw`` is uniform in (0, 1]; with ``beta`` the entry turns EARLY
    before its refresh point with the probability of Vattani et al.'s
    XFetch: when ``now - duration * beta * ln(draw)`` reaches that point.
    """
    created = entry.created
    if created is None:
        return FRESH  # unknown age: fresh until the cache expires it
    age = now - created
    ttl = entry.ttl
    if ttl is not None:
        if age >= ttl + stale_if_error:
            return DEAD
        if age >= ttl:
            return EXPIRED
    soft = refresh_after if refresh_after is not None else ttl
    if soft is None:
        return FRESH
    if age >= soft:
        return STALE if refresh_after is not None else EXPIRED
    if beta and entry.duration > 0 and age - entry.duration * beta * math.log(draw) >= soft:
        return EARLY
    return FRESH
