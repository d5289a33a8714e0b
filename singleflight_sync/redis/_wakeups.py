"""Wake-ups: the pub/sub listener that wakes a key's waiters when its leader finishes.

One connection and one thread per group. Pub/sub is fire-and-forget, so
waiters never rely on it alone: they re-check on a bounded schedule, and
every (re)subscription wakes them all to re-check at once.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

if TYPE_CHECKING:
    import redis

_log = logging.getLogger("singleflight_sync")

_STOP_PREFIX = "\x00stop "


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
                    message: Any = pubsub.get_message(timeout=1.0)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
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
            self._client.publish(self._channel, _STOP_PREFIX + self._ident)  # pyright: ignore[reportUnknownMemberType]
        thread.join(3.0)
