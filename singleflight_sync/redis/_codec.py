"""Serializers: how a flight's value becomes bytes in Redis and comes back.

:class:`JsonSerializer` is the default (only data, no code, comes back, and
every value comes back equal and of the same types, or is a :class:`CodecError`);
:class:`PickleSerializer` is an explicit, unsafe opt-in. Anything with
``dumps``/``loads`` fits the :class:`Serializer` protocol.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import pickle
import uuid
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable


class Serializer(Protocol):
    """What ``serializer=`` takes: ``dumps(value) -> bytes | str`` and ``loads(bytes) -> value``.

    The modules ``json`` and ``pickle`` fit as they are.
    """

    def dumps(self, value: Any, /) -> bytes | str: ...  # pragma: no cover - protocol

    def loads(self, data: bytes, /) -> Any: ...  # pragma: no cover - protocol


_TAG = "$sf"  # the key of a tagged value; a dict that has it is itself sent tagged
_SCALARS = frozenset((str, int, float, bool, type(None)))
_STR = frozenset((str,))
_TAG_TEXT = f'"{_TAG}"'  # in JSON text only where a tagged value is (a str holding it is escaped)


class _Unsendable(Exception):
    """Raised by the fast walk for an item it cannot send; the slow walk then names where it is."""


class CodecError(TypeError):
    """A value the serializer cannot send so that it comes back equal, with where it is.

    ``path`` names the place in the value, for example ``result["items"][3]``.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def _at(path: str, key: Any) -> str:
    return f"{path}[{json.dumps(key, ensure_ascii=False) if type(key) is str else repr(key)}]"


class JsonSerializer:
    """The default serializer: exact JSON, so only data (no code) comes back from Redis.

    Every value comes back equal and of the same types: ``None``, ``bool``,
    ``int``, ``float`` (``nan`` and the infinities included), ``str``, ``list``
    and ``dict`` as plain JSON; tuples, dicts with keys that are not all
    ``str``, ``bytes``, sets, frozensets, ``datetime`` (naive or with a fixed
    offset), ``date``, ``time``, ``timedelta``, ``Decimal`` and ``UUID`` as
    small tagged objects (``{"$sf": "tuple", "v": [...]}``). Anything else,
    subclasses of those types included (an ``IntEnum``, a namedtuple), is a
    :class:`CodecError` naming where it is in the value, unless ``default``
    turns it into something that can be sent and ``object_hook`` turns it back.

    Args:
        default: called with a value of another type; returns what to send
            instead (as ``json.dumps``'s ``default``).
        object_hook: called with every decoded plain ``dict``; returns the
            value to use (as ``json.loads``'s ``object_hook``). With either
            hook, every value is decoded once more before it is sent, and one
            that does not come back equal is a :class:`CodecError`.

    Example::

        @dataclass(frozen=True)
        class Point:
            x: int
            y: int

        codec = JsonSerializer(
            default=lambda o: {"point": [o.x, o.y]} if type(o) is Point else None,
            object_hook=lambda d: Point(*d["point"]) if d.keys() == {"point"} else d,
        )
    """

    def __init__(
        self,
        *,
        default: Callable[[Any], Any] | None = None,
        object_hook: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        hooks: tuple[tuple[str, object], ...] = (("default", default), ("object_hook", object_hook))
        for name, hook in hooks:
            if hook is not None and not callable(hook):
                msg = f"{name} must be a callable, got {type(hook).__name__}"
                raise TypeError(msg)
        self._default = default
        self._object_hook = object_hook

    def dumps(self, value: Any, /) -> bytes:
        try:
            plain = self._encode_fast(value)
        except _Unsendable:
            # Walk again, tracking where each item is, only to name the place.
            self._encode(value, "result")
            raise  # pragma: no cover - the walk above raises CodecError for the same item
        data = json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
        raw = data.encode("utf-8", "surrogatepass")  # a lone surrogate in a str comes back as it was
        if self._default is not None or self._object_hook is not None:
            where = _difference(value, self.loads(raw), "result")
            if where is not None:
                msg = "does not come back equal (and of the same type) through default= and object_hook="
                raise CodecError(where, msg)
        return raw

    def loads(self, data: bytes, /) -> Any:
        text = data.decode("utf-8", "surrogatepass")
        if self._object_hook is None and _TAG_TEXT not in text:
            return json.loads(text)  # plain JSON: no tagged object to rebuild, so no Python call per dict
        return json.loads(text, object_hook=self._decode)

    def __repr__(self) -> str:
        return "JsonSerializer()" if self._default is None and self._object_hook is None else "JsonSerializer(...)"

    def _encode_fast(self, value: Any) -> Any:  # noqa: PLR0911 - one branch per exact type
        """:meth:`_encode` without the path of each item (the common case: the value can be sent).

        A list or ``str``-keyed dict of plain scalars is sent as it is: the
        type checks run in C (``issuperset`` over ``map(type, ...)``), and
        ``json.dumps`` writes it exactly.
        """
        cls: type[Any] = value.__class__
        if cls in _SCALARS:
            return value
        encode = self._encode_fast
        if cls is list:
            if _SCALARS.issuperset(map(type, value)):
                return value
            return [item if item.__class__ in _SCALARS else encode(item) for item in value]
        if cls is dict:
            if _TAG not in value and _STR.issuperset(map(type, value)):
                if _SCALARS.issuperset(map(type, value.values())):
                    return value
                return {k: v if v.__class__ in _SCALARS else encode(v) for k, v in value.items()}
            return {_TAG: "dict", "v": [[encode(k), encode(v)] for k, v in value.items()]}
        if cls is tuple:
            return {_TAG: "tuple", "v": [item if item.__class__ in _SCALARS else encode(item) for item in value]}
        if cls is set or cls is frozenset:
            return {_TAG: cls.__name__, "v": [encode(item) for item in value]}
        try:
            return self._encode(value, "")
        except CodecError:
            raise _Unsendable from None

    def _encode(self, value: Any, path: str) -> Any:  # noqa: PLR0911 - one branch per exact type
        cls: type[Any] = value.__class__
        if cls in _SCALARS:
            return value
        if cls is list:
            return [self._encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if cls is dict:
            if _TAG not in value and all(type(k) is str for k in value):
                return {k: self._encode(v, _at(path, k)) for k, v in value.items()}
            pairs = [[self._encode(k, f"{path} key {k!r}"), self._encode(v, _at(path, k))] for k, v in value.items()]
            return {_TAG: "dict", "v": pairs}
        if cls is tuple:
            return {_TAG: "tuple", "v": [self._encode(item, f"{path}[{i}]") for i, item in enumerate(value)]}
        if cls is set or cls is frozenset:
            return {_TAG: cls.__name__, "v": [self._encode(item, f"{path} item") for item in value]}
        if cls is bytes:
            return {_TAG: "bytes", "v": base64.b64encode(value).decode()}
        if cls is dt.datetime and (value.tzinfo is None or type(value.tzinfo) is dt.timezone):
            return {_TAG: "datetime", "v": value.isoformat()}
        if cls is dt.date:
            return {_TAG: "date", "v": value.isoformat()}
        if cls is dt.time and value.tzinfo is None:
            return {_TAG: "time", "v": value.isoformat()}
        if cls is dt.timedelta:
            return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
        if cls is decimal.Decimal:
            return {_TAG: "decimal", "v": str(value)}
        if cls is uuid.UUID:
            return {_TAG: "uuid", "v": str(value)}
        if self._default is not None:
            replaced = self._default(value)
            if replaced is not None and type(replaced) is not cls:
                return self._encode(replaced, path)
        what = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
        msg = (
            f"{what} cannot be sent so that it comes back equal: JsonSerializer sends data of the exact types "
            "it lists (a subclass such as an IntEnum or a namedtuple would come back as its base); convert it, "
            "or pass JsonSerializer(default=..., object_hook=...)"
        )
        raise CodecError(path, msg)

    def _decode(self, obj: dict[str, Any]) -> Any:
        tag = obj.get(_TAG)
        if tag is None or len(obj) != 2:
            return obj if self._object_hook is None else self._object_hook(obj)
        v = obj["v"]
        return _DECODERS[tag](v)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "tuple": tuple,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
    "bytes": base64.b64decode,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda dsm: dt.timedelta(days=dsm[0], seconds=dsm[1], microseconds=dsm[2]),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
}


def _difference(a: Any, b: Any, path: str) -> str | None:  # noqa: PLR0911 - one answer per kind of value
    """Where ``b`` differs from ``a`` in value or in type, or None when they are equal."""
    if type(a) is not type(b):
        return path
    if type(a) in (list, tuple):
        if len(a) != len(b):
            return path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            where = _difference(x, y, f"{path}[{i}]")
            if where is not None:
                return where
        return None
    if type(a) is dict:
        if a.keys() != b.keys():
            return path
        for k, x in a.items():  # pyright: ignore[reportUnknownVariableType]
            where = _difference(x, b[k], _at(path, k))
            if where is not None:
                return where
        return None
    if type(a) is float and a != a:  # nan  # noqa: PLR0124
        return None if b != b else path  # noqa: PLR0124
    return None if a == b else path


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
