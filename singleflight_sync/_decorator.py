"""The ``@singleflight`` decorator."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from ._errors import UnhashableKeyError, show_key
from ._group import FlightStats, Group, _check_timeout
from ._keys import _POS_KINDS, _Unbindable, describe_unhashable, hashkey, make_normaliser, plain_arity

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from typing_extensions import Self  # typing.Self is 3.11+; only the checker reads this

__all__ = ["BoundSingleFlightFunction", "SingleFlightFunction", "singleflight"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
T = TypeVar("T")


class SingleFlightFunction(Generic[P, R]):
    """A function wrapped by :func:`singleflight`.

    Calling it runs the function once per key at a time; concurrent calls
    with the same key share the outcome. ``__wrapped__`` is the original
    function, ``group`` the :class:`Group` that holds its flights.
    """

    # The wrapper's own state lives in slots: the copied metadata makes the
    # instance __dict__ one that CPython 3.11 cannot specialise attribute
    # loads for, and __call__ reads six of these per call.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_arity",
        "_bind",
        "_by_do",
        "_fn",
        "_keyfn",
        "_name",
        "_scope",
        "_timeout",
        "group",
    )

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        key: Callable[..., Hashable] | None,
        timeout: float | None,
        group: Group[Any, Any] | None,
        typed: bool,
    ) -> None:
        # Copy the metadata first, __dict__ included as functools does, so
        # that nothing copied can replace this wrapper's own state below: a
        # function attribute named "group" or "forget", or the state of an
        # inner @singleflight when one is stacked on another.
        functools.update_wrapper(self, fn)
        for name in _RESERVED.intersection(self.__dict__):
            del self.__dict__[name]
        self._fn = fn
        self.group: Group[Any, Any] = group if group is not None else Group(timeout=timeout)
        # None means "the group's"; a timeout too long for a lock to wait
        # normalises to None too, which then means "wait for ever".
        self._timeout = self.group._timeout if timeout is None else _check_timeout(timeout)
        # Group.do is the inlined fast path, and applies the group's timeout;
        # a timeout of the decorator's own goes through Group._call.
        self._by_do = self._timeout == self.group._timeout
        self._keyfn = key
        # A group passed in may serve other functions too: scope this
        # function's keys by the function itself so that f(1) and g(1) never
        # share a flight by accident.
        self._scope = self.group._scope_for(fn) if group is not None else None
        self._bind: Callable[[tuple[Any, ...], dict[str, Any]], Hashable]
        # A call with this many positional arguments and no keywords has the
        # key ``args`` (-1: no such shortcut). Saves the binder's call.
        self._arity = -1
        if key is not None:
            self._bind = _user_binder(key)
        else:
            try:
                self._bind = make_normaliser(fn, typed=typed)
            except (TypeError, ValueError):  # no introspectable signature (some builtins)
                self._bind = _fallback_binder(typed=typed)
            else:
                if not typed:
                    self._arity = plain_arity(fn)
        self._name: str = getattr(fn, "__qualname__", repr(fn))

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The scoped key of a call, or ``_NO_KEY`` when the arguments do not fit the function."""
        try:
            key = self._bind(args, kwargs)
        except _Unbindable:
            return _NO_KEY
        except TypeError:
            # key= raised. If the arguments do not fit the function either,
            # the function's own error is the one worth showing.
            if self._keyfn is None or self._fits(args, kwargs):
                raise
            return _NO_KEY
        return key if self._scope is None else (self._scope, key)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # _key() inlined for the common case: this is the hot path.
        key: Hashable
        if not kwargs and len(args) == self._arity:
            key = args if self._scope is None else (self._scope, args)
        else:
            try:
                key = self._bind(args, kwargs)
            except _Unbindable:
                key = _NO_KEY
            except TypeError:
                key = self._key(args, kwargs)  # key= raised: sort out whose error it is
            else:
                if self._scope is not None:
                    key = (self._scope, key)
        if key is _NO_KEY:
            # Called outside the except clause that found it, so the
            # function's own TypeError is exactly an undecorated call's,
            # with no internal exception chained to it.
            return self._fn(*args, **kwargs)
        try:
            if self._by_do:
                return self.group.do(key, self._fn, *args, **kwargs)  # type: ignore[no-any-return]
            return self.group._call(key, self._fn, args, kwargs, self._timeout)  # type: ignore[no-any-return]
        except UnhashableKeyError as exc:
            if exc.key is not key:  # raised by a nested flight inside the function
                raise
            raise self._unhashable(key, args, kwargs) from None

    def forget(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the flight these arguments would join; see :meth:`Group.forget`.

        Raises:
            TypeError: the arguments do not fit the function's signature.
            UnhashableKeyError: an argument (or the ``key=`` result) is unhashable.
        """
        key = self._key(args, kwargs)
        if key is _NO_KEY:
            msg = f"{self._name}.forget() takes the same arguments as the function; these do not fit its signature"
            raise TypeError(msg)
        try:
            return self.group.forget(key)
        except UnhashableKeyError:
            raise self._unhashable(key, args, kwargs) from None

    def stats(self) -> FlightStats:
        """The counters of :attr:`group` (shared with every user of that group)."""
        return self.group.stats()

    def _fits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether the arguments bind to the function's signature (error path only)."""
        try:
            make_normaliser(self._fn, typed=False)(args, kwargs)
        except _Unbindable:
            return False
        except (TypeError, ValueError):  # no signature to check against: trust the key function's error
            return True
        return True

    def _unhashable(self, key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> UnhashableKeyError:
        name = self._name
        if self._keyfn is not None:
            msg = (
                f"{name}(): the key= function returned an unhashable key {show_key(key)}; "
                "make it return a hashable value such as a tuple"
            )
            return UnhashableKeyError(key, msg)
        found = describe_unhashable(self._fn, args, kwargs)
        if found is None:
            what = "an argument"
            example = "key=lambda items: tuple(items)"
        else:
            label, type_name = found
            what = f"argument {label!r} ({type_name})"
            if label in {"self", "cls"}:
                # The instance is alive while its flight runs, so its id is unique for that time.
                example = f"key=lambda {label}, *args: (id({label}), *args)"
            else:
                example = f"one that turns {label!r} into a tuple or a frozenset"
        msg = (
            f"{name}(): {what} is unhashable, so calls cannot be matched; "
            f"pass key= to @singleflight to build a hashable key (for example {example})"
        )
        return UnhashableKeyError(key, msg)

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: SingleFlightFunction[Concatenate[T, P2], R], obj: T, objtype: type | None = None
    ) -> BoundSingleFlightFunction[P2, R]: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return BoundSingleFlightFunction(self, obj)

    def __reduce__(self) -> str:
        # Pickled by reference, like a function or an lru_cache wrapper
        # (ProcessPoolExecutor.submit(fn, ...)); the group is per process.
        return self._name

    def __repr__(self) -> str:
        return f"<singleflight {self._name!r}>"


# Names of SingleFlightFunction's own members that a wrapped function's
# __dict__ must not shadow on the instance.
_RESERVED = frozenset(name for name in vars(SingleFlightFunction) if not name.startswith("__"))


class _NoKey:
    """Sentinel type: the arguments do not fit the function's signature."""

    __slots__ = ()


_NO_KEY: Any = _NoKey()


class BoundSingleFlightFunction(Generic[P, R]):
    """A :class:`SingleFlightFunction` bound to an instance: ``obj.method``.

    The instance is part of every key, so each instance dedupes its own calls.
    Like a bound method it compares equal to another binding of the same
    function to the same instance, and reads other attributes
    (``__name__``, ``__qualname__``) from the function.
    """

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: SingleFlightFunction[..., R], instance: object) -> None:
        self.__func__ = func
        self.__self__ = instance

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__func__(self.__self__, *args, **kwargs)

    def forget(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the flight ``obj.method(*args, **kwargs)`` would join."""
        return self.__func__.forget(self.__self__, *args, **kwargs)

    def stats(self) -> FlightStats:
        """The counters of the method's group."""
        return self.__func__.stats()

    @property
    def group(self) -> Group[Any, Any]:
        """The :class:`Group` that holds the method's flights."""
        return self.__func__.group

    @property
    def __wrapped__(self) -> Callable[..., R]:
        return self.__func__.__wrapped__  # type: ignore[no-any-return, attr-defined]

    @property
    def __signature__(self) -> inspect.Signature:
        # Without this, inspect.signature() would follow __wrapped__ to the
        # plain function and show the instance's parameter as well.
        sig = inspect.signature(self.__func__)
        params = list(sig.parameters.values())
        if params and params[0].kind in _POS_KINDS:
            params = params[1:]
        return sig.replace(parameters=params)

    def __getattr__(self, name: str) -> Any:
        if name in {"__func__", "__self__"}:  # a slot not set yet (mid-copy): do not recurse
            raise AttributeError(name)
        return getattr(self.__func__, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoundSingleFlightFunction):
            return NotImplemented
        peer: BoundSingleFlightFunction[Any, Any] = other  # pyright: ignore[reportUnknownVariableType]
        return self.__func__ is peer.__func__ and self.__self__ is peer.__self__

    def __hash__(self) -> int:
        return hash((self.__func__, id(self.__self__)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (getattr, (self.__self__, getattr(self.__func__, "__name__", self.__func__._name)))

    def __repr__(self) -> str:
        return f"<bound singleflight {self.__func__._name!r} of {self.__self__!r}>"


class _SingleFlightClassMethod(classmethod):  # type: ignore[type-arg]
    """``@singleflight`` over ``@classmethod``: bind to the class, keeping ``.forget``.

    A plain classmethod stopped binding the object it wraps in Python 3.13; it
    would hand out ``MethodType(function, cls)``, whose ``.forget(x)`` builds
    a key without the class and never matches a call.
    """

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if objtype is None:
            objtype = type(obj)
        func: SingleFlightFunction[..., Any] = self.__func__  # type: ignore[assignment]
        return BoundSingleFlightFunction(func, objtype)


def _user_binder(key: Callable[..., Hashable]) -> Callable[[tuple[Any, ...], dict[str, Any]], Hashable]:
    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        return key(*args, **kwargs)

    return bind


def _fallback_binder(*, typed: bool) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        key = hashkey(*args, **kwargs)
        if typed:
            arg_types = tuple(v.__class__ for v in args)
            kw_types = tuple(v.__class__ for _, v in sorted(kwargs.items()))
            return (*key, arg_types, kw_types)
        return key

    return bind


def _single_use(f: object) -> bool:
    """Whether calling ``f`` returns a coroutine or a generator (consumable only once)."""
    return inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) or inspect.isgeneratorfunction(f)


def _check_options(key: object, timeout: object, group: object, typed: object) -> None:
    if key is not None and not callable(key):
        msg = f"key must be a callable that builds a hashable key from the arguments, got {show_key(key)}"
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
        if type(f) is classmethod:
            inner: Any = getattr(cast("object", f), "__func__")  # noqa: B009 - f is any classmethod
            return _SingleFlightClassMethod(decorate(inner))
        if isinstance(f, (classmethod, staticmethod)):
            wrapped: Any = getattr(cast("object", f), "__func__")  # noqa: B009 - any classmethod or staticmethod
            return type(cast("Any", f))(decorate(wrapped))
        if not callable(f):
            msg = (
                f"@singleflight decorates a function, got {type(f).__name__} {f!r}; "
                "for options use @singleflight(key=..., timeout=...)"
            )
            raise TypeError(msg)
        if isinstance(f, type):
            # Each call would build one instance for all concurrent callers,
            # which then share (and mutate) it: never what a constructor means.
            msg = (
                f"@singleflight cannot wrap the class {f.__qualname__!r}: concurrent callers would share one "
                "instance; decorate a function that builds or loads it (a factory) instead"
            )
            raise TypeError(msg)
        # A callable object is judged by its __call__ (a partial by its function).
        call_method = None if inspect.isroutine(f) else type(f).__call__
        if _single_use(f) or _single_use(call_method):
            msg = (
                f"@singleflight cannot wrap {getattr(f, '__qualname__', f)!r}: it returns a coroutine or generator, "
                "which can be consumed only once; wrap a blocking function, or use Group.do_async from async code"
            )
            raise TypeError(msg)
        return SingleFlightFunction(f, key=key, timeout=timeout, group=group, typed=typed)

    if fn is None:
        return decorate
    return decorate(fn)  # type: ignore[no-any-return]
