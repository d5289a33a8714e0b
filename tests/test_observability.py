"""on_flight_end, debug logging, and exporting stats() to Prometheus without a dependency."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import Gate, followers_of, start, wait_until

from singleflight_sync import CacheFiller, FlightRecord, FlightTimeoutError, Group, LeaderInterrupted, singleflight


class Recorder:
    def __init__(self) -> None:
        self.records: list[FlightRecord] = []
        self.threads: list[int] = []
        self.done = threading.Event()

    def __call__(self, record: FlightRecord) -> None:
        self.records.append(record)
        self.threads.append(threading.get_ident())
        self.done.set()


def test_hook_gets_key_duration_followers_and_ok():
    hook = Recorder()
    group: Group[str, int] = Group(on_flight_end=hook)
    gate = Gate()
    t0 = time.perf_counter()
    leader = start(group.do, "k", gate)
    assert gate.entered.wait(10)
    held_from = time.perf_counter()
    followers = [start(group.do, "k", gate) for _ in range(3)]
    wait_until(lambda: followers_of(group, "k") == 3, what="3 followers")
    held_to = time.perf_counter()
    gate.finish(7)
    leader.join()
    total = time.perf_counter() - t0
    for t in followers:
        t.join()
    (record,) = hook.records
    assert (record.key, record.followers, record.outcome, record.error) == ("k", 3, "ok", None)
    # The flight began before the gate was entered and ended after it was released.
    assert held_to - held_from <= record.duration <= total
    assert hook.threads == [leader.ident]  # run in the leader's thread


def test_hook_gets_error_and_interrupted():
    hook = Recorder()
    group: Group[str, int] = Group(on_flight_end=hook)
    boom = ValueError("boom")

    def fail():
        raise boom

    with pytest.raises(ValueError, match="boom"):
        group.do("e", fail)
    gate = Gate()
    leader = start(group.do, "i", gate)
    assert gate.entered.wait(10)
    follower = start(group.do, "i", gate)
    wait_until(lambda: followers_of(group, "i") == 1, what="a follower")
    gate.fail(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        leader.join()
    with pytest.raises(LeaderInterrupted):
        follower.join()
    error, interrupted = hook.records
    assert (error.key, error.outcome, error.error, error.followers) == ("e", "error", boom, 0)
    assert (interrupted.key, interrupted.outcome, interrupted.followers) == ("i", "interrupted", 1)
    assert isinstance(interrupted.error, LeaderInterrupted)
    assert isinstance(interrupted.error.__cause__, KeyboardInterrupt)


def test_hook_runs_for_submit_do_async_and_the_decorator():
    hook = Recorder()
    group: Group[str, int] = Group(on_flight_end=hook)
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert group.submit(pool, "submitted", int, "3").result(10) == 3
    assert asyncio.run(group.do_async("awaited", int, "4")) == 4

    @singleflight(group=group, key=lambda n: f"decorated:{n}")
    def double(n):
        return 2 * n

    assert double(5) == 10
    # submit's and do_async's hooks run in the worker thread after the callers' futures were completed.
    wait_until(lambda: len(hook.records) == 3, what="3 records")
    keys = [r.key for r in hook.records]
    assert keys[:2] == ["submitted", "awaited"]
    assert keys[2][1] == "decorated:5"  # scoped by the function in a shared group
    assert all(r.outcome == "ok" and r.followers == 0 for r in hook.records)


def test_a_raising_hook_cannot_break_a_flight(caplog):
    def hook(record):
        raise RuntimeError("metrics backend down")

    group: Group[str, str] = Group(on_flight_end=hook)
    gate = Gate()
    leader = start(group.do, "k", gate)
    assert gate.entered.wait(10)
    followers = [start(group.do, "k", gate) for _ in range(2)]
    wait_until(lambda: followers_of(group, "k") == 2, what="2 followers")
    with caplog.at_level(logging.ERROR, logger="singleflight_sync"):
        gate.finish("fine")
        leader.join()
    for t in [leader, *followers]:
        if t is not leader:
            t.join()
        assert t.result == "fine"
    assert not group.in_flight("k")
    assert group.do("k", str.upper, "again") == "AGAIN"  # the key is free
    # One log record per flight: the held one and the "again" one.
    records = [r for r in caplog.records if r.name == "singleflight_sync"]
    assert len(records) == 2
    rec = records[0]
    assert rec.levelno == logging.ERROR
    assert "on_flight_end hook raised for key 'k'" in rec.getMessage()
    assert rec.exc_info is not None
    assert str(rec.exc_info[1]) == "metrics backend down"


def test_a_hook_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match=r"^on_flight_end must be a callable taking a FlightRecord"):
        Group(on_flight_end="print")  # type: ignore[arg-type]


def test_cache_rebuild_flights_are_reported_with_a_readable_key():
    hook = Recorder()
    filler = CacheFiller({}, group=Group(on_flight_end=hook), scope="users")
    filler.fill("user:1", lambda: "Ada")
    (record,) = hook.records
    assert repr(record.key) == "(cache_fill, 'users', 'user:1')"


# -- debug logging ---------------------------------------------------------------------------


def test_debug_logging_of_joins_failures_and_timeouts(caplog):
    group: Group[str, int] = Group()
    caplog.set_level(logging.DEBUG, logger="singleflight_sync")
    gate = Gate()
    leader = start(group.do, "k", gate)
    assert gate.entered.wait(10)
    follower = start(group.do, "k", gate)
    wait_until(lambda: followers_of(group, "k") == 1, what="a follower")
    with pytest.raises(FlightTimeoutError):
        group.call("k", gate, timeout=0.01)
    gate.fail(OSError("disk"))
    for t in (leader, follower):
        with pytest.raises(OSError, match="disk"):
            t.join()
    messages = [r.getMessage() for r in caplog.records if r.name == "singleflight_sync"]
    # logged outside the group's lock, so a handler may use the group itself
    assert messages.count("joined the flight for key 'k'") == 2
    assert "a follower of key 'k' timed out" in messages
    assert "flight for key 'k' failed with OSError('disk') (1 followers)" in messages
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "singleflight_sync")


def test_quiet_at_info(caplog):
    caplog.set_level(logging.INFO, logger="singleflight_sync")
    group: Group[str, int] = Group()
    with pytest.raises(ZeroDivisionError):
        group.do("k", lambda: 1 // 0)
    assert group.do("k", int, "1") == 1
    assert [r for r in caplog.records if r.name == "singleflight_sync"] == []


# -- Prometheus: the README snippets, run -------------------------------------------------------

# README "Observability" snippet 1: text exposition format, no dependency.
_FIELDS = (
    ("calls", "counter", "Calls that joined or led a flight"),
    ("executions", "counter", "Times the function actually ran"),
    ("shared", "counter", "Calls answered by another call's execution"),
    ("errors", "counter", "Executions that raised"),
    ("timeouts", "counter", "Followers that stopped waiting"),
    ("in_flight", "gauge", "Keys running now"),
)


def prometheus_text(groups: dict[str, Group]) -> str:
    """Render the stats of named groups in Prometheus' text exposition format."""
    snapshots = {name: group.stats() for name, group in groups.items()}
    lines = []
    for field, kind, help_text in _FIELDS:
        metric = f"singleflight_{field}" + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        lines += [f'{metric}{{group="{name}"}} {getattr(s, field)}' for name, s in snapshots.items()]
    return "\n".join(lines) + "\n"


def test_prometheus_text():
    prices: Group[str, int] = Group()
    gate = Gate()
    leader = start(prices.do, "BTC", gate)
    assert gate.entered.wait(10)
    follower = start(prices.do, "BTC", gate)
    wait_until(lambda: followers_of(prices, "BTC") == 1, what="a follower")
    mid = prometheus_text({"prices": prices})
    assert 'singleflight_in_flight{group="prices"} 1\n' in mid
    gate.finish(1)
    leader.join()
    follower.join()
    assert prometheus_text({"prices": prices, "idle": Group()}) == (
        "# HELP singleflight_calls_total Calls that joined or led a flight\n"
        "# TYPE singleflight_calls_total counter\n"
        'singleflight_calls_total{group="prices"} 2\n'
        'singleflight_calls_total{group="idle"} 0\n'
        "# HELP singleflight_executions_total Times the function actually ran\n"
        "# TYPE singleflight_executions_total counter\n"
        'singleflight_executions_total{group="prices"} 1\n'
        'singleflight_executions_total{group="idle"} 0\n'
        "# HELP singleflight_shared_total Calls answered by another call's execution\n"
        "# TYPE singleflight_shared_total counter\n"
        'singleflight_shared_total{group="prices"} 1\n'
        'singleflight_shared_total{group="idle"} 0\n'
        "# HELP singleflight_errors_total Executions that raised\n"
        "# TYPE singleflight_errors_total counter\n"
        'singleflight_errors_total{group="prices"} 0\n'
        'singleflight_errors_total{group="idle"} 0\n'
        "# HELP singleflight_timeouts_total Followers that stopped waiting\n"
        "# TYPE singleflight_timeouts_total counter\n"
        'singleflight_timeouts_total{group="prices"} 0\n'
        'singleflight_timeouts_total{group="idle"} 0\n'
        "# HELP singleflight_in_flight Keys running now\n"
        "# TYPE singleflight_in_flight gauge\n"
        'singleflight_in_flight{group="prices"} 0\n'
        'singleflight_in_flight{group="idle"} 0\n'
    )


def test_prometheus_text_parses_with_prometheus_client():
    parser = pytest.importorskip("prometheus_client.parser")  # optional: only checks the format
    group: Group[str, int] = Group()
    group.do("k", int, "1")
    families = {f.name: f for f in parser.text_string_to_metric_families(prometheus_text({"g": group}))}
    assert families["singleflight_calls"].type == "counter"
    assert families["singleflight_calls"].samples[0].value == 1
    assert families["singleflight_in_flight"].type == "gauge"


# README "Observability" snippet 2: a prometheus_client custom collector (optional user code).
class SingleFlightCollector:
    """Expose the stats of named groups to a prometheus_client registry at scrape time."""

    def __init__(self, groups: dict[str, Group]) -> None:
        self.groups = groups

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

        snapshots = {name: group.stats() for name, group in self.groups.items()}
        for field, kind, help_text in _FIELDS:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                f"singleflight_{field}", help_text, labels=["group"]
            )
            for name, s in snapshots.items():
                family.add_metric([name], getattr(s, field))
            yield family


def test_prometheus_client_collector():
    prometheus_client = pytest.importorskip("prometheus_client")  # optional user code
    group: Group[str, int] = Group()
    group.do("k", int, "1")
    registry = prometheus_client.CollectorRegistry()
    registry.register(SingleFlightCollector({"prices": group}))
    assert registry.get_sample_value("singleflight_calls_total", {"group": "prices"}) == 1
    assert registry.get_sample_value("singleflight_in_flight", {"group": "prices"}) == 0
    text = prometheus_client.generate_latest(registry).decode()
    assert 'singleflight_executions_total{group="prices"} 1.0' in text
