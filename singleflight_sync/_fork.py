"""Fork safety: a forked child starts with empty flight maps.

After ``os.fork()`` only the forking thread exists in the child. A flight led
by any other parent thread would never land there, so a child that joined it
would block for ever. Every group is registered here, and the at-fork hooks
hand each group a fresh lock and an empty map in the child.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._group import Group

# _registry_lock protects _groups (WeakSet is not thread-safe) and is held
# across fork() so the child never sees the set half-updated.
_registry_lock = threading.Lock()
_groups: weakref.WeakSet[Group[Any, Any]] = weakref.WeakSet()
_held: list[tuple[Group[Any, Any], bool]] = []  # each group, and whether its lock was taken

# How long fork() waits for one group's lock. A group's lock is held for a
# few dict operations, except when a key's __eq__ blocks inside one (see
# Group's lock comment): fork() must not wait for ever on such a thread. The
# child gets fresh locks and an empty map either way.
FORK_LOCK_WAIT = 0.5


def register(group: Group[Any, Any]) -> None:
    with _registry_lock:
        _groups.add(group)


def _before_fork() -> None:
    # Take every group's lock (registry first, then groups: the only order
    # anyone uses) so no flight map is mid-update at the moment of fork.
    _registry_lock.acquire()
    _held.extend((group, group._lock.acquire(timeout=FORK_LOCK_WAIT)) for group in list(_groups))


def _after_fork_in_parent() -> None:
    for group, taken in _held:
        if taken:
            group._lock.release()
    _held.clear()
    _registry_lock.release()


def _after_fork_in_child() -> None:
    global _registry_lock  # noqa: PLW0603 - the inherited lock object is replaced, not reused
    _registry_lock = threading.Lock()
    for group, _ in _held:
        group._after_fork_in_child()
    _held.clear()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
