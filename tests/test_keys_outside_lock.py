"""A key's own code never runs where it could deadlock the group, and landing always delivers.

Issue items: __hash__ never runs under the group's lock (hashed once, the
map is keyed by the hash); fork() never hangs on a lock a stuck thread
holds; a leader whose key breaks, or whose wake-up is interrupted, still
delivers and leaves the map; messages that show a key are bounded, safe and
built outside the lock.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers import ExcThread, wait_until

from singleflight_sync import Group, LeaderInterrupted, ReentrantCallError, WaitCycleError, singleflight


class Lazy:
    """Like Django's SimpleLazyObject: hashing it evaluates it, through the same group."""

    def __init__(self, group: Group[Any, Any], seen: list[bool]) -> None:
        self.group = group
        self.seen = seen

    def __hash__(self) -> int:
        self.seen.append(self.group._lock.locked())
        return hash(self.group.do(("evaluate", id(self)), lambda: "user:42"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lazy) and other is self


def test_a_key_whose_hash_calls_the_same_group_runs_every_entry_point() -> None:
    group: Group[Any, Any] = Group()
    seen: list[bool] = []
    key = Lazy(group, seen)
    assert group.do(key, lambda: 1) == 1
    assert group.call(key, lambda: 2).value == 2
    with ThreadPoolExecutor(1) as pool:
        assert group.submit(pool, key, lambda: 3).result(10) == 3
    assert asyncio.run(group.do_async(key, lambda: 4)) == 4
    assert group.forget(key) is False
    assert group.forget_unshared(key) is False
    assert group.in_flight(key) is False

    @singleflight(group=group)
    def load(obj: Any) -> int:
        return 5

    assert load(key) == 5
    assert load.forget(key) is False
    assert seen, "the key was hashed"
    assert not any(seen), "a key's __hash__ ran under the group's lock"
    assert len(group) == 0


class Collides:
    """Keys with one hash and an __eq__ that can be held inside the dict lookup."""

    def __init__(self, name: str, gate: threading.Event | None = None, inside: threading.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.inside = inside

    def __hash__(self) -> int:
        return 1234

    def __eq__(self, other: object) -> bool:
        if self.gate is not None and self.inside is not None:
            self.inside.set()
            self.gate.wait(30)
        return isinstance(other, Collides) and other.name == self.name


def test_colliding_keys_get_separate_flights_and_all_land() -> None:
    group: Group[Any, Any] = Group()
    release = threading.Event()
    a, b, c = Collides("a"), Collides("b"), Collides("c")
    leaders = [ExcThread(group.do, k, lambda k=k: release.wait(10) and k.name) for k in (a, b, c)]
    for t in leaders:
        t.start()
    wait_until(lambda: len(group) == 3)
    assert sorted(k.name for k in group.keys()) == ["a", "b", "c"]
    follower = ExcThread(group.do, Collides("b"), lambda: "not me")
    follower.start()
    wait_until(lambda: group.stats().calls == 4)
    assert group.forget(Collides("a"))
    release.set()
    for t in [*leaders, follower]:
        t.join(10)
    assert [t.result for t in leaders] == ["a", "b", "c"]
    assert follower.result == "b"
    assert len(group) == 0
    assert group._flights == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_does_not_hang_on_a_thread_stuck_in_a_keys_eq() -> None:
    group: Group[Any, Any] = Group()
    release, gate, inside = threading.Event(), threading.Event(), threading.Event()
    leader = ExcThread(group.do, Collides("a", gate, inside), lambda: release.wait(30) and 1)
    leader.start()
    wait_until(lambda: len(group) == 1)
    # This thread's lookup compares with the leader's key, whose __eq__ blocks
    # while holding the group's lock.
    stuck = ExcThread(group.do, Collides("b"), lambda: 2)
    stuck.start()
    assert inside.wait(10)
    assert group._lock.locked()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            ok = group.do("fresh", lambda: 7) == 7 and len(group) == 0
            os.write(write, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    gate.set()
    release.set()
    leader.join(10)
    stuck.join(10)
    assert answer == b"ok"
    assert stuck.result == 2
    assert len(group) == 0


class Breaks:
    """Hashes fine when the flight starts, raises once its state changed (a broken proxy)."""

    def __init__(self) -> None:
        self.broken = False

    def __hash__(self) -> int:
        if self.broken:
            raise RuntimeError("the proxy's target is gone")
        return hash("breaks")

    def __eq__(self, other: object) -> bool:
        return other == "breaks" or other is self


def test_a_leader_whose_key_breaks_while_it_runs_still_delivers() -> None:
    group: Group[Any, Any] = Group()
    release = threading.Event()
    key = Breaks()
    leader = ExcThread(group.do, key, lambda: release.wait(10) and "value")
    leader.start()
    wait_until(lambda: group.in_flight("breaks"))
    follower = ExcThread(group.do, "breaks", lambda: "not me")
    follower.start()
    wait_until(lambda: group.stats().calls == 2)
    key.broken = True
    release.set()
    leader.join(10)
    follower.join(10)
    assert leader.result == follower.result == "value"
    assert len(group) == 0


def test_an_interrupt_while_waking_followers_still_completes_them() -> None:
    group: Group[Any, Any] = Group()
    release = threading.Event()

    def work() -> str:
        release.wait(10)

        # An asynchronous KeyboardInterrupt arriving inside Future.set_result,
        # as a signal handler's could: raised by a trace function in this thread.
        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if event == "call" and frame.f_code.co_name == "set_result":
                sys.settrace(None)
                raise KeyboardInterrupt
            return None

        sys.settrace(tracer)
        return "value"

    def lead() -> None:
        try:
            group.do("k", work)
        finally:
            sys.settrace(None)

    leader = ExcThread(lead)
    leader.start()
    wait_until(lambda: group.in_flight("k"))
    follower = ExcThread(group.do, "k", lambda: "not me")
    follower.start()
    with ThreadPoolExecutor(1) as pool:
        handle = group.submit(pool, "k", lambda: "not me")
        wait_until(lambda: group.stats().calls == 3)
        release.set()
        with pytest.raises(KeyboardInterrupt):
            leader.join(10)
        with pytest.raises(LeaderInterrupted):
            follower.join(10)
        assert isinstance(handle.exception(10), LeaderInterrupted)
    assert len(group) == 0


class HugeRepr:
    def __repr__(self) -> str:
        return "x" * 100_000


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("key", [HugeRepr(), BadRepr()], ids=["huge", "raising"])
def test_messages_show_a_bounded_safe_repr_of_the_key(key: Any) -> None:
    group: Group[Any, Any] = Group()

    def again() -> None:
        group.do(key, int)

    with pytest.raises(ReentrantCallError) as info:
        group.do(key, again)
    text = str(info.value)
    assert len(text) < 400
    if isinstance(key, BadRepr):
        assert "BadRepr object; its __repr__ raised" in text


def test_refusal_messages_run_the_keys_repr_outside_the_lock() -> None:
    group: Group[Any, Any] = Group()
    under_lock: list[bool] = []

    class Watched:
        def __repr__(self) -> str:
            under_lock.append(group._lock.locked())
            return "Watched()"

    key = Watched()
    with pytest.raises(ReentrantCallError):
        group.do(key, lambda: group.do(key, int))
    assert under_lock == [False]
    assert issubclass(WaitCycleError, RuntimeError)
