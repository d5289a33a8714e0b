"""What @singleflight refuses, and why each refusal is clear."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pytest

from singleflight_sync import Group, singleflight

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x


class GeneratorCallable:
    def __call__(self, x: int) -> Iterator[int]:
        yield x


class AsyncGeneratorCallable:
    async def __call__(self, x: int) -> AsyncIterator[int]:
        yield x


class PlainCallable:
    def __call__(self, x: int) -> int:
        return x * 2


@pytest.mark.parametrize("obj", [AsyncCallable(), GeneratorCallable(), AsyncGeneratorCallable()], ids=type)
def test_callable_objects_that_return_single_use_results_are_refused(obj: Any) -> None:
    with pytest.raises(TypeError, match="coroutine or generator, which can be consumed only once"):
        singleflight(obj)
    with pytest.raises(TypeError, match=r"Group\.do_async"):
        singleflight(key=lambda x: x)(obj)


def test_a_partial_of_a_coroutine_function_is_refused() -> None:
    async def fetch(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="coroutine or generator"):
        singleflight(functools.partial(fetch, 1))


def test_a_plain_callable_object_is_accepted() -> None:
    double = singleflight(key=lambda x: x)(PlainCallable())
    assert double(4) == 8


def test_a_class_is_refused_with_a_factory_suggestion() -> None:
    class Client:
        def __init__(self, url: str) -> None:
            self.url = url

    with pytest.raises(TypeError, match=r"cannot wrap the class .*Client.*factory"):
        singleflight(Client)

    @singleflight
    def make_client(url: str) -> Client:  # the supported way: a factory
        return Client(url)

    assert make_client("x").url == "x"


def test_forget_unshared_on_an_unknown_key_returns_false() -> None:
    # Unlike Go's ForgetUnshared (true when nothing is in flight): False means
    # "nothing was forgotten", the same answer forget() gives.
    group: Group[str, int] = Group()
    assert group.forget_unshared("nobody") is False
    assert group.forget("nobody") is False
