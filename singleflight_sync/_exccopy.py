"""Exception copies for followers: the leader's exception, rebuilt without running ``__init__``.

Each follower raises its own copy (one shared instance raised from many
threads would collect every thread's frames, cpython#101267). A copy must
equal the original: the same type, ``args``, ``str()``, attributes and
``__notes__``. Rebuilding through ``type(exc)(*exc.args)``, as ``copy.copy``
does, runs ``__init__`` again: a message built in ``__init__`` is built twice
("API returned API returned 500") and its side effects run once per
follower. So the copy is made by ``__new__`` alone (which stores ``args``,
and for ``OSError`` and exception groups their C-level fields), then the
instance's ``__dict__``, its ``__slots__`` and the remaining C-level fields
of built-in exceptions are copied over.
"""

from __future__ import annotations

import types
from typing import Any

_SETTABLE = (types.MemberDescriptorType, types.GetSetDescriptorType)
# Fields set in __dict__ or by __new__, or ones that must stay the copy's own.
_SKIP = frozenset(
    {"args", "__dict__", "__traceback__", "__cause__", "__context__", "__suppress_context__", "__notes__"}
)


def _builtin_fields(cls: type) -> list[str]:
    """The C-level fields of the built-in exception classes ``cls`` derives from."""
    names: list[str] = []
    for base in cls.__mro__:
        if base.__module__ != "builtins":
            continue
        for name, attr in vars(base).items():
            if isinstance(attr, _SETTABLE) and name not in _SKIP and name not in names:
                names.append(name)
    return names


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for base in cls.__mro__:
        if base.__module__ == "builtins":
            continue
        slots = vars(base).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


_FIELDS: dict[type, tuple[type[BaseException], list[str], list[str]]] = {}
_UNSET = object()


def copy_exception(exc: BaseException) -> BaseException | None:
    """An equal copy of ``exc`` made without calling ``__init__``; None if it cannot be made."""
    cls = type(exc)
    fields = _FIELDS.get(cls)
    if fields is None:
        # Reading a class's fields once is enough; the dict only grows by one
        # entry per exception class (a race adds the same entry twice, harmlessly).
        base = next(b for b in cls.__mro__ if b.__module__ == "builtins")
        fields = _FIELDS[cls] = (base, _builtin_fields(cls), _slot_names(cls))
    builtin_base, builtin, slots = fields
    try:
        dup: Any = cls.__new__(cls, *exc.args)
        if type(dup) is not cls:
            return None
        # The built-in base's own (C-level) __init__ parses args the way it
        # did for the original: OSError's errno and strerror when a subclass
        # defines __init__, UnicodeError's fields, StopIteration's value.
        # No Python-level __init__ runs.
        builtin_base.__init__(dup, *exc.args)
        dup.args = exc.args
        for name in builtin:
            try:
                value = getattr(exc, name)
            except AttributeError:
                continue  # an unset optional field (BlockingIOError.characters_written)
            if getattr(dup, name, _UNSET) is value:
                continue  # set by __new__ already (and None stays unset: OSError's filename2)
            try:
                setattr(dup, name, value)
            except (AttributeError, TypeError):
                continue  # read-only, and already set by __new__ (ExceptionGroup.exceptions)
        for name in slots:
            try:
                setattr(dup, name, getattr(exc, name))
            except AttributeError:
                continue  # an unset slot stays unset
        state = getattr(exc, "__dict__", None)
        if state:
            dup.__dict__.update(state)
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            # Each caller gets its own list: add_note() on one copy must not
            # show up in the others.
            setattr(dup, "__notes__", list(notes))  # pyright: ignore[reportUnknownArgumentType]  # noqa: B010 - not every Python types __notes__
    except Exception:
        return None
    return dup
