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


def _plain(value: Any, root: Any) -> Any:  # noqa: PLR0911 - one return per kind of key part
    """Map a key to JSON-ready data, rejecting what differs between processes.

    Equal keys get equal data, as Python's equality (and so Group) has it:
    ``True``, ``1`` and ``1.0`` all become ``1``. typed=True keys carry their
    argument types, which become ``{"type": "module.qualname"}`` and so keep
    ``1`` and ``1.0`` apart in Redis too.
    """
    cls: type[Any] = value.__class__
    if cls is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            msg = (
                f"key {show_key(root)} contains a str that is not valid Unicode (a lone surrogate), so it has no "
                "name that is the same in every process; encode it yourself, for example with "
                "key=lambda s: s.encode('utf-8', 'surrogatepass').hex()"
            )
            raise UnstableKeyError(root, msg) from None
        return value
    if cls is int or value is None:
        return value
    if cls is bool:
        return int(value)
    if cls is float:
        return int(value) if value.is_integer() else value
    if cls is tuple:
        return [_plain(item, root) for item in value]
    if value is _KWMARK:
        return {"kw": 1}  # hashkey()'s marker; a dict never comes from anything else
    if cls is type and value.__module__ == "builtins":
        return {"type": value.__qualname__}  # typed=True and typedkey() carry the argument types
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

    JSON of the key (tuples as arrays, ``True`` and ``1.0`` as ``1``, so that
    keys equal in Python share one name); longer than 200 characters, its
    SHA-256 instead.
    """
    text = json.dumps(_plain(key, key), separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    if len(text) > _MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


WIRE_VERSION = "v1"


class _Names:
    """The Redis names of one key's flights, all under one hash tag (one Cluster slot).

    ``<ns>:v1:{<tag>}:lock`` holds the lease (``<token>:<fence>``),
    ``...:fence`` the key's fencing counter, ``...:result:<fence>`` the outcome
    of flight number ``<fence>`` (for that flight's waiters only) and
    ``...:linger`` the outcome shared with later callers when ``linger=`` is on.
    The tag is a digest of the key's name, so distinct keys spread over the
    slots. ``...:done`` is the key's wake-up channel: a finished flight
    publishes ``<fence>:<outcome>`` on it (the outcome only when it is small).
    """

    __slots__ = ("base", "done", "fence", "linger", "lock", "name", "ns")

    def __init__(self, ns: str, name: str) -> None:
        self.name = name
        tag = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
        self.base = f"{ns}:{WIRE_VERSION}:{{{tag}}}"
        self.lock = self.base + ":lock"
        self.fence = self.base + ":fence"
        self.linger = self.base + ":linger"
        self.done = self.base + ":done"
        self.ns = ns

    def legacy(self) -> list[str]:
        """Where a worker of release 0.1.0 kept this key's lease and outcome (no hash tag)."""
        return [f"{self.ns}:lock:{self.name}", f"{self.ns}:result:{self.name}"]

    def result(self, fence: int | str) -> str:
        return f"{self.base}:result:{fence}"
