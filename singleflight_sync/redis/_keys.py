"""Key naming: the text that names a key in Redis, the same in every process.

Only keys built from ``str``, ``int``, ``float``, ``bool``, ``None`` and
tuples of them have such a name; anything else is an
:class:`UnstableKeyError` before a flight starts. ``_Names`` holds the Redis
names of one key's flight.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from singleflight_sync._errors import show_key
from singleflight_sync._keys import _KWMARK

from ._errors import UnstableKeyError

_MAX_KEY_CHARS = 200


def _plain(value: Any, root: Any) -> Any:
    """Map a key to JSON-ready data, rejecting what differs between processes."""
    cls = type(value)
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float:
        return value
    if cls is tuple:
        return [_plain(item, root) for item in value]
    if value is _KWMARK:
        return {"kw": 1}  # hashkey()'s marker; a dict never comes from anything else
    what = f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__
    msg = (
        f"key {show_key(root)} contains a value of type {what} ({show_key(value)}), "
        "which is not the same in every process; "
        "a RedisGroup key must be built from str, int, float, bool, None and tuples of them; "
        "with @singleflight pass key= (for example key=lambda obj, x: f'{obj.id}:{x}')"
    )
    raise UnstableKeyError(root, msg)


def key_name(key: Any) -> str:
    """The text that names ``key`` in Redis, the same in every process.

    JSON of the key (tuples as arrays); longer than 200 characters, its
    SHA-256 instead.
    """
    text = json.dumps(_plain(key, key), separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    if len(text) > _MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


class _Names:
    """The Redis names of one key: lock, result, and the payload of its wake-up."""

    __slots__ = ("lock", "name", "result")

    def __init__(self, ns: str, name: str) -> None:
        self.name = name
        self.lock = f"{ns}:lock:{name}"
        self.result = f"{ns}:result:{name}"
