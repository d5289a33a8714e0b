"""The ``@singleflight`` decorator."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from ._errors import UnhashableKeyError
from ._group import FlightStats, Group, _check_timeout
from ._keys import _Unbindable, describe_unhashable, hashkey, make_normaliser

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from typing_extensions import Self  # typing.Self is 3.11+; only the checker reads this

__all__ = ["BoundSingleFlightFunction", "SingleFlightFunction", "singleflight"]

P = ParamSpec("P")
R = TypeVar("R")


class SingleFlightFunction(Generic[P, R]):
    """A function wrapped by :func:`singleflight`.

    Calling it runs the function once per key at a time; concurrent calls
    with the same key share the outcome. ``__wrapped__`` is the original
    function, ``group`` the :class:`Group` that holds its flights.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        key: Callable[..., Hashable] | None,
        timeout: float | None,
        group: Group[Any, Any] | None,
        typed: bool,
    ) -> None:
        self._fn = fn
        self.group: Group[Any, Any] = group if group is not None else Group(timeout=timeout)
        self._timeout = self.group._timeout if timeout is None else timeout
        self._keyfn = key
        # A group passed in may serve other functions too: scope this
        # function's keys by the function itself so that f(1) and g(1) never
        # share a flight by accident.
        self._scope = self.group._scope_for(fn) if group is not None else None
        if key is None:
            try:
                self._bind = make_normaliser(fn, typed=typed)
            except (TypeError, ValueError):  # no introspectable signature (some builtins)
                self._bind = _fallback_binder(typed=typed)
        self._name: str = getattr(fn, "__qualname__", repr(fn))
        functools.update_wrapper(self, fn)

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        key = self._bind(args, kwargs) if self._keyfn is None else self._keyfn(*args, **kwargs)
        return key if self._scope is None else (self._scope, key)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            key = self._key(args, kwargs)
        except _Unbindable:
            # The arguments do not fit the signature: let the function raise
            # its own TypeError, exactly as an undecorated call would.
            return self._fn(*args, **kwargs)
        try:
            return self.group._call(key, self._fn, args, kwargs, self._timeout)  # type: ignore[no-any-return]
        except UnhashableKeyError as exc:
            if exc.key is not key:  # raised by a nested flight inside the function
                raise
            raise self._unhashable(key, args, kwargs) from None

    def forget(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the flight these arguments would join; see :meth:`Group.forget`."""
        try:
            key = self._key(args, kwargs)
        except _Unbindable:
            msg = f"{self._name}.forget() takes the same arguments as the function; these do not fit its signature"
            raise TypeError(msg) from None
        try:
            return self.group.forget(key)
        except UnhashableKeyError:
            raise self._unhashable(key, args, kwargs) from None

    def stats(self) -> FlightStats:
        """The counters of :attr:`group` (shared with every user of that group)."""
        return self.group.stats()

    def _unhashable(self, key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> UnhashableKeyError:
        name = self._name
        if self._keyfn is not None:
            msg = (
                f"{name}(): the key= function returned an unhashable key {key!r}; "
                "make it return a hashable value such as a tuple"
            )
            return UnhashableKeyError(key, msg)
        what = describe_unhashable(self._fn, args, kwargs) or "an argument"
        msg = (
            f"{name}(): {what} is unhashable, so calls cannot be matched; "
            "pass key= to @singleflight to build a hashable key (for example key=lambda items: tuple(items))"
        )
        return UnhashableKeyError(key, msg)

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> BoundSingleFlightFunction[R]: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Self | BoundSingleFlightFunction[R]:
        if obj is None:
            return self
        return BoundSingleFlightFunction(self, obj)

    def __repr__(self) -> str:
        return f"<singleflight {self._name!r}>"


class BoundSingleFlightFunction(Generic[R]):
    """A :class:`SingleFlightFunction` bound to an instance: ``obj.method``.

    The instance is part of every key, so each instance dedupes its own calls.
    """

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: SingleFlightFunction[..., R], instance: object) -> None:
        self.__func__ = func
        self.__self__ = instance

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.__func__(self.__self__, *args, **kwargs)

    def forget(self, *args: Any, **kwargs: Any) -> bool:
        """Forget the flight ``obj.method(*args, **kwargs)`` would join."""
        return self.__func__.forget(self.__self__, *args, **kwargs)

    def stats(self) -> FlightStats:
        """The counters of the method's group."""
        return self.__func__.stats()

    @property
    def group(self) -> Group[Any, Any]:
        return self.__func__.group

    @property
    def __wrapped__(self) -> Callable[..., R]:
        return self.__func__.__wrapped__  # type: ignore[no-any-return, attr-defined]

    def __repr__(self) -> str:
        return f"<bound singleflight {self.__func__._name!r} of {self.__self__!r}>"


def _fallback_binder(*, typed: bool) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        key = hashkey(*args, **kwargs)
        if typed:
            return (*key, tuple(type(v) for v in args), tuple(type(v) for _, v in sorted(kwargs.items())))
        return key

    return bind


def _check_options(key: object, timeout: object, group: object, typed: object) -> None:
    if key is not None and not callable(key):
        msg = f"key must be a callable that builds a hashable key from the arguments, got {key!r}"
        raise TypeError(msg)
    _check_timeout(timeout)
    if group is not None and not isinstance(group, Group):
        msg = f"group must be a singleflight_sync.Group, got {type(group).__name__}"
        raise TypeError(msg)
    if not isinstance(typed, bool):
        msg = f"typed must be True or False, got {typed!r}"
        raise TypeError(msg)
    if typed and key is not None:
        msg = "typed=True applies to the default key only; with key=, build the types into your key (see typedkey)"
        raise ValueError(msg)


@overload
def singleflight(fn: Callable[P, R], /) -> SingleFlightFunction[P, R]: ...
@overload
def singleflight(
    *,
    key: Callable[..., Hashable] | None = None,
    timeout: float | None = None,
    group: Group[Any, Any] | None = None,
    typed: bool = False,
) -> Callable[[Callable[P, R]], SingleFlightFunction[P, R]]: ...
def singleflight(
    fn: Callable[P, R] | None = None,
    /,
    *,
    key: Callable[..., Hashable] | None = None,
    timeout: float | None = None,
    group: Group[Any, Any] | None = None,
    typed: bool = False,
) -> SingleFlightFunction[P, R] | Callable[[Callable[P, R]], SingleFlightFunction[P, R]]:
    """Deduplicate concurrent calls of a blocking function, bare or with options.

    Calls whose arguments match (after binding them to the signature, so
    ``f(1)``, ``f(1, 2)`` and ``f(a=1, b=2)`` match when ``b`` defaults to 2)
    share one execution while it runs. Nothing is cached.

    Args:
        fn: the function, when used bare as ``@singleflight``.
        key: builds the key from the call's arguments instead, for example
            :func:`hashkey` or ``lambda user, **_: user.id``.
        timeout: seconds a follower waits before :class:`FlightTimeoutError`
            (default: the group's, which waits as long as the leader runs).
        group: a :class:`Group` to hold the flights (default: a new one for
            this function). Keys are scoped to the function either way.
        typed: give arguments of different types separate flights
            (``1`` and ``1.0``), as ``functools.lru_cache`` does.

    Raises:
        TypeError: an option has the wrong type, or the function is a
            coroutine or generator function (a result object would be shared).

    Example::

        >>> @singleflight
        ... def load(user_id: int) -> dict[str, int]:
        ...     return {"id": user_id}
        >>> load(7)
        {'id': 7}
    """
    _check_options(key, timeout, group, typed)

    def decorate(f: Any) -> Any:
        if isinstance(f, (classmethod, staticmethod)):
            return type(f)(decorate(f.__func__))
        if not callable(f):
            msg = (
                f"@singleflight decorates a function, got {type(f).__name__} {f!r}; "
                "for options use @singleflight(key=..., timeout=...)"
            )
            raise TypeError(msg)
        if inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) or inspect.isgeneratorfunction(f):
            msg = (
                f"@singleflight cannot wrap {getattr(f, '__qualname__', f)!r}: it returns a coroutine or generator, "
                "which can be consumed only once; wrap a blocking function, or use Group.do_async from async code"
            )
            raise TypeError(msg)
        return SingleFlightFunction(f, key=key, timeout=timeout, group=group, typed=typed)

    if fn is None:
        return decorate
    return decorate(fn)  # type: ignore[no-any-return]
