"""Leases: the Lua scripts that take, extend and release a key's lease, and the renewer.

Each script runs atomically on the server. One renewer thread per group
extends every lease the group holds while its work runs, so a lease bounds
only how long a dead leader blocks the others.
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.commands.core import Script

_log = logging.getLogger("singleflight_sync")

# How long a key's fencing counter outlives its last flight. Counting starts
# again at 1 after this much idle time, which is harmless: a fencing number
# only has to increase across flights that overlap or follow closely.
FENCE_TTL_MS = 30 * 24 * 3600 * 1000

# The scripts take a group's constant options as literals in their text
# (@NAME@ below, filled in by ``scripts()``), so that each call sends only
# what changes: a command's arguments cost more to send than the script's
# cached text. Every key a script touches shares one hash tag; the names it
# derives (the result of a later flight, the key's channel) are built from
# KEYS[1], ``<base>:lock``, by replacing its last word.

# KEYS: lock, fence, linger, the result of the awaited flight (the lock again
# when there is none); with @LEGACY@ (not in a cluster), the lock and result
# names of release 0.1.0 (wire format before v1). ARGV: token, the awaited
# fence ('' for none).
# {1, payload}: the awaited flight's outcome, or a lingering one.
# {0, fence}: the lease is ours, for flight number ``fence``.
# {2, pttl, "token:fence"}: another process runs flight ``fence``.
# {3}: a worker of release 0.1.0 coordinates this key: refuse, never run beside it.
_ACQUIRE = """
if @LEGACY@ == 1 and redis.call('EXISTS', KEYS[5], KEYS[6]) > 0 then return {3} end
if ARGV[2] ~= '' then
  local r = redis.call('GET', KEYS[4])
  if r then return {1, r} end
  -- The awaited flight ended without an outcome (its leader died): a later
  -- flight of the key started after this caller began waiting, so its
  -- outcome is as fresh as the awaited one would have been.
  local f = tonumber(redis.call('GET', KEYS[2]) or '0')
  if f > tonumber(ARGV[2]) then
    r = redis.call('GET', string.sub(KEYS[1], 1, -5) .. 'result:' .. f)
    if r then return {1, r} end
  end
end
if @LINGER@ == 1 then
  local r = redis.call('GET', KEYS[3])
  if r then return {1, r} end
end
local cur = redis.call('GET', KEYS[1])
if not cur then
  local f = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], @FENCE_TTL_MS@)
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. f, 'PX', @LEASE_MS@)
  return {0, f}
end
return {2, redis.call('PTTL', KEYS[1]), cur}
"""

# KEYS: lock. ARGV: lease id ("token:fence"). 1 if it was still ours and is extended.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], @LEASE_MS@) end
return 0
"""

# The payload is b"v" + the serializer's bytes, or b"e" + an error record
# (JSON), optionally preceded by b"t" + a W3C traceparent + b"\n" when the
# leader was traced (singleflight_sync.otel).
# KEYS: lock, this flight's result, linger. ARGV: lease id, payload ('' stores
# nothing), the fence, '1' if the payload is an error.
# Only the current lease holder stores and publishes: a leader whose lease
# was lost (paused past it, a takeover) changes nothing and gets 0.
# The wake-up, on the key's channel ``<base>:done``, is "<fence>:" followed
# by the payload when it is small, so that a woken follower needs no read.
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', @RESULT_MS@)
  if @LINGER_MS@ > 0 and (ARGV[4] == '0' or @LINGER_ERRORS@ == 1) then
    redis.call('SET', KEYS[3], ARGV[2], 'PX', @LINGER_MS@)
  end
end
redis.call('DEL', KEYS[1])
if @PUBLISH@ == 1 then
  local message = ARGV[3] .. ':'
  if #ARGV[2] <= @INLINE_MAX@ then message = message .. ARGV[2] end
  redis.call('@PUBLISH_COMMAND@', string.sub(KEYS[1], 1, -5) .. 'done', message)
end
return 1
"""


def scripts(**constants: int | str) -> tuple[str, str, str]:
    """The acquire, extend and finish scripts with a group's constants filled in.

    Numbers are written as integers; the one word (``publish_command``:
    ``PUBLISH``, or ``SPUBLISH`` in a cluster) must be a plain command name.
    """
    texts: list[str] = []
    for template in (_ACQUIRE, _EXTEND, _FINISH):
        text = template
        for name, value in constants.items():
            if isinstance(value, str) and not value.isalpha():
                msg = f"script constant {name} must be a command name, got {value!r}"
                raise ValueError(msg)
            text = text.replace(f"@{name.upper()}@", value if isinstance(value, str) else str(int(value)))
        if "@" in text:
            msg = f"a script constant is missing: {text[text.index('@') :][:40]!r}"
            raise ValueError(msg)
        texts.append(text)
    return texts[0], texts[1], texts[2]


# The fencing number of the flight this thread leads, for current_fence().
_FENCE: ContextVar[int | None] = ContextVar("singleflight_fence", default=None)


def current_fence() -> int:
    """The fencing number of the RedisGroup flight the calling function runs for.

    Each flight of a key gets a number one higher than the key's previous
    flight. Work that writes somewhere can make its writes conditional on it
    (store the number with the data and refuse a write with a lower one), so
    that a leader paused past its lease can never overwrite a newer flight's
    write. Across a Redis failover with asynchronous replication a number can
    repeat: fencing is best effort there.

    Raises:
        LookupError: not called from inside a function a RedisGroup runs.

    Example::

        @singleflight(group=prices)
        def refresh(symbol: str) -> float:
            price = exchange.fetch(symbol)
            db.execute("UPDATE prices SET price=%s, fence=%s WHERE symbol=%s AND fence < %s",
                       (price, current_fence(), symbol, current_fence()))
            return price
    """
    fence = _FENCE.get()
    if fence is None:
        msg = "current_fence() is called from a function a RedisGroup runs as the leader of a flight"
        raise LookupError(msg)
    return fence


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
        # _cond protects _leases, _thread, _stopping and every lease's ``lost``.
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
            # No notify: every lease is due one interval after it was added,
            # never before a lease already held, and an idle renewer looks
            # again every interval; so it wakes in time without a context
            # switch per flight.
        return lease

    def remove(self, lease: _Lease) -> bool:
        """Stop renewing ``lease``; return whether a renewal found it lost."""
        with self._cond:
            self._leases.pop(lease.token, None)
            return lease.lost

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
                    nxt = min((lease.due for lease in self._leases.values()), default=now + self._interval)
                    self._cond.wait(nxt - now)
                for lease in due:
                    lease.due = now + self._interval
            for lease in due:
                try:
                    ok = self._extend(keys=[lease.lock_key], args=[lease.token])
                except Exception as exc:  # the renewer outlives any failure (a cluster's are no RedisError)
                    # Two more tries before the lease can expire.
                    _log.warning("could not extend the lease %s: %r", lease.lock_key, exc)
                    continue
                if ok:
                    continue
                with self._cond:
                    # The flight may have finished (and deleted its lock)
                    # while this renewal was on its way: that is no loss.
                    if self._leases.get(lease.token) is not lease or lease.lost:
                        continue
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
