"""RedisGroup: one execution per key across processes, coordinated on Redis.

Two layers. Inside a process the inherited :class:`Group` machinery runs:
the first caller of a key leads a local flight and every other caller in the
process joins it without touching Redis. Only that local leader talks to
Redis, where it either

* takes the lease ``<ns>:v1:{<tag>}:lock`` for a new flight, numbered by the
  key's fencing counter, runs the function, and (only while the lease is
  still its own) stores the outcome under that flight's number and publishes
  a wake-up on the key's channel ``<ns>:v1:{<tag>}:done``, carrying the
  outcome when it is small; or
* finds the lease held by another process and waits for *that* flight's
  outcome: woken by the publish, or after a bounded re-check, because
  pub/sub is fire-and-forget. An outcome of any other flight is never read.

A landed flight's outcome is found by no new caller (this is not a cache),
unless ``linger=`` asks for it.

This module imports redis-py; ``import singleflight_sync`` never does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from redis.exceptions import TimeoutError as RedisTimeoutError

from singleflight_sync._errors import FlightTimeoutError
from singleflight_sync._group import DEFAULT, CallInfo, FlightStats, Group, K, V, _check_timeout, _require_callable

from ._codec import JsonSerializer, Serializer, _describe
from ._commands import COMMAND_TIMEOUT, FINISH_WAIT, bounded
from ._deploy import REDIS_ERRORS, _client_from, deployment_for, is_configuration_error
from ._errors import (
    RedisConfigurationError,
    RedisUnavailableError,
    RemoteFlightError,
    ResultSerializationError,
    WireFormatError,
    _error_record,
    _RemoteTraceback,
)
from ._keys import _Names, key_name
from ._lease import _FENCE, FENCE_TTL_MS, _Renewer, scripts
from ._wakeups import INLINE_MAX, _Listener, _Waiter

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from concurrent.futures import Future

    import redis
    import redis.cluster
    from typing_extensions import Self  # typing.Self is 3.11+; only the checker reads this

    from singleflight_sync._group import FlightRecord, _Flight

_log = logging.getLogger("singleflight_sync")

# Environment switch read by a RedisGroup when it is created: its leaders
# store results but drop the wake-up publish. Tests use it to check that
# followers still finish when a publish is lost.
DROP_PUBLISH_ENV = "SINGLEFLIGHT_REDIS_DROP_PUBLISH"


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
    abandoned: int = 0


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


# The timeout of the call being coordinated, when the caller gave its own
# (call(timeout=...), @singleflight(timeout=...)); read by _coordinate, which
# runs in the same thread as the call.
_UNSET: Any = object()
_CALL_TIMEOUT: ContextVar[Any] = ContextVar("singleflight_call_timeout", default=_UNSET)


def _check_linger(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"linger must be a number of seconds (0 turns it off), got {type(value).__name__} {value!r}"
        raise TypeError(msg)
    if value == 0:
        return 0.0
    return _check_seconds(value, "linger")


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
        client_or_url: a ``redis.Redis`` client (also one from
            ``Sentinel.master_for()``), a ``redis.cluster.RedisCluster``, or a
            URL: ``"redis://localhost:6379/0"``, ``"rediss://..."``,
            ``"redis+sentinel://host:26379,host2:26379/mymaster/0"`` or
            ``"redis+cluster://host:7000,host2:7001"``. From a URL the group
            owns the client it creates, with short socket timeouts, and closes
            it in :meth:`close`.
        namespace: prefix of every Redis key and channel. Processes
            share flights only within one namespace and must use the same
            options in it.
        lease: seconds the lease on a key lasts. It is renewed every
            ``lease / 3`` while the work runs, so it bounds only how long a
            dead leader (killed, frozen, cut off) blocks the others.
        result_ttl: seconds a finished flight's outcome stays readable for
            that flight's own waiters (one whose wake-up was lost reads it
            on its next re-check); at least ``recheck``. No new caller can
            find it.
        linger: seconds a landed value is shared with callers that arrive
            after the flight landed: a short cache, off (``0``) by default,
            as in :class:`Group`.
        linger_errors: with ``linger``, share a landed error too (default
            False: an error is never served to later callers).
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

    _shares_across_processes = True

    def __init__(  # noqa: PLR0913 - keyword-only options, as Group's
        self,
        client_or_url: redis.Redis | redis.cluster.RedisCluster | str,
        *,
        namespace: str = "singleflight",
        lease: float = 30.0,
        result_ttl: float = 5.0,
        linger: float = 0,
        linger_errors: bool = False,
        recheck: float = 1.0,
        serializer: Serializer | None = None,
        on_error: str = "raise_remote",
        on_unavailable: str = "local",
        timeout: float | None = None,
        on_flight_end: Callable[[FlightRecord], object] | None = None,
    ) -> None:
        ns = cast("object", namespace)  # checked as the untyped value a caller may pass
        if not isinstance(ns, str) or not ns:
            msg = f"namespace must be a non-empty str, got {ns!r}"
            raise TypeError(msg) if not isinstance(ns, str) else ValueError(msg)
        lease = _check_seconds(lease, "lease")
        result_ttl = _check_seconds(result_ttl, "result_ttl")
        recheck = _check_seconds(recheck, "recheck")
        linger = _check_linger(linger)
        flag = cast("object", linger_errors)
        if not isinstance(flag, bool):
            msg = f"linger_errors must be True or False, got {flag!r}"
            raise TypeError(msg)
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
        self._deploy = deployment_for(client)
        self._ns = namespace
        self._lease_ms = round(lease * 1000)
        linger_ms = round(linger * 1000)
        self._recheck = recheck
        self._serializer = serializer
        self._rerun = on_error == "rerun"
        self._raise_unavailable = on_unavailable == "raise"
        self._drop_publishes = os.environ.get(DROP_PUBLISH_ENV, "") not in ("", "0")
        # 0.1.0 could not run on a cluster (its scripts crossed slots), and its
        # key names would cross slots here too: they are checked elsewhere only.
        self._legacy = not self._deploy.sharded
        acquire, extend, finish = scripts(
            lease_ms=self._lease_ms,
            linger=1 if linger_ms else 0,
            fence_ttl_ms=FENCE_TTL_MS,
            result_ms=round(result_ttl * 1000),
            linger_ms=linger_ms,
            linger_errors=1 if linger_errors else 0,
            publish=0 if self._drop_publishes else 1,
            inline_max=INLINE_MAX,
            publish_command=self._deploy.publish,
            legacy=1 if self._legacy else 0,
        )
        self._acquire = client.register_script(acquire)
        self._finish = client.register_script(finish)
        self._renewer = _Renewer(client.register_script(extend), self._lease_ms)
        self._listener = _Listener(self._deploy)
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
    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        """The redis-py client the group coordinates on (a ``RedisCluster`` in a cluster)."""
        client: redis.Redis | redis.cluster.RedisCluster = self._client
        return client

    @property
    def namespace(self) -> str:
        return self._ns

    def redis_key(self, key: Any, kind: str = "lock", *, fence: int | None = None) -> str:
        """The Redis key of ``key``'s ``"lock"``, ``"fence"``, ``"linger"`` or ``"result"`` (of flight ``fence``).

        ``"done"`` names the key's wake-up channel (for ``PUBSUB NUMSUB``).

        Raises:
            UnstableKeyError: ``key`` has no name that is the same in every process.
            ValueError: an unknown ``kind``, or ``"result"`` without ``fence``.
        """
        names = _Names(self._ns, key_name(key))
        if kind == "result":
            if fence is None:
                msg = "kind='result' needs fence=, the number of the flight whose outcome it is"
                raise ValueError(msg)
            return names.result(fence)
        if kind not in ("lock", "fence", "linger", "done"):
            msg = f"kind must be 'lock', 'fence', 'linger', 'result' or 'done', got {kind!r}"
            raise ValueError(msg)
        return str(getattr(names, kind))

    def stats(self) -> FlightStats:
        """The :class:`FlightStats`; ``executions`` counts runs in this process."""
        s = self.redis_stats()
        return FlightStats(s.calls, s.executions, s.local_shares, s.errors, s.timeouts, s.in_flight, s.abandoned)

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
                len(self._flights) + self._chained,
                self._abandoned,
            )

    def reset_stats(self) -> None:
        with self._lock:
            self._runs = self._remote_shares = self._takeovers = self._fallbacks = self._lost_leases = 0
        super().reset_stats()

    def forget(self, key: Any) -> bool:
        """Drop ``key`` here and its lingering outcome in Redis, so the next call runs anew.

        A flight running in another process goes on. Returns whether a local
        flight was dropped.
        """
        names = _Names(self._ns, key_name(key))
        dropped = super().forget(key)
        try:
            self._client.delete(names.linger)
        except REDIS_ERRORS as exc:
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
            self._deploy.close()

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
        """As :meth:`Group.call`; ``timeout`` bounds the wait for a remote flight too."""
        wait = self._timeout if timeout is DEFAULT else _check_timeout(timeout)
        token = _CALL_TIMEOUT.set(wait)
        try:
            return super().call(key, fn, args, kwargs, timeout=timeout)
        finally:
            _CALL_TIMEOUT.reset(token)

    def _call(
        self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        token = _CALL_TIMEOUT.set(timeout)  # a decorator's own timeout= bounds the remote wait too
        try:
            return super()._call(key, fn, args, kwargs, timeout)
        finally:
            _CALL_TIMEOUT.reset(token)

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
        self._listener.abandon()
        self._listener = _Listener(self._deploy)
        self._renewer = _Renewer(self._renewer._extend, self._lease_ms)

    # -- coordination -------------------------------------------------------------------

    def _coordinate(self, key: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run in the local leader's thread: get the outcome from Redis or produce it."""
        if self._closed:
            # Without the renewer a long run could lose its lease and run twice.
            msg = f"this RedisGroup (namespace {self._ns!r}) was closed; create a new one to coordinate flights"
            raise RuntimeError(msg)
        names = _Names(self._ns, key_name(key))
        # The caller's own timeout (call(timeout=...), a decorator's) when it
        # gave one, else the group's; it bounds every wait below, each Redis
        # command included.
        timeout = _CALL_TIMEOUT.get()
        if timeout is _UNSET:
            timeout = self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        token = secrets.token_hex(16)
        channel = names.done.encode()
        listener = self._listener
        waiter: _Waiter | None = None  # collects the key's wake-ups once this caller may wait
        awaited = ""  # the fencing number of the remote flight this caller waits on
        saw_held = False
        try:
            while True:
                # Sampled before the read: a publish after the read reaches us
                # only if we were subscribed before it. While subscribed, the
                # waiter is registered before the read, so that a publish
                # between the read and the wait is kept, not missed. (An
                # uncontended leader, on a key nobody here waits on, needs
                # neither.)
                live = listener.live(channel)
                if live and waiter is None:
                    waiter = listener.register(channel)
                if waiter is not None:
                    listener.clear(waiter)
                keys = [names.lock, names.fence, names.linger, names.result(awaited) if awaited else names.lock]
                if self._legacy:
                    keys += names.legacy()
                argv = [token, awaited]
                try:
                    reply = bounded(
                        self._deploy, self._acquire, keys, argv, deadline=deadline, reply_wait=COMMAND_TIMEOUT
                    )
                except RedisTimeoutError as exc:
                    if deadline is not None and time.monotonic() >= deadline - 0.001:
                        # The server did not answer within this caller's time.
                        with self._lock:
                            self._timeouts += 1
                        raise FlightTimeoutError(key, timeout or 0.0) from None
                    return self._unavailable(key, exc, fn, args, kwargs)
                except REDIS_ERRORS as exc:
                    return self._unavailable(key, exc, fn, args, kwargs)
                status = int(reply[0])
                if status == 3:
                    raise WireFormatError(key, self._ns)
                if status == 1:
                    # The outcome of the very flight we waited on (or, with
                    # linger=, a landed one): never another flight's.
                    return self._shared_outcome(key, reply[1], fn, args, kwargs)
                if status == 0:
                    if saw_held:
                        with self._lock:
                            self._takeovers += 1
                    fence = int(reply[1])
                    break
                # Held by another process: wait for that flight's outcome.
                saw_held = True
                holder = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
                awaited = holder.rpartition(":")[2]
                left = math.inf if deadline is None else deadline - time.monotonic()
                # Not yet subscribed to the key's channel: subscribe (one round
                # trip on the listener's connection), then read again, since
                # from then on the flight's publish reaches us. If the
                # listener cannot subscribe now, the bounded re-check holds.
                if waiter is None:
                    waiter = listener.register(channel)
                if not live and listener.subscribe(channel, min(left, self._recheck, 0.5)):
                    continue
                pttl = int(reply[1])
                pause = self._recheck if pttl < 0 else min(self._recheck, pttl / 1000 + 0.02)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        with self._lock:
                            self._timeouts += 1
                        raise FlightTimeoutError(key, timeout or 0.0)
                    pause = min(pause, left)
                with self._lock:
                    self._remote_waits += 1
                try:
                    waiter.event.wait(pause)
                finally:
                    with self._lock:
                        self._remote_waits -= 1
                payload = listener.outcome_for(waiter, awaited)
                if payload is not None:
                    # The awaited flight's outcome came with its wake-up.
                    return self._shared_outcome(key, payload, fn, args, kwargs)
        finally:
            if waiter is not None:
                listener.unregister(channel, waiter)
        return self._run_leased(key, names, f"{token}:{fence}", fence, (fn, args, kwargs))

    def _run_leased(
        self,
        key: Any,
        names: _Names,
        lease_id: str,
        fence: int,
        call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]],
    ) -> Any:
        fn, args, kwargs = call
        lease = self._renewer.add(names.lock, lease_id)
        with self._lock:
            self._runs += 1
        payload = b""
        fenced = _FENCE.set(fence)
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
            _FENCE.reset(fenced)
            lost = self._renewer.remove(lease)
            if payload and Group._trace_hooks is not None:
                # The leader's span context travels with the outcome, so that
                # followers in other processes can link to it.
                traceparent = Group._trace_hooks[0]()
                if traceparent:
                    payload = b"t" + traceparent.encode("ascii") + b"\n" + payload
            self._finish_flight(key, names, lease_id, fence, payload, lost=lost)

    def _finish_flight(  # noqa: PLR0913 - the flight's identity and its outcome
        self, key: Any, names: _Names, lease_id: str, fence: int, payload: bytes, *, lost: bool
    ) -> None:
        # The outcome's kind follows the traceparent header, when there is one.
        kind = payload.partition(b"\n")[2][:1] if payload[:1] == b"t" else payload[:1]
        is_error = "1" if kind == b"e" else "0"
        try:
            keys = [names.lock, names.result(fence), names.linger]
            argv: list[str | int | bytes] = [lease_id, payload, fence, is_error]
            held = bounded(self._deploy, self._finish, keys, argv, deadline=None, reply_wait=FINISH_WAIT)
        except RedisTimeoutError:
            # A stalled server: this leader's callers get their outcome now.
            # The script runs when the server resumes, if this lease is still
            # its own then; if not, another process has taken over.
            _log.warning(
                "Redis did not answer within %gs while storing the outcome of the flight for key %r; "
                "returned it to this process's callers, and the server stores it when it resumes",
                FINISH_WAIT,
                key,
            )
            return
        except REDIS_ERRORS as exc:
            # The work is done and this process has its outcome; the others
            # take over when the lease, no longer renewed, expires.
            _log.warning("could not store the outcome of the flight for key %r in Redis: %r", key, exc)
            return
        if not held or lost:
            # Only the current lease holder stores and publishes: this
            # outcome goes to this process's own callers and nowhere else.
            with self._lock:
                self._lost_leases += 1
            _log.warning(
                "the lease on key %r (flight %d) expired before its work finished; another process may have run "
                "it too; its outcome went to this process's callers only (raise lease= above the work's longest "
                "run plus pauses)",
                key,
                fence,
            )

    def _shared_outcome(
        self, key: Any, payload: bytes, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if payload[:1] == b"t":
            # A traceparent header, written when the leader was traced.
            header, _, payload = payload.partition(b"\n")
            if Group._trace_hooks is not None:
                Group._trace_hooks[1](header[1:].decode("ascii", "replace"))
        kind, body = payload[:1], payload[1:]
        if kind == b"e":
            record = json.loads(body)
            if "serialization" in record:
                # The leader's value could not be sent exactly: every caller
                # in every process gets the same ResultSerializationError.
                with self._lock:
                    self._remote_shares += 1
                raise ResultSerializationError(key, record["serialization"]) from _RemoteTraceback(record["traceback"])
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
        self, key: Any, exc: Exception, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if is_configuration_error(exc):
            raise RedisConfigurationError(key, f"{type(exc).__name__}: {exc}") from exc
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
