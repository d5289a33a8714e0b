"""JsonSerializer: every value comes back equal and of the same types, or a CodecError says where."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("redis")

from singleflight_sync.redis import JsonSerializer, ResultSerializationError
from singleflight_sync.redis._codec import CodecError, _difference

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    st.binary(max_size=16),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(dt.timezone.utc))),
    st.timedeltas(),
)
# Dict keys and set items without nan: a nan key is never equal to itself.
key_scalars = scalars.filter(lambda v: not (isinstance(v, float) and math.isnan(v)))
hashables = st.recursive(
    key_scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=5
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=3),
    ),
    max_leaves=12,
)


@given(values)
def test_every_value_comes_back_equal_and_of_the_same_types(value: Any) -> None:
    codec = JsonSerializer()
    assert _difference(value, codec.loads(codec.dumps(value)), "result") is None


def test_the_issues_examples() -> None:
    codec = JsonSerializer()
    for value in ({1: "a"}, {1: "a", "1": "b"}, (1, 2), {"$sf": "tuple", "v": [1]}, "lone \ud800 surrogate"):
        back = codec.loads(codec.dumps(value))
        assert back == value
        assert type(back) is type(value)
    nan = codec.loads(codec.dumps(math.nan))
    assert math.isnan(nan)


class Level(enum.IntEnum):
    HIGH = 3


Point = collections.namedtuple("Point", "x y")  # noqa: PYI024 - the kind of value users send


@pytest.mark.parametrize(
    ("value", "where", "what"),
    [
        ({"items": [1, 2, 3, Level.HIGH]}, 'result["items"][3]', "Level"),
        (Point(1, 2), "result", "Point"),
        ({"when": collections.OrderedDict(a=1)}, 'result["when"]', "OrderedDict"),
        ([object()], "result[0]", "object"),
        ({(1, Level.HIGH): 1}, "result key", "Level"),
    ],
)
def test_a_value_that_would_change_is_a_codec_error_naming_where(value: Any, where: str, what: str) -> None:
    with pytest.raises(CodecError) as info:
        JsonSerializer().dumps(value)
    assert info.value.path.startswith(where)
    assert what in str(info.value)
    assert isinstance(info.value, TypeError)


@dataclasses.dataclass(frozen=True)
class Quote:
    symbol: str
    price: decimal.Decimal


def test_the_dataclass_recipe() -> None:
    codec = JsonSerializer(
        default=lambda o: {"quote": dataclasses.asdict(o)} if type(o) is Quote else None,
        object_hook=lambda d: Quote(**d["quote"]) if d.keys() == {"quote"} else d,
    )
    value = {"BTC": Quote("BTC", decimal.Decimal("97000.5")), "n": (1, 2)}
    assert codec.loads(codec.dumps(value)) == value


def test_hooks_that_do_not_round_trip_are_refused() -> None:
    codec = JsonSerializer(default=lambda o: {"level": int(o)} if isinstance(o, Level) else None)
    with pytest.raises(CodecError, match=r'result\["x"\].*does not come back equal'):
        codec.dumps({"x": Level.HIGH})  # no object_hook: it would come back as a dict


def test_bad_hooks_are_a_clear_error() -> None:
    with pytest.raises(TypeError, match="default must be a callable"):
        JsonSerializer(default="json")  # type: ignore[arg-type]


def test_result_serialization_error_is_what_the_group_raises() -> None:
    assert issubclass(ResultSerializationError, Exception)
    assert uuid.UUID(int=1) == JsonSerializer().loads(JsonSerializer().dumps(uuid.UUID(int=1)))


READER = r"""
import sys
from singleflight_sync.redis import RedisGroup
with RedisGroup(sys.argv[1], namespace=sys.argv[2], linger=30) as group:
    print(repr(group.do("k", lambda: "ran in the reader")))
"""


def test_another_process_gets_an_equal_value_of_the_same_types(redis_url: str, ns: str) -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from singleflight_sync.redis import RedisGroup  # noqa: PLC0415

    value = {1: "a", "1": "b", "t": (1, ("x", 2.5)), "s": frozenset({3}), "b": b"\x00\xff", "z": -0.0}
    with RedisGroup(redis_url, namespace=ns, linger=30) as group:
        assert group.do("k", lambda: value) == value
        out = subprocess.run(
            [sys.executable, "-c", READER, redis_url, ns], capture_output=True, text=True, timeout=60, check=True
        )
    assert out.stdout.strip() == repr(value)


class _Level(int):
    """An int subclass: it would come back as a plain int, so it cannot be sent."""


@given(values, st.booleans(), st.integers(min_value=0, max_value=3))
def test_the_fast_walk_sends_what_the_exact_walk_sends(value: Any, spoil: bool, depth: int) -> None:
    """The path-free walk of dumps() gives the same JSON as the walk that names places, or the same error."""
    if spoil:  # bury an item that cannot be sent a few levels down
        for _ in range(depth):
            value = [value, {"x": (value,)}]
        value = [value, _Level(3)]
    codec = JsonSerializer()
    refusal = ""
    try:
        expected: Any = codec._encode(value, "result")
    except CodecError as exc:
        refusal = str(exc)
    if refusal:
        with pytest.raises(CodecError) as raised:
            codec.dumps(value)
        assert str(raised.value) == refusal  # the same place is named
        return
    assert codec._encode_fast(value) == expected
    assert _difference(value, codec.loads(codec.dumps(value)), "result") is None
