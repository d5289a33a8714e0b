"""Group: the in-process flight map.

A lock-guarded dict maps each key to the ``concurrent.futures.Future`` of the
flight that is running for it. The first caller for a key (the leader) runs
the function in its own thread; callers that arrive while it runs (followers)
block on that future and get the leader's result or exception. When the
flight lands its key is removed, so the next call runs again.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future, InvalidStateError
from concurrent.futures import TimeoutError as _FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar, cast

from . import _fork
from ._errors import (
    FlightTimeoutError,
    LeaderInterrupted,
    ReentrantCallError,
    SingleFlightError,
    UnhashableKeyError,
    WaitCycleError,
)
from ._exccopy import copy_exception

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["CallInfo", "FlightRecord", "FlightStats", "Group"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_log = logging.getLogger("singleflight_sync")
_get_ident = threading.get_ident
_new_flight = object.__new__


class _Default:
    """Sentinel type: "use the group's default timeout"."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


class FlightStats(NamedTuple):
    """Counters of a :class:`Group`, read in one critical section.

    ``calls`` counts every ``do``/``call``/``submit``/``do_async`` that joined
    or led a flight; ``executions`` the times the function actually ran;
    ``shared`` the callers that received another caller's execution;
    ``errors`` the executions that raised; ``timeouts`` the followers that
    stopped waiting; ``in_flight`` the keys running now; ``abandoned`` the
    followers that left otherwise (a cancelled task or handle, an interrupt).
    Once nothing is in flight,
    ``calls == executions + shared + timeouts + abandoned``.
    """

    calls: int
    executions: int
    shared: int
    errors: int
    timeouts: int
    in_flight: int
    abandoned: int = 0


@dataclass(frozen=True)
class CallInfo(Generic[V]):
    """What :meth:`Group.call` returns: the value, and how this caller got it.

    ``leader`` is true for the caller that ran the function. ``shared`` is
    true when the value went to more than one caller (always true for a
    follower; true for the leader when at least one follower joined).
    """

    value: V
    leader: bool
    shared: bool


@dataclass(frozen=True)
class FlightRecord:
    """What the ``on_flight_end`` hook receives when a flight lands.

    ``outcome`` is ``"ok"``, ``"error"`` (the function raised an
    ``Exception``) or ``"interrupted"`` (a ``BaseException`` such as
    ``KeyboardInterrupt``). ``followers`` counts the callers that joined.
    """

    key: Any
    duration: float
    followers: int
    outcome: str
    error: BaseException | None


class _Flight(Future[Any]):
    """The future of one flight, cheap to create when nobody joins.

    ``Future.__init__`` builds a ``Condition`` (and its ``RLock``), which costs
    more than the whole uncontended call. A flight skips it and runs it only
    when a follower joins (``_arm``); a flight nobody joined is never
    completed, because nobody waits on it. Every field below, and the moment
    of arming, is guarded by the owning group's lock.
    """

    # Class-level defaults: an instance only gets its own attribute when one
    # of these changes, which keeps creation to two stores.
    followers = 0
    armed = False
    landed = False
    orphaned = False
    handles: list[Future[Any]] | None = None
    hash = 0  # hash(key); stored by the structured paths (do() keeps it in a local)
    handle_followers = 0  # the followers among ``followers`` that joined as handles
    starter: Future[Any] | None = None  # the handle whose submit() started the flight
    blocked: list[int] | None = None  # idents of the followers blocked on it, for _waiting
    value: Any = None  # the result, for followers; written before set_result()
    started = 0.0

    def __init__(self, key: Any, owner: int | None, hashed: int) -> None:
        # Group.do skips this call and makes the two stores key and owner itself.
        self.key = key
        self.hash = hashed  # hash(key), computed once, outside the group's lock
        # Ident of the thread running the function; None until an executor
        # thread picks up a submitted flight.
        self.owner = owner

    def _arm(self) -> None:
        Future.__init__(self)  # pyright: ignore[reportUnknownMemberType] - typeshed leaves it unannotated
        self.armed = True

    def __repr__(self) -> str:
        return f"<flight key={self.key!r} followers={self.followers} landed={self.landed}>"


class _Bucket(list):  # type: ignore[type-arg]
    """The flights of unequal keys whose hashes are the same, in one map slot (rare)."""

    __slots__ = ()


class _Handle(Future[Any]):
    """One ``submit()``/``do_async()`` caller's future, knowing its flight.

    ``flight`` lets a caller that gives up withdraw from its own flight even
    after ``forget()`` took the key; ``gave_up`` says why it did, for stats.
    Both are guarded by the owning group's lock.
    """

    flight: _Flight | None  # None once the flight landed: no cycle through flight.handles
    leads = False  # this handle's submit() started the flight
    joined = False  # counted in flight.followers / handle_followers
    gave_up = ""  # "timeout" or "cancel", set before the caller cancels


def _interrupted(key: Any, exc: BaseException) -> LeaderInterrupted:
    err = LeaderInterrupted(key, f"was interrupted by {type(exc).__name__}")
    err.__cause__ = exc
    return err


def _caller_copy(exc: BaseException) -> BaseException:
    """Return a per-caller copy of a flight's exception, chained to it.

    Raising one shared instance from many threads makes each ``raise`` append
    that thread's frames to the same ``__traceback__`` (cpython#101267), so
    every follower raises its own copy, whose ``__cause__`` is the original
    with the leader's traceback. The copy is made without running
    ``__init__`` (see ``_exccopy``). An exception that cannot be copied to its
    own type is raised as the shared instance.
    """
    if isinstance(exc, LeaderInterrupted):
        fresh = LeaderInterrupted(exc.key, exc.reason)
        fresh.__cause__ = exc.__cause__
        return fresh
    dup = copy_exception(exc)
    if dup is None:  # an exception class that cannot be rebuilt
        return exc
    dup.__traceback__ = None
    dup.__cause__ = exc
    return dup


def _check_timeout(timeout: Any, name: str = "timeout") -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        msg = f"{name} must be a number of seconds or None, got {type(timeout).__name__} {timeout!r}"
        raise TypeError(msg)
    if not timeout > 0:  # also rejects NaN
        msg = f"{name} must be > 0 seconds (or None to wait as long as the leader runs), got {timeout!r}"
        raise ValueError(msg)
    if timeout > threading.TIMEOUT_MAX:
        # Longer than a lock can wait (math.inf included): Condition.wait
        # would raise OverflowError in the follower, so wait for ever instead.
        return None
    return float(timeout)


def _require_callable(value: object, name: str, what: str) -> None:
    if value is not None and not callable(value):
        msg = f"{name} must be {what} (or None), got {type(value).__name__} {value!r}"
        raise TypeError(msg)


class Group(Generic[K, V]):
    """Run one execution per key at a time and share its outcome.

    Args:
        timeout: default seconds a *follower* waits before it gives up with
            :class:`FlightTimeoutError`. ``None`` (the default) waits as long
            as the leader runs. A leader is never timed out: a thread cannot
            be killed.
        on_flight_end: called with a :class:`FlightRecord` in the leader's
            thread after every flight has landed and its waiters were woken.
            An exception it raises is logged and never reaches a caller.

    Example::

        group: Group[str, float] = Group()
        price = group.do("BTCUSDT", fetch_price, "BTCUSDT")
    """

    def __init__(
        self,
        *,
        timeout: float | None = None,
        on_flight_end: Callable[[FlightRecord], object] | None = None,
    ) -> None:
        self._timeout = _check_timeout(timeout)
        _require_callable(on_flight_end, "on_flight_end", "a callable taking a FlightRecord")
        self._on_end = on_flight_end
        # _lock protects _flights, _waiting and _detached, every field of
        # every _Flight in them (followers, armed, landed, handles, owner)
        # and the counters. It is held for dict and counter updates
        # only. A key's __hash__ never runs under it: each key is hashed once,
        # before the lock is taken, and the map is keyed by that hash. A key's
        # __eq__ does run under it, when two keys have the same hash (equal
        # keys, or a collision), so a key's __eq__ must not take a lock whose
        # holder might call into this group (len(group), a do()): that one
        # case can deadlock. Error messages that show a key are built after
        # the lock is released.
        self._lock = threading.Lock()
        # hash(key) -> the flight for key; flights of unequal keys with one
        # hash share a slot as a _Bucket. _chained counts the flights in
        # buckets beyond one per slot, so that len() stays exact.
        self._flights: dict[int, Any] = {}
        self._chained = 0
        # thread ident -> the flight that thread is blocked on; lets _join see
        # a cycle of threads waiting on each other's flights.
        self._waiting: dict[int, _Flight] = {}
        # calls == executions + joins: the leader's path counts one, not two.
        self._joins: int = 0
        self._executions: int = 0
        self._shared: int = 0
        self._errors: int = 0
        self._timeouts: int = 0
        self._abandoned: int = 0
        # id -> flight, for flights that forget() took out of the map while
        # they run: a forked child must still complete their handles.
        self._detached: dict[int, _Flight] = {}
        _fork.register(self)

    # True for a group whose flights span processes (RedisGroup): its keys
    # must be plain data named the same way in every process.
    _shares_across_processes: ClassVar[bool] = False

    # Called (outside the lock) when a submit() or do_async() caller joins a
    # running flight; None unless singleflight_sync.otel is instrumenting.
    _join_hook: ClassVar[Callable[[Group[Any, Any], _Flight, Future[Any]], None] | None] = None
    # (out, in) for RedisGroup's payloads when singleflight_sync.otel is
    # instrumenting: ``out()`` gives the current span's traceparent (or None)
    # to send with a flight's outcome, ``in(traceparent)`` links the current
    # span to the leader's in another process. None costs nothing.
    _trace_hooks: ClassVar[tuple[Callable[[], str | None], Callable[[str], None]] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The inlined fast path in do() skips _enter and _lead; a subclass
        # that customises either must go through them.
        custom = cls._enter is not Group._enter or cls._lead is not Group._lead  # pyright: ignore[reportUnknownMemberType]
        if custom and "do" not in cls.__dict__:
            cls.do = Group._do_generic  # type: ignore[method-assign]

    # -- the blocking forms ------------------------------------------------

    def do(self, key: K, fn: Callable[..., V], /, *args: Any, **kwargs: Any) -> V:
        """Return ``fn(*args, **kwargs)``, run once for all concurrent callers of ``key``.

        The first caller runs ``fn``; callers that arrive while it runs wait
        and get the same object, or raise a copy of the same exception.

        Raises:
            FlightTimeoutError: a follower waited longer than the group's timeout.
            LeaderInterrupted: the leader was stopped by a ``BaseException``.
            ReentrantCallError: this thread is running the flight for ``key``.
            WaitCycleError: waiting would close a cycle of waiting flights.
            UnhashableKeyError: ``key`` is unhashable (also a ``TypeError``).

        Example::

            >>> Group().do("answer", int, "42")
            42
        """
        # The hot path: _enter + _lead + _land inlined, because most calls are
        # uncontended and each Python call costs about as much as a lock round
        # trip. _call is the same logic through the overridable pieces;
        # subclasses that override them get it (see __init_subclass__).
        me = _get_ident()
        # Both stay the same objects for the group's lifetime, even across
        # fork (see _after_fork_in_child), so locals are safe and cheaper.
        lock = self._lock
        flights = self._flights
        on_end = self._on_end
        # Built before taking the lock, to keep the critical section to one
        # dict operation and a counter (wasted, cheaply, when a flight runs).
        # object.__new__ and two stores cost half of calling _Flight(key, me).
        try:
            h = hash(key)  # user code (a key's __hash__): never under the lock
        except TypeError:
            raise UnhashableKeyError(key) from None
        new = _new_flight(_Flight)
        new.key = key
        new.owner = me
        refusal: tuple[Any, ...] | None = None
        with lock:
            flight = flights.setdefault(h, new)
            if flight is not new and (type(flight) is not _Flight or not (flight.key is key or flight.key == key)):
                flight = self._collide(h, flight, new)  # unequal keys, one hash: rare
            leader = flight is new
            if leader:
                self._executions += 1
            else:
                refusal = self._join(flight, me)
        if not leader:
            new = None  # type: ignore[assignment]
            if refusal is not None:
                raise self._refusal(refusal)
            try:
                return self._follow(flight, me, self._timeout)  # type: ignore[no-any-return]
            finally:
                # The follower's raised copy holds this frame; the flight holds the original.
                flight = None
        value: Any = None
        error: BaseException | None = None
        try:
            if on_end is not None:
                flight.started = time.perf_counter()
            value = fn(*args, **kwargs)
            return value  # type: ignore[no-any-return]  # noqa: TRY300 - the finally below must see the value
        except Exception as exc:
            error = exc
            raise
        except BaseException as exc:
            error = _interrupted(key, exc)
            raise
        finally:
            with lock:
                # The default is for a key that forget() dropped: nothing to restore.
                current = flights.pop(h, flight)
                if current is not flight:
                    self._unpop(h, current, flight)  # forget() + a new flight, or a bucket
                if error is not None:
                    self._errors += 1
                # armed <=> somebody joined (a follower or a handle); only
                # then is there anything to publish, in _publish below.
                armed = flight.armed
                if armed:
                    self._landed(flight)
            if armed or on_end is not None:
                self._publish(flight, value, error)
            if error is not None:
                # The traceback of ``error`` holds this frame: drop the locals
                # that would keep the flight and its outcome alive in a cycle.
                flight = new = current = error = None  # type: ignore[assignment]

    def call(
        self,
        key: K,
        fn: Callable[..., V],
        /,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT,
    ) -> CallInfo[V]:
        """Like :meth:`do`, but return a :class:`CallInfo` and take a per-call timeout.

        ``args`` and ``kwargs`` are passed to ``fn`` explicitly, so that
        ``timeout`` (seconds this caller waits as a follower; ``None`` waits
        for ever; by default the group's) cannot clash with ``fn``'s own
        arguments.

        Example::

            >>> info = Group().call("k", sum, ([1, 2],))
            >>> info.value, info.leader, info.shared
            (3, True, False)
        """
        wait = self._timeout if timeout is DEFAULT else _check_timeout(timeout)
        me = _get_ident()
        flight, leader = self._enter(key, me)
        try:
            if leader:
                value = self._lead(flight, fn, args, kwargs or {})
                # Final: followers only change while the flight is in the map.
                return CallInfo(value, True, flight.followers > 0)
            return CallInfo(self._follow(flight, me, wait), False, True)
        finally:
            # A raised exception's traceback holds this frame, and an armed
            # flight holds that exception: drop the flight to break the cycle.
            flight = None  # type: ignore[assignment]

    # -- the handle forms --------------------------------------------------

    def submit(self, executor: Executor, key: K, fn: Callable[..., V], /, *args: Any, **kwargs: Any) -> Future[V]:
        """Join the flight for ``key``, or start it on ``executor``; never block.

        Returns a new ``concurrent.futures.Future`` for this caller alone:
        cancelling it, or waiting on it with a timeout, affects no other
        caller and does not stop the flight. It gets the flight's result, or
        its own copy of the flight's exception.

        Raises:
            RuntimeError: the executor refused the work (for example it was
                shut down); callers that already joined get the same error.

        Example::

            >>> from concurrent.futures import ThreadPoolExecutor
            >>> with ThreadPoolExecutor() as pool:
            ...     Group().submit(pool, "k", pow, 2, 10).result()
            1024
        """
        pools = sys.modules.get("concurrent.futures.process")  # never imported here just to check
        if pools is not None and isinstance(executor, pools.ProcessPoolExecutor):
            msg = (
                "submit() cannot run a flight on a ProcessPoolExecutor: the flight belongs to this process's "
                "group and its result must land here; pass a ThreadPoolExecutor (for CPU-bound work, "
                "call the process pool from the function the flight runs)"
            )
            raise TypeError(msg)
        return self._handle(key, fn, args, kwargs, executor.submit)

    async def do_async(self, key: K, fn: Callable[..., V], /, *args: Any, **kwargs: Any) -> V:
        """Await the flight for ``key`` from asyncio, sharing it with threads.

        A flight already led by a thread (or another task) is joined; else
        ``fn`` runs in the event loop's default executor. Cancelling the
        awaiting task cancels only this caller's wait, never the flight. The
        group's ``timeout`` bounds the wait (:class:`FlightTimeoutError`).

        Example::

            >>> import asyncio
            >>> asyncio.run(Group().do_async("k", max, 1, 2))
            2
        """
        import asyncio  # noqa: PLC0415 - keep asyncio off the import path of sync users

        loop = asyncio.get_running_loop()

        def start(run: Callable[..., object], *a: Any) -> Awaitable[object]:
            return loop.run_in_executor(None, run, *a)

        handle: _Handle = self._handle(key, fn, args, kwargs, start)  # type: ignore[assignment]
        waiter: asyncio.Future[V] | None = None
        try:
            waiter = asyncio.wrap_future(handle)
            # The coroutine that started the flight leads it: like do()'s
            # leader it is never timed out (timeouts apply to followers).
            if self._timeout is None or handle.leads:
                return await waiter
            try:
                # shield: a timeout must not cancel the handle before we know
                # whether its result is already being delivered.
                return await asyncio.wait_for(asyncio.shield(waiter), self._timeout)
            except (asyncio.TimeoutError, TimeoutError):
                if not self._withdraw(handle, timed_out=True):
                    return await waiter  # delivery began as we gave up: take it
                raise FlightTimeoutError(key, self._timeout) from None
        except asyncio.CancelledError:
            # This caller's task was cancelled (asyncio.wait_for, a timeout
            # scope): leave the flight, which goes on for the others.
            self._withdraw(handle, timed_out=False)
            raise
        finally:
            # A raised copy's traceback holds this frame, and the handle holds
            # that copy: drop the handle to break the cycle.
            handle = waiter = None  # type: ignore[assignment]

    # -- forgetting and introspection ------------------------------------------

    def forget(self, key: K) -> bool:
        """Drop ``key`` so that the next call starts a new flight.

        The running flight goes on, its callers still get its outcome, and
        when it lands it does not remove the new flight. Returns whether a
        flight was dropped.
        """
        h = _hash_of(key)
        with self._lock:
            flight = self._flight_of(h, key)
            if flight is None:
                return False
            self._remove(h, flight)
            self._detach(flight)
            return True

    def forget_unshared(self, key: K) -> bool:
        """Forget ``key`` only if nobody has joined its flight; return whether it did."""
        h = _hash_of(key)
        with self._lock:
            flight = self._flight_of(h, key)
            if flight is None or flight.followers:
                return False
            self._remove(h, flight)
            self._detach(flight)
            return True

    def in_flight(self, key: K) -> bool:
        """Whether a flight for ``key`` is running now."""
        h = _hash_of(key)
        with self._lock:
            return self._flight_of(h, key) is not None

    def __contains__(self, key: object) -> bool:
        return self.in_flight(key)  # type: ignore[arg-type]

    def __len__(self) -> int:
        """The number of keys in flight now."""
        with self._lock:
            return len(self._flights) + self._chained

    def keys(self) -> list[K]:
        """A snapshot of the keys in flight now."""
        with self._lock:
            return [f.key for slot in self._flights.values() for f in _slot_flights(slot)]

    def stats(self) -> FlightStats:
        """Return the counters as a :class:`FlightStats`, read atomically."""
        with self._lock:
            return FlightStats(
                self._executions + self._joins,
                self._executions,
                self._shared,
                self._errors,
                self._timeouts,
                len(self._flights) + self._chained,
                self._abandoned,
            )

    def reset_stats(self) -> None:
        """Zero the counters (``in_flight`` always reflects the map)."""
        with self._lock:
            self._joins = self._executions = self._shared = self._errors = self._timeouts = self._abandoned = 0

    def __repr__(self) -> str:
        s = self.stats()
        return f"<{type(self).__name__} in_flight={s.in_flight} calls={s.calls} executions={s.executions}>"

    # -- internals ---------------------------------------------------------------

    def _scope_for(self, fn: Callable[..., Any]) -> Hashable:
        """The prefix that keeps a decorated function's keys apart in a shared group.

        In one process the function object itself is exact. A group shared
        across processes overrides this with a stable text name.
        """
        return fn

    def _flight_of(self, h: int, key: Any) -> _Flight | None:
        """The flight running for ``key`` (whose hash is ``h``), or None. Caller holds ``_lock``."""
        slot = self._flights.get(h)
        if slot is None:
            return None
        if type(slot) is _Flight:  # the usual slot: one flight, no list to make
            return slot if slot.key is key or slot.key == key else None
        flight: _Flight
        for flight in slot:
            if flight.key is key or flight.key == key:
                return flight
        return None

    def _add(self, flight: _Flight) -> _Flight:
        """Put a new flight in the map, or return the running one of an equal key. Caller holds ``_lock``."""
        slot: object = self._flights.setdefault(flight.hash, flight)
        if slot is flight:
            return flight
        return self._collide(flight.hash, slot, flight)  # an equal key's flight, or a collision

    def _collide(self, h: int, slot: Any, new: _Flight) -> _Flight:
        """``h``'s slot is taken: the flight of a key equal to ``new``'s, or ``new`` added. Caller holds ``_lock``."""
        if type(slot) is _Flight:
            flights: list[_Flight] = [slot]
        else:
            flights = slot
        for flight in flights:
            if flight.key is new.key or flight.key == new.key:
                return flight
        if type(slot) is _Flight:
            self._flights[h] = _Bucket((slot, new))
        else:
            flights.append(new)
        self._chained += 1
        return new

    def _remove(self, h: int, flight: _Flight) -> None:
        """Take ``flight`` out of the map if it is there. Caller holds ``_lock``."""
        slot = self._flights.get(h)
        if slot is flight:
            del self._flights[h]
        elif type(slot) is _Bucket and any(f is flight for f in cast("list[_Flight]", slot)):
            slot[:] = [f for f in cast("list[_Flight]", slot) if f is not flight]
            self._chained -= 1
            if len(slot) == 1:
                self._flights[h] = slot[0]

    def _unpop(self, h: int, current: Any, flight: _Flight) -> None:
        """Undo a landing's pop of ``h`` that did not take ``flight`` itself. Caller holds ``_lock``."""
        # forget() dropped our flight and the slot now holds another flight
        # (a new one for the key, or another key's), or the slot is a bucket.
        self._flights[h] = current
        if type(current) is _Bucket:
            self._remove(h, flight)

    def _enter(self, key: Any, me: int) -> tuple[_Flight, bool]:
        """Lead a new flight for ``key`` or join the running one."""
        h = _hash_of(key)
        with self._lock:
            new = _Flight(key, me, h)
            flight = self._add(new)
            if flight is new:
                self._executions += 1
                return flight, True
            refusal = self._join(flight, me)
        if refusal is not None:
            raise self._refusal(refusal)
        return flight, False

    def _call(
        self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        # The structured path (_enter, _lead, _follow), for call(), decorators
        # with their own timeout, and subclasses that override _enter or _lead.
        me = _get_ident()
        flight, leader = self._enter(key, me)
        try:
            if leader:
                return self._lead(flight, fn, args, kwargs)
            return self._follow(flight, me, timeout)
        finally:
            # A raised exception's traceback holds this frame, and an armed
            # flight holds that exception: drop the flight to break the cycle.
            flight = None  # type: ignore[assignment]

    def _do_generic(self, key: K, fn: Callable[..., V], /, *args: Any, **kwargs: Any) -> V:
        return self._call(key, fn, args, kwargs, self._timeout)  # type: ignore[no-any-return]

    def _join(self, flight: _Flight, me: int) -> tuple[Any, ...] | None:
        """Register ``me`` as a follower of ``flight``, or return why not. Caller holds ``_lock``.

        A refusal comes back as data, and the caller raises it (:meth:`_refusal`)
        after releasing the lock: the error's message shows keys, and a key's
        ``__repr__`` is user code.
        """
        owner = flight.owner
        if owner == me:
            return (flight.key,)
        if self._waiting and owner is not None:
            # Walk owner -> the flight it waits on -> that flight's owner ...
            # Reaching ``me`` means every thread on the path would wait for
            # ever. The walk is bounded because no cycle is ever admitted.
            # A landed flight ends the walk (_landed removes its followers'
            # entries in the same critical section, so this is a safeguard):
            # its former owner, maybe ``me`` calling again, is waited on by nobody.
            path = [flight.key]
            nxt = self._waiting.get(owner)
            while nxt is not None and not nxt.landed:
                path.append(nxt.key)
                if nxt.owner == me:
                    return (flight.key, tuple(path))
                if nxt.owner is None:
                    break
                nxt = self._waiting.get(nxt.owner)
        if not flight.armed:
            flight._arm()
        flight.followers += 1
        self._joins += 1
        self._waiting[me] = flight
        if flight.blocked is None:
            flight.blocked = [me]
        else:
            flight.blocked.append(me)
        return None

    @staticmethod
    def _refusal(refusal: tuple[Any, ...]) -> SingleFlightError:
        """The error for a join that :meth:`_join` refused; built outside the lock."""
        if len(refusal) == 1:
            return ReentrantCallError(refusal[0])
        return WaitCycleError(refusal[0], refusal[1])

    def _lead(self, flight: _Flight, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        value: Any = None
        error: BaseException | None = None
        try:
            if self._on_end is not None:
                flight.started = time.perf_counter()
            value = fn(*args, **kwargs)
            return value  # noqa: TRY300 - the finally below must see the value
        except Exception as exc:
            error = exc
            raise
        except BaseException as exc:
            # The leader re-raises the original; followers get a library
            # error caused by it, never a KeyboardInterrupt in their thread.
            error = _interrupted(flight.key, exc)
            raise
        finally:
            self._land(flight, value, error)
            # The traceback of ``error`` holds this frame: drop the locals
            # that would keep the flight and its outcome alive in a cycle.
            flight = value = error = None  # type: ignore[assignment]

    def _land(self, flight: _Flight, value: Any, error: BaseException | None) -> None:
        # Publishing the outcome and removing the key are one critical section:
        # once ``landed`` is set nobody can join, and every caller that joined
        # before is in ``followers``/``handles`` and will be woken below.
        with self._lock:
            # The default is for a key that forget() dropped: nothing to restore.
            current = self._flights.pop(flight.hash, flight)
            if current is not flight:
                self._unpop(flight.hash, current, flight)
            if error is not None:
                self._errors += 1
            self._landed(flight)
        self._publish(flight, value, error)

    def _detach(self, flight: _Flight) -> None:
        """Remember a running flight forget() took out of the map. Caller holds ``_lock``."""
        if flight.handles:
            # Only handles outlive a fork (a child has none of the parent's
            # threads); they must be completed there, so keep the flight.
            self._detached[id(flight)] = flight

    def _landed(self, flight: _Flight) -> None:
        """Mark ``flight`` landed and settle its followers' books. Caller holds ``_lock``."""
        flight.landed = True
        # Handles are counted when they are delivered (_publish): a handle
        # whose caller gave up meanwhile gets nothing and is not "shared".
        self._shared += flight.followers - flight.handle_followers
        if self._detached:
            self._detached.pop(id(flight), None)
        if flight.handles:
            for handle in flight.handles:
                # The handle goes to its caller, the flight holds the outcome
                # and the handles: cut the handle's way back to the flight.
                handle.flight = None  # type: ignore[attr-defined]
        # The followers' _waiting entries go here, in the leader's critical
        # section, so that woken followers return without taking the lock.
        if flight.blocked:
            waiting = self._waiting
            for ident in flight.blocked:
                if waiting.get(ident) is flight:
                    del waiting[ident]
            flight.blocked = None

    def _publish(self, flight: _Flight, value: Any, error: BaseException | None) -> None:
        """Wake the callers of a landed flight and report it; outside the lock."""
        # armed, handles and orphaned no longer change once the flight has
        # landed (it left the map under the lock), so they can be read here.
        if flight.orphaned:
            # Inherited across fork(): its waiters were completed in the child
            # at fork time and this leader's own thread has its answer.
            return
        try:
            self._wake(flight, value, error)
        except BaseException as exc:
            # Interrupted while waking them (an asynchronous KeyboardInterrupt
            # inside set_result): nobody may be left waiting on this flight.
            self._rescue(flight, exc)
            raise
        if error is not None and _log.isEnabledFor(logging.DEBUG):
            _log.debug("flight for key %r failed with %r (%d followers)", flight.key, error, flight.followers)
        if self._on_end is not None:
            self._report(flight, error)

    def _wake(self, flight: _Flight, value: Any, error: BaseException | None) -> None:
        if flight.armed:
            if error is None:
                # Followers read ``value`` once exception() has returned None
                # (set_result's lock orders the two): one pass through the
                # future's Condition per follower instead of two.
                flight.value = value
                flight.set_result(value)
            else:
                flight.set_exception(error)
        if flight.handles is not None:
            starter = flight.starter
            timeouts = abandoned = 0
            for handle in flight.handles:
                # _deliver() in two steps, so that the share is counted between them.
                if handle.set_running_or_notify_cancel():
                    if handle is not starter:
                        # Counted before its caller can see the outcome, so
                        # that a stats() it reads then includes its own share.
                        with self._lock:
                            self._shared += 1
                    _complete(handle, value, error)
                elif handle is not starter:
                    if handle.gave_up == "timeout":  # type: ignore[attr-defined]
                        timeouts += 1
                    else:
                        abandoned += 1
            if timeouts or abandoned:
                with self._lock:
                    self._timeouts += timeouts
                    self._abandoned += abandoned

    @staticmethod
    def _rescue(flight: _Flight, exc: BaseException) -> None:
        """Complete whatever a failed wake-up left pending, with LeaderInterrupted."""
        error = _interrupted(flight.key, exc)
        waiters: list[Future[Any]] = [flight] if flight.armed else []
        waiters += flight.handles or ()
        for waiter in waiters:
            with contextlib.suppress(InvalidStateError, RuntimeError):
                if waiter is flight:
                    if not waiter.done():
                        waiter.set_exception(error)
                elif waiter.running():
                    _complete(waiter, None, error)  # claimed by _wake, interrupted before completing it
                elif not waiter.done():
                    _deliver(waiter, None, error)

    def _report(self, flight: _Flight, error: BaseException | None) -> None:
        outcome = _outcome_of(error)
        # started stays 0.0 when the function never ran (the executor refused it).
        duration = time.perf_counter() - flight.started if flight.started else 0.0
        record = FlightRecord(flight.key, duration, flight.followers, outcome, error)
        try:
            self._on_end(record)  # type: ignore[misc]
        except Exception:
            _log.exception("on_flight_end hook raised for key %r; the flight itself is unaffected", flight.key)

    def _follow(self, flight: _Flight, me: int, timeout: float | None) -> Any:
        if _log.isEnabledFor(logging.DEBUG):  # outside the lock: a handler may call back into this group
            _log.debug("joined the flight for key %r", flight.key)
        try:
            error = flight.exception(timeout)
        except _FutureTimeout:
            if self._abandon(flight, me, timed_out=True):
                raise FlightTimeoutError(flight.key, timeout or 0.0) from None
            # The flight landed while we gave up: its outcome is being
            # published right now, so take it instead of reporting a timeout.
            error = flight.exception()
        except BaseException:
            # Interrupted while waiting (KeyboardInterrupt in the main thread):
            # leave quietly, the flight goes on for the others.
            self._abandon(flight, me, timed_out=False)
            raise
        # On success the leader already removed our _waiting entry (_landed).
        if error is None:
            return flight.value
        try:
            raise _caller_copy(error)
        finally:
            # When the copy falls back to the shared instance, its traceback
            # holds this frame: drop our references to it and to the flight.
            flight = error = None  # type: ignore[assignment]

    def _abandon(self, flight: _Flight, me: int, *, timed_out: bool) -> bool:
        """Withdraw a follower that stops waiting; False if the flight already landed."""
        with self._lock:
            if self._waiting.get(me) is flight:
                del self._waiting[me]
            if flight.landed:
                return False
            flight.followers -= 1
            if flight.blocked and me in flight.blocked:
                # A flight that runs for minutes while callers retry must not
                # grow with every caller that gave up on it.
                flight.blocked.remove(me)
            if timed_out:
                self._timeouts += 1
            else:
                self._abandoned += 1
        if timed_out and _log.isEnabledFor(logging.DEBUG):
            _log.debug("a follower of key %r timed out", flight.key)
        return True

    def _handle(
        self,
        key: Any,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        start: Callable[..., object],
    ) -> Future[Any]:
        handle = _Handle()
        h = _hash_of(key)
        with self._lock:
            new = _Flight(key, None, h)
            flight = self._add(new)
            if flight is new:
                flight.starter = handle
                handle.leads = True
                self._executions += 1
                leader = True
            else:
                # A handle never blocks here, so it cannot close a wait cycle.
                if not flight.armed:
                    flight._arm()
                flight.followers += 1
                flight.handle_followers += 1
                handle.joined = True
                self._joins += 1
                leader = False
            handle.flight = flight
            if flight.handles is None:
                flight.handles = [handle]
            else:
                flight.handles.append(handle)
        if leader:
            # The work goes to the executor in a list that _run empties: the
            # executor's work item outlives the run whenever a traceback holds
            # the frames that ran it (frame.f_back reaches the work item), and
            # through the flight it would hold every handle and the outcome.
            job: list[Any] = [flight, fn, args, kwargs]
            try:
                task = start(self._run, job)
            except BaseException as exc:
                # The executor refused the work: land the flight so nobody who
                # joined meanwhile waits for a run that will never happen. An
                # inline executor may have run (and landed) it already, and
                # raise what the work raised: then there is nothing to land.
                if self._claim(job) is not None:
                    self._land(flight, None, exc if isinstance(exc, Exception) else _interrupted(key, exc))
                # exc's traceback holds this frame and the executor's frames
                # that got the job; the handles hold copies chained to exc.
                flight = new = handle = job = None  # type: ignore[assignment]
                raise
            add_done_callback = getattr(task, "add_done_callback", None)
            if add_done_callback is not None:
                # An executor may end the job without running it: drop it
                # (shutdown(cancel_futures=True), a cancel() of its future), or
                # fail its future (a process pool that cannot pickle it, a full
                # queue). Land the flight then, or its key would stay in flight
                # for ever. concurrent and asyncio futures both get here (the
                # loop's run_in_executor). The callback holds the job, not the
                # flight: _run empties it.
                add_done_callback(lambda task: self._dropped(job, task))  # pyright: ignore[reportUnknownLambdaType] - concurrent or asyncio
        elif Group._join_hook is not None:
            Group._join_hook(self, flight, handle)
        return handle

    def _withdraw(self, handle: _Handle, *, timed_out: bool) -> bool:
        """Cancel the handle of a caller that gives up; False when its delivery already began."""
        # The handle knows its flight, so this works after forget() too.
        handle.gave_up = "timeout" if timed_out else "cancel"
        # cancel() is the arbiter: delivery moves the handle to RUNNING
        # first, after which cancel() fails and the outcome is on its way.
        # (A handle its caller cancelled already stays cancelled: True.)
        if not handle.cancel():
            return False
        with self._lock:
            flight = handle.flight
            if flight is not None and handle.joined and not flight.landed:
                # Not landed: the handle is still in the list, and leaving it
                # there would grow a long flight with every caller that gave up.
                handle.joined = False
                flight.handles.remove(handle)  # type: ignore[union-attr]
                flight.followers -= 1
                flight.handle_followers -= 1
                if timed_out:
                    self._timeouts += 1
                else:
                    self._abandoned += 1
            # Landed: _publish finds it cancelled and counts it by gave_up.
        return True

    def _claim(self, job: list[Any], owner: int | None = None) -> list[Any] | None:
        """Take a submitted job's contents once: to run it (as ``owner``), or to land it unrun."""
        with self._lock:
            if not job:
                return None
            taken = job[:]
            job.clear()
            if owner is not None:
                taken[0].owner = owner
            return taken

    def _dropped(self, job: list[Any], task: Any) -> None:
        # Called when the executor's future is done. If _run never claimed
        # the job, the executor ended it without running it.
        taken = self._claim(job)
        if taken is None:
            return
        flight = taken[0]
        if task.cancelled():
            error = LeaderInterrupted(flight.key, "was cancelled by its executor before it ran")
        else:
            cause = task.exception()
            what = "failed" if cause is not None else "completed"
            error = LeaderInterrupted(flight.key, f"was {what} by its executor without running")
            error.__cause__ = cause
        taken.clear()
        self._land(flight, None, error)

    def _run(self, job: list[Any]) -> None:
        taken = self._claim(job, _get_ident())
        if taken is None:
            return  # landed already: its executor reported it dropped or failed
        flight, fn, args, kwargs = taken
        taken.clear()
        # An Exception was delivered to every handle by _land; the
        # executor's own future for this task is never read.
        try:
            with contextlib.suppress(Exception):
                self._lead(flight, fn, args, kwargs)
        finally:
            # The suppressed exception's traceback holds this frame, and the
            # flight's handles hold copies chained to it: break that cycle.
            flight = None

    def _after_fork_in_child(self) -> None:
        """Reset the map in a forked child; its flights belong to parent threads.

        The lock and the dicts are reset in place, not replaced: a leader that
        forked inside its function holds them in locals and lands afterwards.
        """
        # _fork._before_fork took the lock in the forking thread, so nobody
        # was inside a critical section: reinitialise it, unlocked.
        _reinit_lock(self._lock)
        old = [f for slot in self._flights.values() for f in _slot_flights(slot)]
        old += self._detached.values()
        self._flights.clear()
        self._chained = 0
        self._detached.clear()
        self._waiting.clear()
        for flight in old:
            flight.orphaned = True
            if flight.handles:
                err = LeaderInterrupted(flight.key, "runs in the parent process; this process was forked from it")
                for handle in flight.handles:
                    # A parent thread may have held this handle's lock at fork time.
                    handle._condition = threading.Condition()
                    _deliver(handle, None, err)


def _outcome_of(error: BaseException | None) -> str:
    """A landed flight's outcome as FlightRecord and the OpenTelemetry spans name it."""
    if error is None:
        return "ok"
    return "interrupted" if isinstance(error, LeaderInterrupted) else "error"


def _hash_of(key: Any) -> int:
    """``hash(key)``, run outside any lock of ours; an unhashable key is an UnhashableKeyError."""
    try:
        return hash(key)
    except TypeError:
        raise UnhashableKeyError(key) from None


def _slot_flights(slot: Any) -> list[_Flight]:
    return [slot] if type(slot) is _Flight else list(slot)


def _reinit_lock(lock: threading.Lock) -> None:
    reinit = getattr(lock, "_at_fork_reinit", None)  # what the stdlib's own at-fork hooks use
    if reinit is not None:
        reinit()
    else:  # pragma: no cover - every CPython from 3.9 has it
        lock.release()


def _deliver(handle: Future[Any], value: Any, error: BaseException | None) -> bool:
    """Complete one caller's handle; False when its caller had cancelled it."""
    # set_running_or_notify_cancel() is False when this caller cancelled its
    # handle; after it returns True a cancel() can no longer race the result.
    if not handle.set_running_or_notify_cancel():
        return False
    _complete(handle, value, error)
    return True


def _complete(handle: Future[Any], value: Any, error: BaseException | None) -> None:
    """Set the outcome of a handle already moved to RUNNING (each caller raises its own copy)."""
    if error is None:
        handle.set_result(value)
    else:
        handle.set_exception(_caller_copy(error))
