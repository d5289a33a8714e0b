"""Wake-ups: the pub/sub listener that wakes a key's waiters when its leader finishes.

Each key has its own channel (under the key's hash tag), and a process
subscribes only to the channels of keys that some caller in it waits on, so
a flight wakes only the processes that wait for it. A finished flight's
message carries its fencing number and, when small, its outcome, so a woken
follower needs no further read. One connection and one thread per group.
Pub/sub is fire-and-forget, so waiters never rely on it alone: they re-check
on a bounded schedule, and every (re)subscription of a channel wakes its
waiters to re-check at once.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from collections.abc import Hashable

    from ._deploy import _Deployment

_log = logging.getLogger("singleflight_sync")

# Outcomes up to this size travel in the wake-up message itself; larger ones
# are read by the woken follower (one more round trip).
INLINE_MAX = 16 * 1024
# A channel stays subscribed this long after its last waiter left, so that a
# hot key's followers do not subscribe and unsubscribe for every flight.
IDLE_GRACE = 1.0


class _Waiter:
    """One follower's wake-up: an event and the messages that came for its key."""

    __slots__ = ("event", "messages")

    def __init__(self) -> None:
        self.event = threading.Event()
        # Written by the listener thread under the listener's lock, read by the follower under it too.
        self.messages: list[bytes] = []


class _Listener:
    """Wakes the waiters of a key when its leader publishes, in any process.

    Only the listener thread touches its pub/sub connection: a follower that
    needs a channel asks for it and wakes the thread through a local socket
    pair, then waits (bounded) until the server has confirmed the
    subscription. Started by the first follower; a forked child starts its own.
    """

    def __init__(self, deploy: _Deployment) -> None:
        self._deploy = deploy
        self._failures = 0  # connection failures in a row: the listener thread's own, never shared
        # _lock protects every field below and the waiters' message lists; the
        # condition is notified when a subscription is confirmed. It is never
        # held while calling out (Redis, a socket, an event of a caller).
        self._lock = threading.Lock()
        self._confirmed = threading.Condition(self._lock)
        self._waiters: dict[bytes, set[_Waiter]] = {}
        self._wanted: set[bytes] = set()  # channels to be subscribed to
        self._sent: dict[bytes, int] = {}  # channel -> SUBSCRIBEs not yet confirmed
        self._live: set[bytes] = set()  # confirmed on the current connection, none outstanding
        self._idle_since: dict[bytes, float] = {}  # wanted channels without waiters
        self._where: dict[bytes, Hashable] = {}  # channel -> the connection it was subscribed on
        self._received = 0  # wake-up messages this listener got (for the benchmarks)
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._stop = threading.Event()  # set with _stopped: ends the thread's reconnect pauses
        self._poke_r, self._poke_w = socket.socketpair()
        self._poke_r.setblocking(False)
        self._poke_w.setblocking(False)

    # -- called by followers ----------------------------------------------------

    def register(self, channel: bytes) -> _Waiter:
        """Collect ``channel``'s messages for a new waiter (no command is sent)."""
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault(channel, set()).add(waiter)
            self._idle_since.pop(channel, None)
        return waiter

    def unregister(self, channel: bytes, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(channel)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[channel]
                    if channel in self._wanted:
                        self._idle_since[channel] = time.monotonic()

    def live(self, channel: bytes) -> bool:
        """Whether a publish on ``channel`` reaches this process now."""
        with self._lock:
            return channel in self._live

    def subscribe(self, channel: bytes, timeout: float) -> bool:
        """Subscribe to ``channel``, waiting at most ``timeout`` seconds for the server to confirm."""
        with self._lock:
            if channel in self._live:
                return True
            if self._stopped:
                return False
            self._wanted.add(channel)
            start = self._thread is None
            if start:
                self._thread = threading.Thread(target=self._run, name="singleflight-redis-listener", daemon=True)
        if start:
            assert self._thread is not None  # noqa: S101 - set just above, under the lock
            self._thread.start()
        self._poke()
        with self._confirmed:
            return self._confirmed.wait_for(lambda: channel in self._live, timeout)

    def clear(self, waiter: _Waiter) -> None:
        # The event first: a message that lands in between still wakes the waiter.
        waiter.event.clear()
        with self._lock:
            waiter.messages.clear()

    def outcome_for(self, waiter: _Waiter, fence: str) -> bytes | None:
        """The outcome that flight ``fence``'s message carried to ``waiter``, if it came inline."""
        prefix = fence.encode() + b":"
        with self._lock:
            for message in waiter.messages:
                if message.startswith(prefix) and len(message) > len(prefix):
                    return message[len(prefix) :]
        return None

    @property
    def received(self) -> int:
        with self._lock:
            return self._received

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # full (a poke is pending anyway) or closed
            self._poke_w.send(b"\0")

    # -- the listener thread ----------------------------------------------------

    def _wake(self, channel: bytes | None, message: bytes | None = None) -> None:
        with self._lock:
            if channel is None:
                waiters = [w for group in self._waiters.values() for w in group]
            else:
                waiters = list(self._waiters.get(channel, ()))
            if message is not None:
                self._received += 1
                for waiter in waiters:
                    if len(waiter.messages) < 8:  # a waiter needs only its own flight's
                        waiter.messages.append(message)
        for waiter in waiters:
            waiter.event.set()

    def _changes(self) -> tuple[list[bytes], list[bytes]]:
        """Channels to subscribe to now, and idle ones to leave (both under the lock)."""
        now = time.monotonic()
        with self._lock:
            new = [c for c in self._wanted if c not in self._sent and c not in self._live]
            for channel in new:
                self._sent[channel] = self._sent.get(channel, 0) + 1
            # Leave only confirmed channels: an UNSUBSCRIBE between a SUBSCRIBE
            # and its confirmation could make a late confirmation look current.
            old = [c for c, since in self._idle_since.items() if now - since >= IDLE_GRACE and c in self._live]
            for channel in old:
                self._wanted.discard(channel)
                self._live.discard(channel)
                del self._idle_since[channel]
        return new, old

    def _confirm(self, channel: bytes) -> None:
        self._failures = 0
        with self._confirmed:
            left = self._sent.get(channel, 0) - 1
            if left > 0:
                self._sent[channel] = left
            else:
                self._sent.pop(channel, None)
                if channel in self._wanted:
                    self._live.add(channel)
            self._confirmed.notify_all()
        # Publishes may have been missed before this (re)subscription.
        self._wake(channel)

    def _next_timeout(self) -> float:
        with self._lock:
            # Only confirmed channels are left (see _changes): an idle one still
            # being subscribed is looked at again when its confirmation arrives.
            first = min((t for c, t in self._idle_since.items() if c in self._live), default=None)
        if first is None:
            return 5.0
        return max(0.01, first + IDLE_GRACE - time.monotonic())

    def _drain_pokes(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._poke_r.recv(4096):
                pass

    def _subscribe_new(self, conns: dict[Hashable, Any]) -> None:
        """Subscribe each newly wanted channel on the connection of the server that publishes it."""
        new, old = self._changes()
        deploy = self._deploy
        by_node: dict[Hashable, list[bytes]] = {}
        for channel in new:
            node, open_pubsub = deploy.pubsub_for(channel)
            if node not in conns:
                conns[node] = open_pubsub()
            by_node.setdefault(node, []).append(channel)
            with self._lock:
                self._where[channel] = node
        for node, channels in by_node.items():
            # SSUBSCRIBE takes channels of one slot only: one command each.
            for batch in [[c] for c in channels] if deploy.sharded else [channels]:
                self._on(node, conns, deploy.subscribe, batch)
        for channel in old:
            with self._lock:
                node = self._where.pop(channel, None)
            if node in conns:
                self._on(node, conns, deploy.unsubscribe, [channel])

    def _on(self, node: Hashable, conns: dict[Hashable, Any], method: str, channels: list[bytes] | None = None) -> None:
        """Call ``method`` (a PubSub method's name, or "drain") on ``node``'s connection; drop it if that fails."""
        pubsub = conns.get(node)
        if pubsub is None:
            return
        try:
            if method == "drain":
                self._drain(pubsub)
            else:
                getattr(pubsub, method)(*(channels or ()))
        except Exception as exc:
            self._lost(node, conns, exc)

    def _lost(self, node: Hashable, conns: dict[Hashable, Any], exc: BaseException) -> None:
        """A connection failed: its channels are subscribed again (where they now live), and their waiters re-check."""
        level = logging.DEBUG if isinstance(exc, (RedisError, OSError)) else logging.WARNING
        _log.log(level, "singleflight listener connection %s failed; resubscribing: %r", node, exc)
        pubsub = conns.pop(node, None)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()
        with self._lock:
            channels = [c for c, n in self._where.items() if n == node]
            for channel in channels:
                del self._where[channel]
                self._sent.pop(channel, None)
                self._live.discard(channel)
        for channel in channels:
            self._wake(channel)
        with contextlib.suppress(Exception):
            self._deploy.refresh()  # in a cluster the slots may have moved
        # No busy loop while a server is down: 0.05 s, doubling to 1 s, until a
        # subscription is confirmed again.
        self._stop.wait(min(0.05 * 2**self._failures, 1.0))
        self._failures = min(self._failures + 1, 5)

    def _serve(self, conns: dict[Hashable, Any]) -> None:
        """Subscribe, unsubscribe and dispatch on the connections (one per server) until the listener stops."""
        while True:
            with self._lock:
                if self._stopped:
                    return
            self._subscribe_new(conns)
            ready: dict[Any, Hashable] = {}
            for node in list(conns):
                self._on(node, conns, "drain")
                pubsub = conns.get(node)
                if pubsub is None:
                    continue
                conn = pubsub.connection
                # Unsubscribed from everything, the connection has nothing to
                # say (and redis-py would not read it): not selected on.
                if conn is not None and conn._sock is not None and pubsub.subscribed:  # select needs the socket
                    ready[conn._sock] = node
            readable, _, _ = select.select([self._poke_r, *ready], [], [], self._next_timeout())
            if self._poke_r in readable:
                self._drain_pokes()

    def _drain(self, pubsub: Any) -> None:
        """Dispatch everything already readable, redis-py's buffer included."""
        while (message := pubsub.get_message(timeout=0.0)) is not None:
            self._dispatch(message)

    def _dispatch(self, message: Any) -> None:
        kind = message["type"]
        if isinstance(kind, bytes):
            kind = kind.decode()
        channel = message["channel"]
        if isinstance(channel, str):
            channel = channel.encode()
        deploy = self._deploy
        if kind == deploy.subscribe:
            self._confirm(channel)
        elif kind == deploy.message:
            data = message["data"]
            self._wake(channel, data.encode() if isinstance(data, str) else data)
        elif kind == deploy.unsubscribe:
            with self._lock:
                # Not asked for (ours leave _live when sent): the server moved
                # the channel's slot away. Subscribe again where it lives now.
                moved = channel in self._live
                if moved:
                    self._live.discard(channel)
                    self._sent.pop(channel, None)
                    self._where.pop(channel, None)
            if moved:
                with contextlib.suppress(Exception):
                    deploy.refresh()
                self._wake(channel)

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            conns: dict[Hashable, Any] = {}
            started = time.monotonic()
            try:
                with self._lock:
                    # New connections: every wanted channel is subscribed anew.
                    self._sent.clear()
                    self._live.clear()
                    self._where.clear()
                self._serve(conns)
            except Exception as exc:
                # Whatever happened, keep listening: the waiters re-check on
                # their own meanwhile, and are woken now to do so at once.
                level = logging.DEBUG if isinstance(exc, (RedisError, OSError)) else logging.WARNING
                _log.log(level, "singleflight listener failed; reconnecting: %r", exc)
                with self._lock:
                    self._live.clear()
                self._wake(None)
                if time.monotonic() - started > 5.0:
                    backoff = 0.05  # it had been working: a new outage starts over
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                for pubsub in conns.values():
                    try:
                        pubsub.close()
                    except Exception:
                        _log.debug("closing a listener's pub/sub connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._stop.set()  # under the lock: once _serve sees _stopped, _run sees _stop
            thread = self._thread
            self._confirmed.notify_all()
        self._poke()
        if thread is not None:
            thread.join(3.0)
        self._poke_r.close()
        self._poke_w.close()

    def abandon(self) -> None:
        """In a forked child: drop the parent's listener without touching its connection."""
        self._poke_r.close()
        self._poke_w.close()
