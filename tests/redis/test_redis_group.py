"""RedisGroup in one process: API, keys, options, serialization, and what touches Redis.

Two RedisGroup objects on one namespace behave as two processes: each has
its own local flights and its own listener, and they meet only in Redis.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if importlib.util.find_spec("redis") is None and not os.environ.get("CI"):
    pytest.skip("redis-py is not installed (pip install -e '.[redis]')", allow_module_level=True)

import redis

from singleflight_sync import FlightStats, FlightTimeoutError, Group, hashkey, methodkey, singleflight
from singleflight_sync.redis import (
    JsonSerializer,
    PickleSerializer,
    RedisGroup,
    RedisStats,
    RemoteFlightError,
    ResultSerializationError,
    UnstableKeyError,
    key_name,
)
from singleflight_sync.redis._keys import _plain


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


class Gate:
    """A function that signals when it starts and runs until released."""

    def __init__(self, value: Any = "v") -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs = 0
        self.value = value

    def __call__(self, *args: Any) -> Any:
        self.runs += 1
        self.started.set()
        assert self.release.wait(20), "gate never released"
        return self.value


def run_threads(n: int, target: Any) -> list[threading.Thread]:
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


# -- the package stays dependency free -----------------------------------------------


def test_importing_the_core_does_not_import_redis_py():
    code = "import sys, singleflight_sync; assert 'redis' not in sys.modules, 'redis-py was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- same API as Group ------------------------------------------------------------


def test_do_call_submit_async_and_decorator(make_group):
    group = make_group()
    assert isinstance(group, Group)
    assert group.do("a", int, "41") == 41
    info = group.call("b", sum, ([1, 2],))
    assert (info.value, info.leader, info.shared) == (3, True, False)
    with ThreadPoolExecutor(2) as pool:
        assert group.submit(pool, "c", pow, 2, 10).result() == 1024
    assert asyncio.run(group.do_async("d", max, 1, 2)) == 2

    @singleflight(group=group)
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42
    assert double.group is group
    s = group.stats()
    assert isinstance(s, FlightStats)
    assert (s.calls, s.executions, s.in_flight) == (5, 5, 0)


def test_decorator_keys_are_stable_names(make_group, client, ns):
    group = make_group(linger=30)

    @singleflight(group=group)
    def load(user: int, *, full: bool = False) -> dict[str, Any]:
        return {"user": user, "full": full}

    assert load(7) == {"user": 7, "full": False}
    scope = f"{__name__}.test_decorator_keys_are_stable_names.<locals>.load"
    assert client.get(group.redis_key((scope, (7, False)), "linger")) is not None


def test_two_groups_share_one_execution(make_group):
    a, b = make_group(), make_group()
    gate = Gate({"answer": 42})
    results: list[Any] = []
    leader = threading.Thread(target=lambda: results.append(a.do("k", gate)))
    leader.start()
    assert gate.started.wait(10)
    followers = run_threads(3, lambda: results.append(b.do("k", gate)))
    wait_for(lambda: b.stats().calls == 3, "the followers to join b's flight")
    # b's leader must be waiting on a's flight in Redis: a caller that arrives
    # after a's flight landed runs anew (not a cache).
    wait_for(lambda: b._remote_waits == 1, "b's leader to wait on a's flight")
    gate.release.set()
    for t in [leader, *followers]:
        t.join(10)
    assert results == [{"answer": 42}] * 4
    assert gate.runs == 1
    sa, sb = a.redis_stats(), b.redis_stats()
    assert isinstance(sa, RedisStats)
    assert (sa.executions, sa.remote_shares) == (1, 0)
    assert (sb.executions, sb.remote_shares, sb.local_shares) == (0, 1, 2)


class CountingRedis(redis.Redis):
    """A real client that counts the commands it sends (scripts included)."""

    sent = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        type(self).sent += 1
        return super().execute_command(*args, **options)


def test_local_followers_never_touch_redis(private_server, ns):
    # A server of its own, so INFO commandstats sees this test's commands only.
    client = CountingRedis.from_url(private_server.url)
    stats_client = redis.Redis.from_url(private_server.url)
    group = RedisGroup(client, namespace=ns)
    try:
        group.do("warm", str, 1)  # load the scripts, start the listener

        def server_commands() -> int:
            stats = stats_client.info("commandstats")
            return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")

        def round_trips() -> int:  # the scripts the group sent: one request and reply each
            stats = stats_client.info("commandstats")
            return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

        def flight(key: str, followers: int) -> tuple[int, int]:
            gate = Gate()
            calls_before = group.stats().calls
            sent_before, server_before = round_trips(), server_commands()
            leader = threading.Thread(target=group.do, args=(key, gate))
            leader.start()
            assert gate.started.wait(10)
            joined = run_threads(followers, lambda: group.do(key, gate))
            wait_for(lambda: group.stats().calls == calls_before + 1 + followers, "the followers to join")
            gate.release.set()
            for t in [leader, *joined]:
                t.join(10)
            return round_trips() - sent_before, server_commands() - server_before

        alone = flight("alone", 0)
        crowded = flight("crowded", 50)
        assert alone[0] == 2  # acquire and finish: one round trip each
        assert alone == crowded, f"one caller: {alone} (sent, run by the server); 51 callers: {crowded}"
        assert group.redis_stats().local_shares == 50
    finally:
        group.close()
        client.close()
        stats_client.close()


def test_a_late_caller_runs_again_not_a_cache(make_group):
    a, b = make_group(result_ttl=30), make_group(result_ttl=30)
    assert a.do("k", lambda: [1, "x"]) == [1, "x"]
    assert b.do("k", lambda: "again") == "again"  # the landed flight's outcome is for its own waiters only
    assert b.redis_stats().remote_shares == 0


def test_linger_shares_a_landed_value_but_not_an_error(make_group):
    a, b = make_group(linger=30), make_group(linger=30)
    assert a.do("k", lambda: [1, "x"]) == [1, "x"]
    assert b.do("k", lambda: pytest.fail("ran again although linger= shares the landed value")) == [1, "x"]
    assert b.redis_stats().remote_shares == 1

    def boom() -> None:
        raise ValueError("once")

    with pytest.raises(ValueError, match="once"):
        a.do("e", boom)
    assert b.do("e", lambda: "ran again") == "ran again"  # errors linger only with linger_errors=True
    c, d = make_group(linger=30, linger_errors=True), make_group(linger=30, linger_errors=True)
    with pytest.raises(ValueError, match="once"):
        c.do("e2", boom)
    with pytest.raises(RemoteFlightError, match="once"):
        d.do("e2", lambda: "ran again")


def test_forget_drops_the_stored_result(make_group):
    a, b = make_group(linger=30), make_group(linger=30)
    a.do("k", lambda: 1)
    assert b.forget("k") is False  # no local flight, but the stored outcome is gone
    assert b.do("k", lambda: 2) == 2


def test_lost_publish_followers_finish_within_the_bound(monkeypatch, make_group):
    recheck = 0.3
    # The test hook, read when a group is made (it is compiled into the
    # scripts): the leader stores its result but publishes nothing.
    monkeypatch.setenv("SINGLEFLIGHT_REDIS_DROP_PUBLISH", "1")
    a = make_group(recheck=recheck)
    monkeypatch.delenv("SINGLEFLIGHT_REDIS_DROP_PUBLISH")
    b = make_group(recheck=recheck)
    leader_started = threading.Event()
    finished: list[float] = []

    def work() -> str:
        leader_started.set()
        # Finish only once the follower is blocked waiting for the wake-up.
        wait_for(lambda: b._remote_waits == 1, "the follower to wait")
        finished.append(time.monotonic())
        return "late"

    leader = threading.Thread(target=a.do, args=("k", work))
    leader.start()
    assert leader_started.wait(10)
    done: list[float] = []
    follower = threading.Thread(target=lambda: (b.do("k", work), done.append(time.monotonic())))
    follower.start()
    leader.join(10)
    follower.join(10)
    assert done, "the follower never finished"
    assert done[0] - finished[0] <= recheck + 0.2
    assert a.redis_stats().executions == 1
    assert b.redis_stats().remote_shares == 1
    assert b._listener.received == 0  # no wake-up came: the re-check found the result


def test_drop_publish_env_var(monkeypatch, make_group):
    monkeypatch.setenv("SINGLEFLIGHT_REDIS_DROP_PUBLISH", "1")
    assert make_group()._drop_publishes is True
    monkeypatch.setenv("SINGLEFLIGHT_REDIS_DROP_PUBLISH", "0")
    assert make_group()._drop_publishes is False


def test_remote_wait_honours_the_timeout(make_group):
    a, b = make_group(), make_group(timeout=0.3, recheck=0.1)
    gate = Gate()
    leader = threading.Thread(target=a.do, args=("k", gate))
    leader.start()
    assert gate.started.wait(10)
    started = time.monotonic()
    with pytest.raises(FlightTimeoutError) as info:
        b.do("k", gate)
    assert 0.25 <= time.monotonic() - started < 2
    assert info.value.key == "k"
    gate.release.set()
    leader.join(10)
    assert gate.runs == 1


def test_interrupted_leader_frees_the_lease_at_once(make_group):
    class Stop(BaseException):
        pass

    a, b = make_group(lease=30), make_group(lease=30)
    gate = threading.Event()
    release = threading.Event()

    def interrupted() -> None:
        gate.set()
        release.wait(10)
        raise Stop

    caught: list[BaseException] = []

    def lead() -> None:
        try:
            a.do("k", interrupted)
        except Stop as exc:
            caught.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    assert gate.wait(10)
    values: list[str] = []
    follower = threading.Thread(target=lambda: values.append(b.do("k", lambda: "taken over")))
    follower.start()
    wait_for(lambda: b._remote_waits == 1, "the follower to wait")
    started = time.monotonic()
    release.set()
    leader.join(10)
    follower.join(10)
    assert len(caught) == 1
    assert values == ["taken over"]
    assert time.monotonic() - started < 5  # not the 30 s lease
    assert b.redis_stats().takeovers == 1


# -- errors and serialization ------------------------------------------------------


def test_a_value_that_cannot_round_trip_is_the_same_error_for_everyone(make_group):
    class Level(enum.IntEnum):
        HIGH = 3

    a, b = make_group(), make_group()
    gate = Gate({"items": [1, 2, 3, Level.HIGH]})  # an IntEnum would come back as an int
    outcomes: list[Any] = []

    def call(group: RedisGroup) -> None:
        try:
            outcomes.append(group.do("k", gate))
        except Exception as exc:
            outcomes.append(exc)

    leader = threading.Thread(target=call, args=(a,))
    leader.start()
    assert gate.started.wait(10)
    local = run_threads(3, lambda: call(a))
    wait_for(lambda: a.stats().calls == 4, "the local followers to join")
    remote = threading.Thread(target=call, args=(b,))
    remote.start()
    wait_for(lambda: b._remote_waits == 1, "the remote follower to wait")
    gate.release.set()
    for t in [leader, *local, remote]:
        t.join(10)
    assert len(outcomes) == 5
    assert all(isinstance(e, ResultSerializationError) for e in outcomes), outcomes
    assert len({str(e) for e in outcomes}) == 1
    assert 'result["items"][3]' in str(outcomes[0])
    assert "Level" in str(outcomes[0])
    assert b.do("k", lambda: "runs again") == "runs again"  # nothing was stored as the answer


def test_pickle_is_an_explicit_opt_in(make_group):
    a, b = make_group(serializer=PickleSerializer(), linger=30), make_group(serializer=pickle, linger=30)
    assert a.do("k", lambda: {1, 2}) == {1, 2}
    assert b.do("k", lambda: None) == {1, 2}  # read from Redis, unpickled


def test_values_come_back_exactly_in_another_process(make_group):
    a, b = make_group(linger=30), make_group(linger=30)
    value = {1: "a", "1": "b", "t": (1, (2, 3)), "s": frozenset({1}), "f": -0.0, "b": b"\x00"}
    assert a.do("k", lambda: value) == value  # the leader's callers get the original, equal to the copies
    got = b.do("k", lambda: None)
    assert got == value
    assert type(got["t"]) is tuple
    assert type(got["t"][1]) is tuple
    assert str(got["f"]) == "-0.0"
    assert JsonSerializer().loads(JsonSerializer().dumps({"x": 1.5})) == {"x": 1.5}


def test_undecodable_stored_result_is_a_clear_error(make_group, client):
    a = make_group(linger=30)
    client.set(a.redis_key("k", "linger"), b"v\x80not json")
    with pytest.raises(ResultSerializationError, match="cannot be read by JsonSerializer"):
        a.do("k", lambda: 1)


# -- keys ---------------------------------------------------------------------------


def test_equal_keys_share_one_flight_across_processes(make_group):
    a, b = make_group(), make_group()
    gate = Gate("one")
    leader = threading.Thread(target=a.do, args=(1, gate))
    leader.start()
    assert gate.started.wait(10)
    results: list[Any] = []
    followers = [threading.Thread(target=lambda k=k: results.append(b.do(k, gate))) for k in (1.0, True)]
    for t in followers:
        t.start()
    wait_for(lambda: b._remote_waits == 1, "b to wait on a's flight")
    assert b.stats().calls == 2  # 1.0 and True share b's local flight, as in a Group
    gate.release.set()
    for t in [leader, *followers]:
        t.join(10)
    assert results == ["one", "one"]
    assert gate.runs == 1
    assert key_name(1) == key_name(1.0) == key_name(True) == "1"
    assert key_name((1, 2.5, False)) == key_name((True, 2.5, 0.0))


def test_typed_keeps_equal_keys_apart_in_redis_too(make_group):
    a, b = make_group(), make_group()
    runs: list[Any] = []

    def build(group):
        @singleflight(group=group, typed=True)
        def load(x: Any) -> str:
            runs.append(x)
            return type(x).__name__

        return load

    assert build(a)(1) == "int"
    assert build(b)(1.0) == "float"
    assert [type(r) for r in runs] == [int, float]
    name_int = key_name(("load", (1, (int,))))
    assert name_int != key_name(("load", (1.0, (float,))))


def test_a_key_with_a_lone_surrogate_is_refused_before_any_flight(make_group):
    group = make_group()
    with pytest.raises(UnstableKeyError, match="lone surrogate"):
        group.do("price:\ud800", str)
    assert len(group) == 0
    assert group.stats().calls == 0


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
stable_keys = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.tuples(inner), max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(stable_keys, stable_keys)
def test_key_names_follow_python_equality(k1, k2):
    # Equal keys share a local flight, so they share one name in Redis too.
    assert (key_name(k1) == key_name(k2)) == (k1 == k2)


@settings(max_examples=50, deadline=None)
@given(stable_keys)
def test_key_names_are_bounded(key):
    name = key_name(key)
    assert len(name) <= 200
    if name.startswith("sha256:"):
        # The name's JSON (integral floats as ints: 1e300 is 301 digits) is too long.
        assert len(json.dumps(_plain(key, key), ensure_ascii=False, separators=(",", ":"))) > 200
    else:
        assert json.loads(name) == json.loads(json.dumps(key))  # readable: the key's own JSON


def test_key_names_match_in_another_process():
    key = ("user", 7, 1.5, None, True, ("nested", -0.0), "x" * 300)
    code = f"from singleflight_sync.redis import key_name; print(key_name({key!r}))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert out.stdout.strip() == key_name(key)


def test_long_keys_are_hashed(make_group, client):
    group = make_group(linger=30)
    key = "x" * 10_000
    group.do(key, lambda: 1)
    name = group.redis_key(key, "linger")
    assert name.startswith(f"{group.namespace}:v1:{{")
    assert len(name) < 120
    assert client.get(name) == b"v1"


@pytest.mark.parametrize(
    ("key", "type_name"),
    [(object(), "object"), ([1, 2], "list"), (("ok", {"a": 1}), "dict"), (b"bytes", "bytes"), (("t", Gate), "type")],
)
def test_unstable_keys_are_rejected(make_group, key, type_name):
    group = make_group()
    for attempt in (
        lambda: group.do(key, str),
        lambda: group.call(key, str),
        lambda: group.submit(ThreadPoolExecutor(1), key, str),
    ):
        with pytest.raises(UnstableKeyError, match=rf"type {type_name}\b.*key=") as info:
            attempt()
        assert isinstance(info.value, TypeError)
    assert len(group) == 0
    assert group.stats().calls == 0


def test_decorator_with_an_unstable_argument_says_to_pass_key(make_group):
    group = make_group()

    class Service:
        id = 3

        @singleflight(group=group)
        def load(self, x: int) -> int:
            return x

        @singleflight(group=group, key=lambda self, x: f"svc:{self.id}:{x}")
        def load_keyed(self, x: int) -> int:
            return x + 1

        @singleflight(group=group, key=methodkey)
        def load_any(self, x: int, *, y: int = 0) -> int:
            return x + y

    with pytest.raises(TypeError, match=r"type .*Service.*pass key="):
        Service().load(1)
    assert Service().load_keyed(1) == 2
    assert Service().load_any(1, y=2) == 3
    assert group.do(hashkey(1, b=2), str, 1) == "1"


# -- options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": 3}, TypeError, "namespace"),
        ({"lease": 0}, ValueError, "lease"),
        ({"lease": "1"}, TypeError, "lease"),
        ({"lease": float("inf")}, ValueError, "lease"),
        ({"result_ttl": -1}, ValueError, "result_ttl"),
        ({"recheck": True}, TypeError, "recheck"),
        ({"recheck": 2.0, "result_ttl": 1.0}, ValueError, "result_ttl"),
        ({"serializer": object()}, TypeError, "serializer"),
        ({"on_error": "ignore"}, ValueError, "on_error"),
        ({"on_unavailable": "retry"}, ValueError, "on_unavailable"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"on_flight_end": 1}, TypeError, "on_flight_end"),
    ],
)
def test_options_are_validated(redis_url, options, error, name):
    with pytest.raises(error, match=name):
        RedisGroup(redis_url, **options)


def test_client_or_url_is_validated(redis_url):
    with pytest.raises(TypeError, match="client_or_url"):
        RedisGroup(6379)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="client_or_url"):
        RedisGroup("")
    decoding = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisGroup(decoding)
    decoding.close()


def test_a_client_passed_in_is_not_closed(client, ns):
    with RedisGroup(client, namespace=ns) as group:
        assert group.client is client
        assert group.do("k", str, 5) == "5"
    assert client.ping()


def test_stats_and_reset(make_group):
    group = make_group()
    group.do("k", str, 1)
    assert group.redis_stats().executions == 1
    group.reset_stats()
    assert group.redis_stats() == RedisStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert "RedisGroup" in repr(group)


def test_unavailable_redis_falls_back_or_raises(caplog):
    from singleflight_sync.redis import RedisUnavailableError  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"  # nothing listens there
    with RedisGroup(url) as local, caplog.at_level(logging.WARNING, logger="singleflight_sync"):
        assert local.do("k", str, 1) == "1"
        assert local.do("k", str, 2) == "2"
        assert local.redis_stats().fallbacks == 2
    assert sum("Redis is unavailable" in r.getMessage() for r in caplog.records) == 1  # rate limited
    with RedisGroup(url, on_unavailable="raise") as strict, pytest.raises(RedisUnavailableError) as info:
        strict.do("k", str, 1)
    assert isinstance(info.value.__cause__, redis.RedisError)
    assert "cannot coordinate the flight for key 'k'" in str(info.value)


def test_close_stops_the_threads(make_group):
    a, b = make_group(), make_group()
    gate = Gate()
    leader = threading.Thread(target=a.do, args=("k", gate))
    leader.start()
    assert gate.started.wait(10)
    follower = threading.Thread(target=b.do, args=("k", gate))
    follower.start()
    wait_for(lambda: b._remote_waits == 1, "the follower to wait")
    gate.release.set()
    leader.join(10)
    follower.join(10)
    a.close()
    b.close()
    a.close()  # idempotent
    alive = [t.name for t in threading.enumerate() if t.name.startswith("singleflight-redis")]
    assert alive == []
    with pytest.raises(RuntimeError, match="was closed"):
        a.do("k", str, 1)


FORK_SCRIPT = r"""
import os, sys, threading, time
import redis
from singleflight_sync.redis import RedisGroup

url, ns = sys.argv[1], sys.argv[2]
r = redis.Redis.from_url(url)
parent = RedisGroup(url, namespace=ns, recheck=10, result_ttl=10)
shared = RedisGroup(url, namespace=ns, recheck=10, result_ttl=10)

# Start `shared`'s listener in the parent: follow a flight led by `parent`.
go = threading.Event()
t = threading.Thread(target=parent.do, args=("warm", lambda: go.wait(10) and "warm"))
t.start()
while r.get(parent.redis_key("warm", "lock")) is None:
    time.sleep(0.005)
waiter = threading.Thread(target=shared.do, args=("warm", lambda: "wrong"))
waiter.start()
while not shared._listener.live(shared.redis_key("warm", "done").encode()):
    time.sleep(0.005)
go.set(); t.join(); waiter.join()

waiting = f"{ns}:test:child-waiting"

def lead():
    # Run until the child waits on this flight (it has read the lease with its
    # own listener subscribed), then finish.
    deadline = time.monotonic() + 20
    while not r.exists(waiting) and time.monotonic() < deadline:
        time.sleep(0.005)
    return "parent ran it"

led = []
leader = threading.Thread(target=lambda: led.append(parent.do("k", lead)))
leader.start()
while r.get(parent.redis_key("k", "lock")) is None:  # the parent holds the lease before the fork
    time.sleep(0.005)
pid = os.fork()
if pid == 0:
    def report_waiting():
        # A follower counts itself in _remote_waits once it has read the lease
        # with its listener subscribed, just before it waits for the publish.
        while True:
            with shared._lock:
                if shared._remote_waits:
                    break
            time.sleep(0.002)
        r.set(waiting, 1, ex=60)
    threading.Thread(target=report_waiting, daemon=True).start()
    started = time.monotonic()
    value = shared.do("k", lambda: "child ran it")  # waits on the parent's flight
    elapsed = time.monotonic() - started
    ok = value == "parent ran it" and elapsed < 5  # woken by the publish, not the 10 s recheck
    print("child", value, round(elapsed, 3), flush=True)
    os._exit(0 if ok else 1)

leader.join()
assert led == ["parent ran it"]
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_starts_its_own_listener(redis_url, ns):
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", FORK_SCRIPT, redis_url, ns],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "child parent ran it" in out.stdout


@pytest.mark.parametrize("kind", ["lock", "result"])
def test_a_worker_of_the_previous_release_is_refused_loudly(make_group, client, kind):
    """Old (0.1.0) and new workers in one namespace never silently stop sharing: the new one refuses."""
    from singleflight_sync.redis import WireFormatError  # noqa: PLC0415

    group = make_group()
    # What a 0.1.0 worker writes while it runs a flight of "k" (its lock) or just after (its result).
    legacy = f"{group.namespace}:{kind}:{key_name('k')}"
    client.set(legacy, b"from a 0.1.0 worker", px=10_000)
    ran = []
    with pytest.raises(WireFormatError, match="namespace=") as raised:
        group.do("k", lambda: ran.append(1))
    assert ran == []
    assert raised.value.key == "k"
    client.delete(legacy)
    assert group.do("k", lambda: "ran") == "ran"  # once the old workers are gone
