"""A follower's exception equals the leader's, and no ``__init__`` runs again to make it.

Every case goes through a real flight: a leader thread raises, a follower
thread (held until it has joined) gets its own copy.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
from typing import Any

import pytest
from helpers import ExcThread, wait_until
from hypothesis import given
from hypothesis import strategies as st

from singleflight_sync import Group
from singleflight_sync._exccopy import _builtin_fields


def follower_copy(exc: BaseException) -> tuple[BaseException, BaseException]:
    """(what the leader raised, what a follower of the same flight raised)."""
    group: Group[str, Any] = Group()
    release = threading.Event()

    def fail() -> Any:
        release.wait(10)
        raise exc

    def catch() -> BaseException:
        try:
            group.do("k", fail)
        except BaseException as caught:
            return caught
        msg = "no exception"
        raise AssertionError(msg)

    leader = ExcThread(catch)
    leader.start()
    wait_until(lambda: group.in_flight("k"))
    follower = ExcThread(catch)
    follower.start()
    wait_until(lambda: group.stats().calls == 2)
    release.set()
    leader.join(10)
    follower.join(10)
    return leader.result, follower.result


def assert_equal_copy(original: BaseException, copy: BaseException) -> None:
    assert copy is not original
    assert type(copy) is type(original)
    assert copy.args == original.args
    assert str(copy) == str(original)
    assert repr(copy) == repr(original)
    assert getattr(copy, "__dict__", {}) == getattr(original, "__dict__", {})
    assert getattr(copy, "__notes__", None) == getattr(original, "__notes__", None)
    for name in _builtin_fields(type(original)):
        assert getattr(copy, name, None) == getattr(original, name, None), name
    assert copy.__cause__ is original


class APIError(Exception):
    inits = 0

    def __init__(self, status: int) -> None:
        type(self).inits += 1
        self.status = status
        super().__init__(f"API returned {status}")


def test_a_message_built_in_init_is_not_built_twice_and_init_runs_once() -> None:
    APIError.inits = 0
    original, copy = follower_copy(APIError(500))
    assert str(copy) == "API returned 500"
    assert copy.status == 500  # type: ignore[attr-defined]
    assert APIError.inits == 1
    assert_equal_copy(original, copy)


class Slotted(Exception):
    __slots__ = ("code", "unset")

    def __init__(self, code: int) -> None:
        super().__init__("slotted")
        self.code = code


def test_slots_and_notes_are_copied_and_notes_are_the_followers_own() -> None:
    exc = Slotted(7)
    exc.add_note("while fetching the price") if sys.version_info >= (3, 11) else None
    original, copy = follower_copy(exc)
    assert copy.code == 7  # type: ignore[attr-defined]
    assert not hasattr(copy, "unset")
    assert_equal_copy(original, copy)
    if sys.version_info >= (3, 11):
        copy.add_note("only mine")
        assert original.__notes__ == ["while fetching the price"]


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError(errno.ENOENT, "No such file or directory", "prices.csv"),
        PermissionError(errno.EACCES, "Permission denied", "a", None, "b"),
        OSError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "reset by peer"),
        BlockingIOError(errno.EAGAIN, "again", 12),
        TimeoutError(errno.ETIMEDOUT, "timed out"),
        OSError("no errno at all"),
        UnicodeDecodeError("utf-8", b"\xff\xfe", 0, 1, "invalid start byte"),
        UnicodeEncodeError("ascii", "caf\xe9", 3, 4, "ordinal not in range"),
        subprocess.CalledProcessError(2, ["psql", "-c", "select 1"], output=b"out", stderr=b"err"),
        subprocess.TimeoutExpired(["sleep", "9"], 1.5, output=b"partial"),
        KeyError("price:BTCUSDT"),
        StopIteration(42),
        SyntaxError("invalid syntax", ("f.py", 3, 7, "x = = 1\n", 3, 8)),
        AttributeError("no attribute 'x'", name="x", obj=None),
        ImportError("cannot import", name="mod", path="/x/mod.py"),
        SystemExit(3),
    ],
    ids=lambda e: type(e).__name__,
)
def test_standard_library_exceptions_are_reproduced_exactly(exc: BaseException) -> None:
    original, copy = follower_copy(exc)
    if isinstance(exc, SystemExit):
        assert copy.__cause__ is original  # the follower gets LeaderInterrupted... unless it is an Exception
        return
    assert_equal_copy(original, copy)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
def test_exception_groups_keep_their_message_and_members() -> None:
    exc = ExceptionGroup("two failures", [ValueError("a"), KeyError("b")])  # noqa: F821 - 3.11+
    original, copy = follower_copy(exc)
    assert_equal_copy(original, copy)
    assert copy.exceptions == original.exceptions  # type: ignore[attr-defined]
    assert copy.message == "two failures"  # type: ignore[attr-defined]


def test_requests_and_httpx_errors() -> None:
    requests = pytest.importorskip("requests")
    httpx = pytest.importorskip("httpx")
    response = requests.Response()
    response.status_code = 503
    cases = [
        requests.HTTPError("503 Server Error", response=response),
        requests.ConnectionError("connection refused"),
    ]
    request = httpx.Request("GET", "https://exchange.example/price")
    cases += [
        httpx.HTTPStatusError("Server error '503'", request=request, response=httpx.Response(503, request=request)),
        httpx.ConnectTimeout("timed out", request=request),
    ]
    for exc in cases:
        original, copy = follower_copy(exc)
        assert_equal_copy(original, copy)
    original, copy = follower_copy(cases[0])
    assert copy.response is response  # type: ignore[attr-defined]


def test_django_db_and_redis_errors() -> None:
    db = pytest.importorskip("django.db")
    redis_exceptions = pytest.importorskip("redis.exceptions")
    for exc in (
        db.IntegrityError("UNIQUE constraint failed: price.symbol"),
        db.OperationalError("database is locked"),
        redis_exceptions.ConnectionError("Error 111 connecting to localhost:6379. Connection refused."),
        redis_exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis_exceptions.TimeoutError("Timeout reading from socket"),
    ):
        original, copy = follower_copy(exc)
        assert_equal_copy(original, copy)


@given(
    args=st.lists(st.one_of(st.integers(), st.text(max_size=8), st.none()), max_size=3),
    attrs=st.dictionaries(st.sampled_from(["status", "url", "retry_after", "body"]), st.integers(), max_size=3),
    base=st.sampled_from([Exception, ValueError, RuntimeError, LookupError, ConnectionError]),
)
def test_generated_exception_classes_copy_exactly(args: list[Any], attrs: dict[str, int], base: type) -> None:
    calls = []

    def init(self: BaseException, *a: Any) -> None:
        calls.append(a)
        base.__init__(self, *a)  # type: ignore[misc]

    cls = type("Generated", (base,), {"__init__": init})
    exc = cls(*args)
    for name, value in attrs.items():
        setattr(exc, name, value)
    original, copy = follower_copy(exc)
    assert_equal_copy(original, copy)
    assert len(calls) == 1
