"""Leases: the Lua scripts that take, extend and release a key's lease, and the renewer.

Each script runs atomically on the server. One renewer thread per group
extends every lease the group holds while its work runs, so a lease bounds
only how long a dead leader blocks the others.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.commands.core import Script

_log = logging.getLogger("singleflight_sync")

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
