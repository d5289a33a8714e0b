"""Keys: public helpers for ``key=`` and the decorator's signature normaliser."""

from __future__ import annotations

import inspect
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ["hashkey", "methodkey", "typedkey"]


class _KwMark:
    """Separates positional arguments from keyword items in a helper key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<kwargs>"

    def __reduce__(self) -> str:
        return "_KWMARK"


_KWMARK = _KwMark()


def hashkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """Return a key for these arguments: positional values, then sorted keyword items.

    Keyword items follow a private marker, so ``hashkey(b=2)`` never equals
    ``hashkey(("b", 2))``. It does not look at a signature: ``f(1, b=2)`` and
    ``f(1, 2)`` get different keys (the decorator's default key does better).

    Example::

        >>> hashkey(1, b=2) == hashkey(1, b=2)
        True
    """
    if not kwargs:
        return args
    return (*args, _KWMARK, *sorted(kwargs.items()))


def typedkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """Like :func:`hashkey`, but ``1`` and ``1.0`` (equal, different types) get different keys.

    Example::

        >>> typedkey(1) == typedkey(1.0)
        False
    """
    key = hashkey(*args, **kwargs)
    return (*key, *(type(v) for v in args), *(type(v) for _, v in sorted(kwargs.items())))


def methodkey(self: object, *args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """Like :func:`hashkey`, but ignore ``self``: every instance shares one flight per arguments.

    Example::

        >>> methodkey(object(), 1) == methodkey(object(), 1)
        True
    """
    return hashkey(*args, **kwargs)


_EMPTY = inspect.Parameter.empty
_POS_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Unbindable(Exception):
    """The arguments do not fit the signature; the function itself will say why."""


def make_normaliser(
    fn: Callable[..., Any], *, typed: bool
) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
    """Build ``key(args, kwargs)`` that maps every spelling of a call to one tuple.

    The key has a fixed shape for the signature: one slot per positional
    parameter, then ``*args`` as one tuple, one slot per keyword-only
    parameter, then ``**kwargs`` as one sorted tuple of items. Defaults are
    filled in, so ``f(1)``, ``f(1, 2)``, ``f(1, b=2)`` and ``f(a=1, b=2)`` agree
    when ``b`` defaults to 2, and no value can move into another's slot.
    Everything that depends only on the signature is computed here, once.

    Raises ``_Unbindable`` when the arguments do not fit.
    """
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in _POS_KINDS]
    npos = len(positional)
    pos_names = tuple(p.name for p in positional)
    pos_defaults = tuple(p.default for p in positional)
    # names that may be given by keyword (positional-only ones may not)
    by_keyword = tuple(p.kind is not inspect.Parameter.POSITIONAL_ONLY for p in positional)
    has_varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    kwonly = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    kw_names = tuple(p.name for p in kwonly)
    kw_defaults = tuple(p.default for p in kwonly)
    has_varkw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    simple = not has_varargs and not kwonly and not has_varkw
    # For simple signatures: slot of each name that may be passed by keyword,
    # and for each count of positional arguments the required slots after it.
    slot = {name: i for i, name in enumerate(pos_names) if by_keyword[i]}
    required_after = tuple(tuple(i for i in range(n, npos) if pos_defaults[i] is _EMPTY) for n in range(npos + 1))
    # For n positional arguments, a getter of the remaining parameters by
    # name: f(1, b=2) and f(a=1, b=2) build their key in one C call when
    # exactly those names are passed. None where some are positional-only.
    pickers = tuple(_picker(pos_names[n:]) if all(by_keyword[n:]) else None for n in range(npos))

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        nargs = len(args)
        if simple:
            if not kwargs:
                if nargs == npos:
                    return args  # the common case: every parameter given positionally
            elif nargs + len(kwargs) == npos and (pick := pickers[nargs]) is not None:
                # Exactly npos - nargs keywords, and each name it needs is
                # there: so they are exactly the remaining parameters.
                try:
                    return args + pick(kwargs)
                except KeyError:
                    pass  # another name: the general path below says why
            if nargs > npos:
                raise _Unbindable
            values = [*args, *pos_defaults[nargs:]]
            for name, value in kwargs.items():
                i = slot.get(name, -1)
                if i < nargs:
                    raise _Unbindable  # unknown keyword, or given twice
                values[i] = value
            for i in required_after[nargs]:
                if values[i] is _EMPTY:
                    raise _Unbindable  # missing
            return tuple(values)
        if nargs > npos and not has_varargs:
            raise _Unbindable
        rest = dict(kwargs) if kwargs else {}
        values = list(args[:npos])
        for i in range(min(nargs, npos)):
            if by_keyword[i] and pos_names[i] in rest:
                raise _Unbindable  # given twice
        for i in range(nargs, npos):
            name = pos_names[i]
            if by_keyword[i] and name in rest:
                values.append(rest.pop(name))
            elif pos_defaults[i] is not _EMPTY:
                values.append(pos_defaults[i])
            else:
                raise _Unbindable  # missing
        if has_varargs:
            values.append(args[npos:])
        for name, default in zip(kw_names, kw_defaults, strict=False):
            if name in rest:
                values.append(rest.pop(name))
            elif default is not _EMPTY:
                values.append(default)
            else:
                raise _Unbindable
        if has_varkw:
            values.append(tuple(sorted(rest.items())))
        elif rest:
            raise _Unbindable  # unexpected keyword
        return tuple(values)

    if not typed:
        return bind

    def bind_typed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        key = bind(args, kwargs)
        last = len(key) - 1
        types: list[type[Any]] = []
        for i, value in enumerate(key):
            if has_varargs and i == npos:
                types.extend(v.__class__ for v in cast("tuple[Any, ...]", value))
            elif has_varkw and i == last:
                types.extend(v.__class__ for _, v in cast("tuple[tuple[str, Any], ...]", value))
            else:
                types.append(value.__class__)
        return (*key, tuple(types))

    return bind_typed


def plain_arity(fn: Callable[..., Any]) -> int:
    """How many parameters ``fn`` has when all are positional, else -1.

    For such a function a call passing every parameter positionally has the
    key ``args`` itself (see :func:`make_normaliser`), so the decorator can
    skip the normaliser for it.
    """
    params = inspect.signature(fn).parameters.values()
    if all(p.kind in _POS_KINDS for p in params):
        return len(params)
    return -1


def _picker(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``kwargs -> tuple of kwargs[name] for names``; raises ``KeyError`` for a missing name."""
    if len(names) == 1:
        (name,) = names
        return lambda kwargs: (kwargs[name],)
    return cast("Callable[[dict[str, Any]], tuple[Any, ...]]", itemgetter(*names))


def describe_unhashable(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, str] | None:
    """Name the first argument of a call to ``fn`` that cannot be hashed: ``(label, type name)``.

    The label is the parameter's name (``args[1]`` for an item of ``*args``, the
    keyword for one of ``**kwargs``). Defaults count: a ``b=[]`` default makes
    every call's key unhashable. Without a signature the label is the position
    (``#0``) or the keyword. Labels come from the parameter list rather than
    ``Signature.bind``, which before Python 3.13 rejects some valid calls.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature (some builtins)
        params = []
    positional = [p for p in params if p.kind in _POS_KINDS]
    varargs = next((p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
    items: list[tuple[str, Any]] = []
    for i, value in enumerate(args):
        if i < len(positional):
            label = positional[i].name
        elif varargs is not None:
            label = f"{varargs}[{i - len(positional)}]"
        else:
            label = f"#{i}"
        items.append((label, value))
    items.extend(kwargs.items())
    for i, p in enumerate(params):
        given = i < len(args) if p.kind in _POS_KINDS else False
        if p.kind is not inspect.Parameter.POSITIONAL_ONLY:
            given = given or p.name in kwargs
        if not given and p.default is not _EMPTY:
            items.append((p.name, p.default))
    for label, v in items:
        try:
            hash(v)
        except TypeError:
            return label, type(v).__name__
    return None
