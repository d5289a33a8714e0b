"""Serializers: how a flight's value becomes bytes in Redis and comes back.

:class:`JsonSerializer` is the default (only data, no code, comes back);
:class:`PickleSerializer` is an explicit, unsafe opt-in. Anything with
``dumps``/``loads`` fits the :class:`Serializer` protocol.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol


class Serializer(Protocol):
    """What ``serializer=`` takes: ``dumps(value) -> bytes | str`` and ``loads(bytes) -> value``.

    The modules ``json`` and ``pickle`` fit as they are.
    """

    def dumps(self, value: Any, /) -> bytes | str: ...  # pragma: no cover - protocol

    def loads(self, data: bytes, /) -> Any: ...  # pragma: no cover - protocol


class JsonSerializer:
    """The default serializer: JSON, so only data (no code) comes back from Redis.

    Tuples come back as lists, as JSON has no tuple.
    """

    def dumps(self, value: Any, /) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode()

    def loads(self, data: bytes, /) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"


class PickleSerializer:
    """Pickle any picklable value. UNSAFE when others can write to the Redis server.

    Unpickling runs code chosen by whoever wrote the bytes: use it only when
    every client of that Redis server is trusted.
    """

    def dumps(self, value: Any, /) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes, /) -> Any:
        return pickle.loads(data)  # noqa: S301 - an explicit, documented opt-in

    def __repr__(self) -> str:
        return "PickleSerializer()"


def _describe(serializer: object) -> str:
    # The json and pickle modules are serializers too: name them, not "module".
    return str(getattr(serializer, "__name__", None) or type(serializer).__name__)
