"""Static checks of the public types, run by ``mypy --strict`` (see ``[tool.mypy]`` files).

Each ``assert_type`` fails the mypy run if the inferred type drifts, and each
``# type: ignore[code]`` fails it (``warn_unused_ignores``, on under strict)
if the call it marks stops being an error. The module also imports and runs
cleanly, because ``pytest --doctest-modules`` imports everything under tests/;
the ``check_*`` functions are never called (some of their lines are meant to fail).
"""

from __future__ import annotations

import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from singleflight_sync import (
    BoundSingleFlightFunction,
    CacheFiller,
    CallInfo,
    FlightStats,
    Group,
    SingleFlightFunction,
    cache_fill,
    hashkey,
    singleflight,
)
from singleflight_sync.redis import RedisGroup, RedisStats

if TYPE_CHECKING:
    from collections.abc import Callable

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # the test extra installs typing_extensions on 3.10
    from typing_extensions import assert_type


@singleflight
def bare(user_id: int, *, verbose: bool = False) -> str:
    return f"user {user_id}{'!' if verbose else ''}"


@singleflight(key=hashkey, timeout=2.5, group=Group(), typed=False)
def with_options(symbol: str, depth: int = 1) -> list[float]:
    return [float(len(symbol))] * depth


@singleflight(typed=True)
def typed_only(x: float) -> float:
    return x * 2


class Service:
    @singleflight
    def lookup(self, name: str) -> bytes:
        return name.encode()


def check_bare() -> None:
    # Parameter names cannot be spelled in SingleFlightFunction[[...], R], so
    # the parameters are checked by assignment and by the rejected calls.
    as_callable: Callable[[int], str] = bare
    assert_type(as_callable(1), str)
    wrong_params: Callable[[str], str] = bare  # type: ignore[assignment]
    wrong_return: Callable[[int], int] = bare  # type: ignore[assignment]
    assert callable(wrong_params)
    assert callable(wrong_return)
    assert_type(bare(1), str)
    assert_type(bare(1, verbose=True), str)
    assert_type(bare.forget(1), bool)
    assert_type(bare.forget(1, verbose=True), bool)
    assert_type(bare.stats(), FlightStats)
    assert_type(bare.stats().executions, int)
    assert_type(bare.group, Group[Any, Any])
    bare("1")  # type: ignore[arg-type]
    bare(1, verbose="yes")  # type: ignore[arg-type]
    bare()  # type: ignore[call-arg]
    bare(1, wrong=True)  # type: ignore[call-arg]
    bare.forget("1")  # type: ignore[arg-type]


def check_options() -> None:
    assert_type(with_options("BTC"), list[float])
    assert_type(with_options("BTC", depth=3), list[float])
    assert_type(with_options.forget("BTC", 3), bool)
    assert_type(typed_only(1.5), float)
    with_options(1)  # type: ignore[arg-type]
    with_options("BTC", depth="3")  # type: ignore[arg-type]
    typed_only("1.5")  # type: ignore[arg-type]


def check_method() -> None:
    svc = Service()
    unbound: SingleFlightFunction[[Service, str], bytes] = Service.lookup
    bound: BoundSingleFlightFunction[[str], bytes] = svc.lookup
    assert_type(unbound(svc, "a"), bytes)
    assert_type(bound("a"), bytes)
    not_bound: BoundSingleFlightFunction[[int], bytes] = svc.lookup  # type: ignore[assignment]
    assert callable(not_bound)
    assert_type(svc.lookup("a"), bytes)
    assert_type(svc.lookup.forget("a"), bool)
    assert_type(svc.lookup.stats(), FlightStats)
    assert_type(svc.lookup.group, Group[Any, Any])
    assert_type(Service.lookup(svc, "a"), bytes)
    svc.lookup(1)  # type: ignore[arg-type]
    svc.lookup.forget(1)  # type: ignore[arg-type]


def check_options_are_checked() -> None:
    singleflight(timeout="1")  # type: ignore[call-overload]
    singleflight(typed="yes")  # type: ignore[call-overload]
    singleflight(group=object())  # type: ignore[call-overload]


def check_group() -> None:
    group: Group[str, int] = Group(timeout=1.0)
    assert_type(group.do("k", len, "abc"), int)
    assert_type(group.call("k", len, ("abc",)), CallInfo[int])
    assert_type(group.call("k", len, ("abc",)).value, int)
    assert_type(group.forget("k"), bool)
    with ThreadPoolExecutor(1) as pool:
        assert_type(group.submit(pool, "k", len, "abc"), Future[int])
    group.do(1, len, "abc")  # type: ignore[arg-type]


def check_cache_filler() -> None:
    filler = CacheFiller({})
    assert_type(filler.fill("k", lambda: 1), int)
    assert_type(cache_fill({}, "k", lambda: "s"), str)

    def price_key(symbol: str) -> str:
        return f"price:{symbol}"

    @filler.cached(key=price_key)
    def price(symbol: str) -> float:
        return 1.0

    assert_type(price("BTC"), float)


def check_redis_group() -> None:
    g: RedisGroup[str, float] = RedisGroup("redis://127.0.0.1:6379/0")
    assert_type(g.do("k", float, "1"), float)
    assert_type(g.redis_stats(), RedisStats)
    assert_type(g.stats(), FlightStats)
