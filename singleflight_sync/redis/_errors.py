"""The errors of the Redis layer.

Like the core's errors, each carries its key, builds its message once and
pickles through ``__reduce__``. ``_error_record`` is the wire form of a
leader's exception: type name, message and traceback text, since exceptions
do not cross processes as objects.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from singleflight_sync._errors import SingleFlightError, show_key


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
        msg = f"the flight for key {show_key(key)} failed in another process: {remote_type}: {remote_message}"
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
        super().__init__(f"cannot coordinate the flight for key {show_key(key)} on Redis: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.reason))


class RedisConfigurationError(SingleFlightError):
    """Redis refused this group's commands because of its settings: fix them.

    A wrong password, an ACL that does not allow the group's commands
    (``EVALSHA``/``EVAL`` and those its scripts run, ``SUBSCRIBE``; the
    how-to lists them), or a TLS misconfiguration. Unlike an outage this never falls back to running the
    work per process: it would hide the mistake. ``__cause__`` is the redis-py
    error.
    """

    def __init__(self, key: Any, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(
            f"Redis refused the flight for key {show_key(key)} because of the group's settings: {reason}; check the "
            "password, the ACL user's permissions and the TLS settings of the client or URL"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.reason))


class WireFormatError(SingleFlightError):
    """A worker of an older release coordinates this key in the same namespace: give the new release its own.

    Workers of singleflight_sync 0.1.0 named a key's lease ``<ns>:lock:<key>``
    and its outcome ``<ns>:result:<key>``; this release uses wire format
    ``v1`` (``<ns>:v1:{<tag>}:...``), so the two cannot share a flight. Rather
    than run the work beside them without a word, a ``v1`` caller that finds
    such a key raises this error (the work does not run).
    """

    def __init__(self, key: Any, namespace: str) -> None:
        self.key = key
        self.namespace = namespace
        super().__init__(
            f"a worker of an older singleflight_sync release (wire format before v1) is coordinating key "
            f"{show_key(key)} in namespace {namespace!r}, and old and new workers cannot share a flight; give the "
            "new release its own namespace= during the rolling deploy, or drain the old workers first"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.namespace))


class ResultSerializationError(SingleFlightError):
    """A flight's result could not be serialized (or a stored one deserialized).

    Every local caller of the flight gets this error; other processes get a
    :class:`RemoteFlightError` naming it, so nobody waits for a result that
    was never stored.
    """

    def __init__(self, key: Any, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"the result of the flight for key {show_key(key)} {reason}")

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


def _error_record(exc: BaseException) -> bytes:
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    record = {"type": name, "message": str(exc), "traceback": text}
    if isinstance(exc, ResultSerializationError):
        record["serialization"] = exc.reason  # every process raises this same error
    return b"e" + json.dumps(record).encode()  # ASCII: a lone surrogate in a message cannot break it
