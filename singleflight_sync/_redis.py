"""RedisGroup: one execution per key across processes, coordinated on Redis.

Two layers. Inside a process the inherited :class:`Group` machinery runs:
the first caller of a key leads a local flight and every other caller in the
process joins it without touching Redis. Only that local leader talks to
Redis, where it either

* finds the outcome of a flight that just finished (``<ns>:result:<key>``,
  kept for ``result_ttl``) and shares it;
* takes the lease ``<ns>:lock:<key>`` (``SET NX PX`` with a random token),
  runs the function, stores the outcome and publishes a wake-up on
  ``<ns>:done``; or
* finds the lease held by another process and waits: woken by the publish,
  or after a bounded re-check of the result and of the lease's remaining
  time, because pub/sub is fire-and-forget.

This module imports redis-py; ``import singleflight_sync`` never does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import pickle
import secrets
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "singleflight_sync.redis needs redis-py: pip install 'singleflight-sync[redis]'"
    raise ImportError(msg) from exc

from ._errors import FlightTimeoutError, SingleFlightError
from ._group import FlightStats, Group, K, V, _check_timeout, _require_callable
from ._keys import _KWMARK

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from concurrent.futures import Future

    from redis.commands.core import Script
    from typing_extensions import Self  # typing.Self is 3.11+; only the checker reads this

    from ._group import FlightRecord, _Flight

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "RedisGroup",
    "RedisStats",
    "RedisUnavailableError",
    "RemoteFlightError",
    "ResultSerializationError",
    "Serializer",
    "UnstableKeyError",
]

_log = logging.getLogger("singleflight_sync")

# Environment switch read by a RedisGroup when it is created: its leaders
# store results but drop the wake-up publish. Tests use it to check that
# followers still finish when a publish is lost.
DROP_PUBLISH_ENV = "SINGLEFLIGHT_REDIS_DROP_PUBLISH"

_MAX_KEY_CHARS = 200
_STOP_PREFIX = "\x00stop "

# -- errors -----------------------------------------------------------------------


class RemoteFlightError(SingleFlightError):
    """The leader of a flight raised, in another process.

    ``remote_type`` is the qualified name of the leader's exception class,
    ``remote_message`` its ``str()`` and ``remote_traceback`` its formatted
    traceback, as text (exceptions do not cross processes as objects). The
    ``__cause__`` prints that traceback, so a logged error shows both sides.
    """

    def __init__(self, key: Any, remote_type: str, remote_message: str, remote_traceback: str) -> None:
        self.key = key
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        msg = f"the flight for key {key!r} failed in another process: {remote_type}: {remote_message}"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.remote_type, self.remote_message, self.remote_traceback))


class _RemoteTraceback(Exception):
    """The ``__cause__`` of a :class:`RemoteFlightError`: prints the leader's traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text.rstrip("\n")


class RedisUnavailableError(SingleFlightError):
    """Redis could not be reached and the group's ``on_unavailable`` is ``"raise"``.

    ``__cause__`` is the redis-py error.
    """

    def __init__(self, key: Any, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"cannot coordinate the flight for key {key!r} on Redis: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.reason))


class ResultSerializationError(SingleFlightError):
    """A flight's result could not be serialized (or a stored one deserialized).

    Every local caller of the flight gets this error; other processes get a
    :class:`RemoteFlightError` naming it, so nobody waits for a result that
    was never stored.
    """

    def __init__(self, key: Any, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"the result of the flight for key {key!r} {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.reason))


class UnstableKeyError(SingleFlightError, TypeError):
    """A key is not the same in every process, so it cannot name a flight in Redis.

    Only ``str``, ``int``, ``float``, ``bool``, ``None`` and tuples of them
    are accepted. It is also a builtin :class:`TypeError`.
    """

    def __init__(self, key: Any, message: str) -> None:
        self.key = key
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, str(self)))


# -- serializers -------------------------------------------------------------------


class Serializer(Protocol):
    """What ``serializer=`` takes: ``dumps(value) -> bytes | str`` and ``loads(bytes) -> value``.

    The modules ``json`` and ``pickle`` fit as they are.
    """

    def dumps(self, value: Any, /) -> bytes | str: ...  # pragma: no cover - protocol

    def loads(self, data: bytes, /) -> Any: ...  # pragma: no cover - protocol


class JsonSerializer:
    """The default serializer: JSON, so only data (no code) comes back from Redis.

    Tuples come back as lists, as JSON has no tuple.
    """

    def dumps(self, value: Any, /) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode()

    def loads(self, data: bytes, /) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"


class PickleSerializer:
    """Pickle any picklable value. UNSAFE when others can write to the Redis server.

    Unpickling runs code chosen by whoever wrote the bytes: use it only when
    every client of that Redis server is trusted.
    """

    def dumps(self, value: Any, /) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes, /) -> Any:
        return pickle.loads(data)  # noqa: S301 - an explicit, documented opt-in

    def __repr__(self) -> str:
        return "PickleSerializer()"


# -- keys --------------------------------------------------------------------------


def _plain(value: Any, root: Any) -> Any:
    """Map a key to JSON-ready data, rejecting what differs between processes."""
    cls = type(value)
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float:
        return value
    if cls is tuple:
        return [_plain(item, root) for item in value]
    if value is _KWMARK:
        return {"kw": 1}  # hashkey()'s marker; a dict never comes from anything else
    what = f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__
    msg = (
        f"key {root!r:.80} contains a value of type {what} ({value!r:.60}), which is not the same in every process; "
        "a RedisGroup key must be built from str, int, float, bool, None and tuples of them; "
        "with @singleflight pass key= (for example key=lambda obj, x: f'{obj.id}:{x}')"
    )
    raise UnstableKeyError(root, msg)


def key_name(key: Any) -> str:
    """The text that names ``key`` in Redis, the same in every process.

    JSON of the key (tuples as arrays); longer than 200 characters, its
    SHA-256 instead.
    """
    text = json.dumps(_plain(key, key), separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    if len(text) > _MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


# -- Lua: each script is atomic on the server ------------------------------------------

# KEYS: lock, result. ARGV: token, lease ms.
# {1, payload}: a result is stored. {0}: the lease is ours. {2, pttl}: held by another.
_ACQUIRE = """
local r = redis.call('GET', KEYS[2])
if r then return {1, r} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
return {2, redis.call('PTTL', KEYS[1])}
"""

# KEYS: lock. ARGV: token, lease ms. 1 if the lease was still ours and is extended.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lock, result. ARGV: token, payload ('' stores nothing), ttl ms, channel,
# name, publish ('1'/'0'). The result is stored even when the lease was lost
# (it is a fresh outcome); the lock is deleted only if it is still ours.
_FINISH = """
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
local held = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  held = 1
end
if ARGV[6] == '1' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return held
"""

# -- stats --------------------------------------------------------------------------


class RedisStats(NamedTuple):
    """Counters of a :class:`RedisGroup`, read in one critical section.

    ``calls``, ``errors``, ``timeouts`` and ``in_flight`` mean what they mean
    in :class:`FlightStats`. ``executions`` counts the times the function ran
    in this process. ``local_shares`` counts callers that joined a flight of
    this process; ``remote_shares`` the local flights whose outcome came
    from another process through Redis; ``takeovers`` the leases taken after
    another process's lease ended without a result; ``fallbacks`` the
    flights run without coordination because Redis was unavailable;
    ``lost_leases`` the executions that finished after their lease had
    expired (another process may have run the same work).
    """

    calls: int
    executions: int
    local_shares: int
    remote_shares: int
    takeovers: int
    fallbacks: int
    lost_leases: int
    errors: int
    timeouts: int
    in_flight: int


# -- the listener: one pub/sub connection and thread per group ---------------------------


class _Listener:
    """Wakes the waiters of a key when its leader publishes, in any process.

    One connection subscribed to one channel; the key name is the payload.
    Started by the first wait; a forked child starts its own. After every
    (re)subscription all waiters are woken to re-check, because messages
    sent while the connection was down are lost.
    """

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._ident = secrets.token_hex(8)
        # _lock protects _waiters and _thread.
        self._lock = threading.Lock()
        self._waiters: dict[bytes, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()

    def register(self, name: bytes) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(name, set()).add(event)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="singleflight-redis-listener", daemon=True)
                self._thread.start()
        return event

    def unregister(self, name: bytes, event: threading.Event) -> None:
        with self._lock:
            events = self._waiters.get(name)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[name]

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def _wake(self, name: bytes | None) -> None:
        with self._lock:
            if name is None:
                events = [e for group in self._waiters.values() for e in group]
            else:
                events = list(self._waiters.get(name, ()))
        for event in events:
            event.set()

    def _run(self) -> None:
        stop = (_STOP_PREFIX + self._ident).encode()
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                while True:
                    message: Any = pubsub.get_message(timeout=1.0)
                    if message is None:
                        if self._stop.is_set():
                            return
                        continue
                    kind = message["type"]
                    if kind in {"subscribe", b"subscribe"}:
                        backoff = 0.05
                        self._subscribed.set()
                        self._wake(None)  # re-check: publishes may have been lost meanwhile
                    elif kind in {"message", b"message"}:
                        data = message["data"]
                        if isinstance(data, str):
                            data = data.encode()
                        if data == stop:
                            return
                        self._wake(data)
            except Exception as exc:
                # Whatever happened, keep listening: the waiters re-check on
                # their own meanwhile, and are woken now to do so at once.
                self._subscribed.clear()
                level = logging.DEBUG if isinstance(exc, (RedisError, OSError)) else logging.WARNING
                _log.log(level, "singleflight listener on %s failed; reconnecting: %r", self._channel, exc)
                self._wake(None)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    _log.debug("closing the listener's pub/sub connection failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        # The thread blocks on its socket; a message to itself ends it now.
        with contextlib.suppress(RedisError):
            self._client.publish(self._channel, _STOP_PREFIX + self._ident)
        thread.join(3.0)


class _Names:
    """The Redis names of one key: lock, result, and the payload of its wake-up."""

    __slots__ = ("lock", "name", "result")

    def __init__(self, ns: str, name: str) -> None:
        self.name = name
        self.lock = f"{ns}:lock:{name}"
        self.result = f"{ns}:result:{name}"


# -- the renewer: one thread extends every lease this group holds ------------------------


class _Lease:
    __slots__ = ("due", "lock_key", "lost", "token")

    def __init__(self, lock_key: str, token: str, due: float) -> None:
        self.lock_key = lock_key
        self.token = token
        self.due = due
        self.lost = False


class _Renewer:
    """Extends held leases every ``lease / 3`` while their work runs."""

    def __init__(self, extend: Script, lease_ms: int) -> None:
        self._extend = extend
        self._lease_ms = lease_ms
        self._interval = lease_ms / 3000.0
        # _cond protects _leases, _thread and _stopping.
        self._cond = threading.Condition(threading.Lock())
        self._leases: dict[str, _Lease] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    def add(self, lock_key: str, token: str) -> _Lease:
        lease = _Lease(lock_key, token, time.monotonic() + self._interval)
        with self._cond:
            self._leases[token] = lease
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="singleflight-redis-renewer", daemon=True)
                self._thread.start()
            self._cond.notify()
        return lease

    def remove(self, lease: _Lease) -> None:
        with self._cond:
            self._leases.pop(lease.token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    due = [lease for lease in self._leases.values() if lease.due <= now]
                    if due:
                        break
                    nxt = min((lease.due for lease in self._leases.values()), default=None)
                    self._cond.wait(None if nxt is None else nxt - now)
                for lease in due:
                    lease.due = now + self._interval
            for lease in due:
                try:
                    ok = self._extend(keys=[lease.lock_key], args=[lease.token, self._lease_ms])
                except RedisError as exc:
                    # Two more tries before the lease can expire.
                    _log.warning("could not extend the lease %s: %r", lease.lock_key, exc)
                    continue
                if not ok and not lease.lost:
                    lease.lost = True
                    _log.warning(
                        "the lease %s expired while its work was running; another process may run it too",
                        lease.lock_key,
                    )

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(3.0)


# -- the group ---------------------------------------------------------------------------

_ON_ERROR = ("raise_remote", "rerun")
_ON_UNAVAILABLE = ("local", "raise")


def _check_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a number of seconds, got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if not (value > 0 and math.isfinite(value)):
        msg = f"{name} must be a finite number of seconds > 0, got {value!r}"
        raise ValueError(msg)
    ms = round(value * 1000)
    if ms < 1:
        msg = f"{name} must be at least 0.001 seconds (Redis counts milliseconds), got {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        options = " or ".join(repr(c) for c in choices)
        msg = f"{name} must be {options}, got {value!r}"
        raise ValueError(msg)
    return str(value)


class RedisGroup(Group[K, V]):
    """A :class:`Group` whose flights are shared by every process using the same Redis.

    Callers in one process share a local flight exactly as in a
    :class:`Group`, without touching Redis. The one caller per process that
    leads the local flight coordinates on Redis, so the function runs once
    across all processes and every process gets its outcome.

    Args:
        client_or_url: a ``redis.Redis`` client, or a URL such as
            ``"redis://localhost:6379/0"`` (the group then owns the client it
            creates, with short socket timeouts, and closes it in :meth:`close`).
        namespace: prefix of every Redis key and of the channel. Processes
            share flights only within one namespace and must use the same
            options in it.
        lease: seconds the lease on a key lasts. It is renewed every
            ``lease / 3`` while the work runs, so it bounds only how long a
            dead leader (killed, frozen, cut off) blocks the others.
        result_ttl: seconds a finished flight's outcome stays readable, for
            processes that were waiting or arrive just after; at least
            ``recheck``. Within it a new call gets that outcome instead of
            running again: keep it short.
        recheck: the longest a waiting process relies on the wake-up
            publish before it re-reads the result and the lease.
        serializer: turns results into bytes and back; JSON by default
            (:class:`JsonSerializer`). :class:`PickleSerializer` (or the
            ``pickle`` module) is an explicit, unsafe opt-in.
        on_error: ``"raise_remote"`` (default) gives callers in other
            processes a :class:`RemoteFlightError` with the leader's
            exception type, message and traceback text; ``"rerun"`` lets the
            next process run the work itself instead.
        on_unavailable: ``"local"`` (default) runs the work under the local
            flight only when Redis cannot be reached, logs a warning and
            counts a fallback; ``"raise"`` raises :class:`RedisUnavailableError`.
        timeout: seconds a caller waits for a flight, local or remote,
            before :class:`FlightTimeoutError`. ``None`` waits as long as
            the leader holds its lease. (A per-call ``call(timeout=...)``
            bounds only the wait for a flight of this process.)
        on_flight_end: as for :class:`Group`.

    Raises:
        TypeError: an option has the wrong type (the message names it).
        ValueError: an option has a wrong value (the message names it).

    Example::

        group = RedisGroup("redis://localhost:6379/0", namespace="prices", lease=10)
        price = group.do("BTCUSDT", fetch_price, "BTCUSDT")  # once across all workers
    """

    def __init__(  # noqa: PLR0913 - keyword-only options, as Group's
        self,
        client_or_url: redis.Redis | str,
        *,
        namespace: str = "singleflight",
        lease: float = 30.0,
        result_ttl: float = 5.0,
        recheck: float = 1.0,
        serializer: Serializer | None = None,
        on_error: str = "raise_remote",
        on_unavailable: str = "local",
        timeout: float | None = None,
        on_flight_end: Callable[[FlightRecord], object] | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            msg = f"namespace must be a non-empty str, got {namespace!r}"
            raise TypeError(msg) if not isinstance(namespace, str) else ValueError(msg)
        lease = _check_seconds(lease, "lease")
        result_ttl = _check_seconds(result_ttl, "result_ttl")
        recheck = _check_seconds(recheck, "recheck")
        if result_ttl < recheck:
            msg = (
                f"result_ttl ({result_ttl:g}s) must be at least recheck ({recheck:g}s), or a process whose "
                "wake-up was lost could miss the result and run the work again"
            )
            raise ValueError(msg)
        if serializer is None:
            serializer = JsonSerializer()
        elif not (callable(getattr(serializer, "dumps", None)) and callable(getattr(serializer, "loads", None))):
            msg = f"serializer must have dumps(value) and loads(data) methods, got {type(serializer).__name__}"
            raise TypeError(msg)
        on_error = _check_choice(on_error, "on_error", _ON_ERROR)
        on_unavailable = _check_choice(on_unavailable, "on_unavailable", _ON_UNAVAILABLE)
        _check_timeout(timeout)
        _require_callable(on_flight_end, "on_flight_end", "a callable taking a FlightRecord")
        client, owns = _client_from(client_or_url)  # last: nothing to close if an option is wrong
        super().__init__(timeout=timeout, on_flight_end=on_flight_end)

        self._client = client
        self._owns_client = owns
        self._ns = namespace
        self._channel = f"{namespace}:done"
        self._lease_ms = round(lease * 1000)
        self._result_ms = round(result_ttl * 1000)
        self._recheck = recheck
        self._serializer = serializer
        self._rerun = on_error == "rerun"
        self._raise_unavailable = on_unavailable == "raise"
        self._drop_publishes = os.environ.get(DROP_PUBLISH_ENV, "") not in ("", "0")
        self._acquire = client.register_script(_ACQUIRE)
        self._finish = client.register_script(_FINISH)
        self._renewer = _Renewer(client.register_script(_EXTEND), self._lease_ms)
        self._listener = _Listener(client, self._channel)
        # These counters are guarded by the inherited ``_lock``.
        self._runs = 0
        self._remote_shares = 0
        self._takeovers = 0
        self._fallbacks = 0
        self._lost_leases = 0
        # Threads of this group blocked on a remote flight right now; tests
        # read it to know that a follower waits.
        self._remote_waits = 0
        self._warned_at = -math.inf
        self._closed = False

    # -- public additions ---------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """The redis-py client the group coordinates on."""
        return self._client

    @property
    def namespace(self) -> str:
        return self._ns

    def redis_key(self, key: Any, kind: str = "result") -> str:
        """The Redis key of ``key``'s ``"result"`` or ``"lock"``; raises :class:`UnstableKeyError`."""
        if kind not in ("result", "lock"):
            msg = f"kind must be 'result' or 'lock', got {kind!r}"
            raise ValueError(msg)
        return f"{self._ns}:{kind}:{key_name(key)}"

    def stats(self) -> FlightStats:
        """The :class:`FlightStats`; ``executions`` counts runs in this process."""
        s = self.redis_stats()
        return FlightStats(s.calls, s.executions, s.local_shares, s.errors, s.timeouts, s.in_flight)

    def redis_stats(self) -> RedisStats:
        """Return every counter, local and remote, as a :class:`RedisStats`."""
        with self._lock:
            return RedisStats(
                self._executions + self._joins,
                self._runs,
                self._shared,
                self._remote_shares,
                self._takeovers,
                self._fallbacks,
                self._lost_leases,
                self._errors,
                self._timeouts,
                len(self._flights),
            )

    def reset_stats(self) -> None:
        with self._lock:
            self._runs = self._remote_shares = self._takeovers = self._fallbacks = self._lost_leases = 0
        super().reset_stats()

    def forget(self, key: Any) -> bool:
        """Drop ``key`` here and its stored outcome in Redis, so the next call runs anew.

        A flight running in another process goes on. Returns whether a local
        flight was dropped.
        """
        name = key_name(key)
        dropped = super().forget(key)
        try:
            self._client.delete(f"{self._ns}:result:{name}")
        except RedisError as exc:
            if self._raise_unavailable:
                raise RedisUnavailableError(key, f"{type(exc).__name__}: {exc}") from exc
            self._warn_unavailable(exc)
        return dropped

    def close(self) -> None:
        """Stop the listener and renewer threads, and close a client built from a URL."""
        if self._closed:
            return
        self._closed = True
        self._listener.close()
        self._renewer.close()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.redis_stats()
        return (
            f"<RedisGroup namespace={self._ns!r} in_flight={s.in_flight} calls={s.calls} "
            f"executions={s.executions} remote_shares={s.remote_shares}>"
        )

    # -- hooks of Group ---------------------------------------------------------------

    def _scope_for(self, fn: Callable[..., Any]) -> Hashable:
        # The function object differs in every process; its name does not.
        return f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"

    def _enter(self, key: Any, me: int) -> tuple[_Flight, bool]:
        key_name(key)  # reject an unstable key before anyone joins its flight
        return super()._enter(key, me)

    def _handle(
        self,
        key: Any,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        start: Callable[..., object],
    ) -> Future[Any]:
        key_name(key)
        return super()._handle(key, fn, args, kwargs, start)

    def _lead(self, flight: _Flight, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return super()._lead(flight, self._coordinate, (flight.key, fn, args, kwargs), {})

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        # The parent's threads do not exist here; its pub/sub socket is shared
        # with the parent, so it is dropped, never closed, and a new listener
        # subscribes on the child's own connection (redis-py's pool resets
        # itself after fork).
        self._listener = _Listener(self._client, self._channel)
        self._renewer = _Renewer(self._renewer._extend, self._lease_ms)

    # -- coordination -------------------------------------------------------------------

    def _coordinate(self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run in the local leader's thread: get the outcome from Redis or produce it."""
        if self._closed:
            # Without the renewer a long run could lose its lease and run twice.
            msg = f"this RedisGroup (namespace {self._ns!r}) was closed; create a new one to coordinate flights"
            raise RuntimeError(msg)
        names = _Names(self._ns, key_name(key))
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        token = secrets.token_hex(16)
        bname = names.name.encode()
        # Register before the first read: a publish between the read and the
        # wait then sets the event instead of being missed.
        event = self._listener.register(bname)
        saw_held = False
        try:
            while True:
                event.clear()
                # Sampled before the read: a publish after the read reaches us
                # only if we were subscribed before it.
                subscribed = self._listener.subscribed
                try:
                    reply = self._acquire(keys=[names.lock, names.result], args=[token, self._lease_ms])
                except RedisError as exc:
                    return self._unavailable(key, exc, fn, args, kwargs)
                status = int(reply[0])
                if status == 1:
                    return self._shared_outcome(key, reply[1], fn, args, kwargs)
                if status == 0:
                    if saw_held:
                        with self._lock:
                            self._takeovers += 1
                    break
                # Held by another process: wait for its publish, a bounded time.
                saw_held = True
                if not subscribed:
                    # The listener is (re)connecting: wait for it briefly, then
                    # read again (a missed publish costs at most a recheck).
                    self._listener.wait_subscribed(min(self._recheck, 0.5))
                    if self._listener.subscribed:
                        continue
                pttl = int(reply[1])
                pause = self._recheck if pttl < 0 else min(self._recheck, pttl / 1000 + 0.02)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        with self._lock:
                            self._timeouts += 1
                        raise FlightTimeoutError(key, self._timeout or 0.0)
                    pause = min(pause, left)
                with self._lock:
                    self._remote_waits += 1
                try:
                    event.wait(pause)
                finally:
                    with self._lock:
                        self._remote_waits -= 1
        finally:
            self._listener.unregister(bname, event)
        return self._run_leased(key, names, token, (fn, args, kwargs))

    def _run_leased(
        self,
        key: Any,
        names: _Names,
        token: str,
        call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]],
    ) -> Any:
        fn, args, kwargs = call
        lease = self._renewer.add(names.lock, token)
        with self._lock:
            self._runs += 1
        payload = b""
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            if not self._rerun:
                payload = _error_record(exc)
            raise
        except BaseException:
            # Interrupted: store nothing, free the lease now so a waiting
            # process takes over at once instead of after the lease.
            raise
        else:
            try:
                data = self._serializer.dumps(value)
            except Exception as exc:
                reason = (
                    f"cannot be serialized by {_describe(self._serializer)}: "
                    f"{type(exc).__name__}: {exc} (value type {type(value).__name__})"
                )
                error = ResultSerializationError(key, reason)
                payload = _error_record(error)
                raise error from exc
            payload = b"v" + (data.encode() if isinstance(data, str) else data)
            return value
        finally:
            self._renewer.remove(lease)
            self._finish_flight(key, names, token, payload, lost=lease.lost)

    def _finish_flight(self, key: Any, names: _Names, token: str, payload: bytes, *, lost: bool) -> None:
        publish = "0" if self._drop_publishes else "1"
        try:
            held = self._finish(
                keys=[names.lock, names.result],
                args=[token, payload, self._result_ms, self._channel, names.name, publish],
            )
        except RedisError as exc:
            # The work is done and this process has its outcome; the others
            # take over when the lease, no longer renewed, expires.
            _log.warning("could not store the outcome of the flight for key %r in Redis: %r", key, exc)
            return
        if not held or lost:
            with self._lock:
                self._lost_leases += 1
            _log.warning(
                "the lease on key %r expired before its work finished; another process may have run it too "
                "(raise lease= above the work's longest run plus pauses)",
                key,
            )

    def _shared_outcome(
        self, key: Any, payload: bytes, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        kind, body = payload[:1], payload[1:]
        if kind == b"e":
            record = json.loads(body)
            if self._rerun:
                # Written by a process with on_error="raise_remote": run it here.
                return self._run_uncoordinated(fn, args, kwargs)
            with self._lock:
                self._remote_shares += 1
            error = RemoteFlightError(key, record["type"], record["message"], record["traceback"])
            # As concurrent.futures does for process pools: a printed
            # traceback shows the leader's, from the other process, as cause.
            raise error from _RemoteTraceback(record["traceback"])
        try:
            value = self._serializer.loads(body)
        except Exception as exc:
            reason = f"stored by another process cannot be read by {_describe(self._serializer)}: {exc!r}"
            raise ResultSerializationError(key, reason) from exc
        with self._lock:
            self._remote_shares += 1
        return value

    def _run_uncoordinated(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            self._runs += 1
        return fn(*args, **kwargs)

    def _unavailable(
        self, key: Any, exc: RedisError, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self._raise_unavailable:
            raise RedisUnavailableError(key, f"{type(exc).__name__}: {exc}") from exc
        self._warn_unavailable(exc)
        with self._lock:
            self._fallbacks += 1
        return self._run_uncoordinated(fn, args, kwargs)

    def _warn_unavailable(self, exc: BaseException) -> None:
        # One warning per 10 s: a Redis outage must not flood the log.
        now = time.monotonic()
        with self._lock:
            if now - self._warned_at < 10.0:
                return
            self._warned_at = now
        _log.warning(
            "Redis is unavailable (%s: %s); running flights in namespace %r per process only until it is back",
            type(exc).__name__,
            exc,
            self._ns,
        )


def _describe(serializer: object) -> str:
    # The json and pickle modules are serializers too: name them, not "module".
    return str(getattr(serializer, "__name__", None) or type(serializer).__name__)


def _client_from(value: object) -> tuple[redis.Redis, bool]:
    """The client to use, and whether the group created it (and so closes it)."""
    if isinstance(value, str):
        if not value:
            raise ValueError("client_or_url must be a redis.Redis client or a non-empty URL, got ''")
        # Short timeouts and few retries: a dead server must turn into a
        # fallback (or an error) quickly, not stall every caller.
        client = redis.Redis.from_url(
            value,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 2),
        )
        return client, True
    if isinstance(value, redis.Redis):
        if value.get_connection_kwargs().get("decode_responses"):
            msg = "client_or_url must be a client with decode_responses=False: results are stored as bytes"
            raise ValueError(msg)
        return value, False
    msg = f"client_or_url must be a redis.Redis client or a URL string, got {type(value).__name__}"
    raise TypeError(msg)


def _error_record(exc: BaseException) -> bytes:
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    record = {"type": name, "message": str(exc), "traceback": text}
    return b"e" + json.dumps(record, ensure_ascii=False).encode()
