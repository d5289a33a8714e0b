"""singleflight_sync.otel with the OpenTelemetry SDK's in-memory exporters, real threads and pools."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is in the integration extra")

from helpers import ExcThread, wait_until
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from singleflight_sync import FlightTimeoutError, Group, otel, singleflight
from singleflight_sync._group import Group as CoreGroup

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace import ReadableSpan


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def metric(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """Points of one metric: attributes -> value (sums) or count (histograms)."""
        data = self.reader.get_metrics_data()
        out: dict[tuple[tuple[str, Any], ...], Any] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        for p in m.data.data_points:
                            attrs = tuple(sorted((p.attributes or {}).items()))
                            out[attrs] = getattr(p, "value", None) if hasattr(p, "value") else p.count
        return out

    def total(self, name: str) -> Any:
        return sum(self.metric(name).values())


@pytest.fixture
def tel() -> Iterator[Otel]:
    t = Otel()
    otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    try:
        yield t
    finally:
        otel.uninstrument()
        t.tracer_provider.shutdown()
        t.meter_provider.shutdown()


def _three_caller_flight(tel: Otel, group: Group[Any, Any], key: Any, work: Any) -> list[Any]:
    """A leader (in span request-0) and two followers (request-1, request-2), held with an Event."""
    release = threading.Event()
    results: list[Any] = [None] * 3

    def fn() -> Any:
        release.wait(10)
        return work()

    def caller(i: int) -> None:
        with tel.tracer.start_as_current_span(f"request-{i}"):
            try:
                results[i] = group.do(key, fn)
            except Exception as exc:
                results[i] = exc

    threads = [ExcThread(caller, 0)]
    threads[0].start()
    wait_until(lambda: group.in_flight(key))
    threads += [ExcThread(caller, i) for i in (1, 2)]
    for t in threads[1:]:
        t.start()
    wait_until(lambda: group.stats().calls == 3)
    release.set()
    for t in threads:
        t.join(10)
    return results


def test_a_three_caller_flight_is_one_span_in_the_leaders_trace_linked_from_each_follower(tel: Otel) -> None:
    group: Group[str, int] = Group()
    results = _three_caller_flight(tel, group, "user:42", lambda: 7)
    assert results == [7, 7, 7]

    (flight,) = tel.named("singleflight.flight")
    (leader_request,) = tel.named("request-0")
    assert flight.parent is not None
    assert flight.parent.span_id == leader_request.context.span_id
    assert flight.context.trace_id == leader_request.context.trace_id
    attrs = dict(flight.attributes or {})
    assert attrs["singleflight.followers"] == 2
    assert attrs["singleflight.outcome"] == "ok"
    assert attrs["singleflight.duration"] > 0
    assert "user:42" not in str(attrs), "the raw key must never be recorded by default"
    assert len(attrs["singleflight.key"]) == 16

    waits = tel.named("singleflight.wait")
    assert len(waits) == 2
    follower_requests = {s.context.span_id for s in tel.named("request-1") + tel.named("request-2")}
    for wait in waits:
        assert wait.parent is not None
        assert wait.parent.span_id in follower_requests
        assert [link.context.span_id for link in wait.links] == [flight.context.span_id]
        assert dict(wait.attributes or {})["singleflight.outcome"] == "shared"


def test_the_works_own_spans_are_children_of_the_flight(tel: Otel) -> None:
    group: Group[str, int] = Group()

    def work() -> int:
        with tel.tracer.start_as_current_span("SELECT price"):
            return 1

    assert group.do("k", work) == 1
    (flight,) = tel.named("singleflight.flight")
    (query,) = tel.named("SELECT price")
    assert query.parent is not None
    assert query.parent.span_id == flight.context.span_id


def test_metrics_add_up_to_stats(tel: Otel) -> None:
    group: Group[str, int] = Group()
    _three_caller_flight(tel, group, "k", lambda: 1)
    s = group.stats()
    assert (s.calls, s.executions, s.shared) == (3, 1, 2)
    assert tel.total("singleflight.calls") == 3
    assert tel.total("singleflight.executions") == 1
    assert tel.total("singleflight.shared") == 2
    assert tel.total("singleflight.errors") == 0
    assert tel.total("singleflight.in_flight") == 0
    assert tel.total("singleflight.flight.duration") == 1
    assert tel.total("singleflight.wait.duration") == 2


def test_a_failed_flight_is_an_error_span_shared_by_its_followers(tel: Otel) -> None:
    group: Group[str, int] = Group()

    def boom() -> int:
        raise ValueError("upstream 500")

    results = _three_caller_flight(tel, group, "k", boom)
    assert [type(r) for r in results] == [ValueError] * 3
    (flight,) = tel.named("singleflight.flight")
    assert flight.status.status_code is StatusCode.ERROR
    assert dict(flight.attributes or {})["singleflight.outcome"] == "error"
    assert [e.name for e in flight.events] == ["exception"]
    assert tel.total("singleflight.errors") == 1
    assert tel.total("singleflight.shared") == 2


def test_a_follower_that_times_out_is_counted_as_a_timeout(tel: Otel) -> None:
    group: Group[str, int] = Group()
    release = threading.Event()
    leader = ExcThread(group.do, "k", lambda: release.wait(10) and 1)
    leader.start()
    wait_until(lambda: group.in_flight("k"))
    with pytest.raises(FlightTimeoutError):
        group.call("k", int, timeout=0.01)
    release.set()
    leader.join(10)
    (wait,) = tel.named("singleflight.wait")
    assert dict(wait.attributes or {})["singleflight.outcome"] == "timeout"
    assert tel.total("singleflight.timeouts") == 1
    assert tel.total("singleflight.shared") == 0


def test_submit_and_do_async_followers_link_their_current_span(tel: Otel) -> None:
    group: Group[str, int] = Group()
    release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        with tel.tracer.start_as_current_span("request-submit-leader"):
            first = group.submit(pool, "k", lambda: release.wait(10) and 5)
        wait_until(lambda: group.in_flight("k"))
        with tel.tracer.start_as_current_span("request-submit-follower"):
            second = group.submit(pool, "k", int)

        async def follower() -> int:
            with tel.tracer.start_as_current_span("request-async-follower"):
                task = asyncio.ensure_future(group.do_async("k", int))
                await asyncio.sleep(0)  # let the task join before the flight is released
                release.set()
                return await task

        assert asyncio.run(follower()) == 5
        assert first.result(10) == second.result(10) == 5
    (flight,) = tel.named("singleflight.flight")
    (leader,) = tel.named("request-submit-leader")
    assert flight.parent is not None
    assert flight.parent.span_id == leader.context.span_id
    for name in ("request-submit-follower", "request-async-follower"):
        (span,) = tel.named(name)
        assert [link.context.span_id for link in span.links] == [flight.context.span_id], name
    assert tel.total("singleflight.calls") == 3
    assert tel.total("singleflight.shared") == 2


def test_the_decorator_is_traced_and_a_key_label_can_be_given() -> None:
    t = Otel()
    otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider, key_label=lambda k: "price")
    try:

        @singleflight
        def price(symbol: str) -> float:
            return 1.0

        assert price("BTC") == 1.0
    finally:
        otel.uninstrument()
    (flight,) = t.named("singleflight.flight")
    assert dict(flight.attributes or {})["singleflight.key"] == "price"


def test_uninstrument_puts_the_fast_path_back() -> None:
    original = {name: CoreGroup.__dict__[name] for name in ("do", "_enter", "_lead", "_follow", "_land", "_handle")}
    t = Otel()
    otel.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    assert otel.is_instrumented()
    assert CoreGroup.__dict__["do"] is not original["do"]
    otel.uninstrument()
    assert not otel.is_instrumented()
    assert {name: CoreGroup.__dict__[name] for name in original} == original
    assert CoreGroup._join_hook is None
    assert CoreGroup._trace_hooks is None
    Group().do("k", int)
    assert t.named("singleflight.flight") == []


def test_bad_use_is_a_clear_error(tel: Otel) -> None:
    with pytest.raises(RuntimeError, match="already instrumented"):
        otel.instrument()
    otel.uninstrument()
    with pytest.raises(TypeError, match="key_label must be a callable"):
        otel.instrument(key_label="user")  # type: ignore[arg-type]
    otel.instrument(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)


def test_the_core_never_imports_opentelemetry() -> None:
    code = "import sys, singleflight_sync; assert 'opentelemetry' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    # redis-py imports OpenTelemetry itself when it is installed; our module still stays out.
    code = "import sys, singleflight_sync.redis; assert 'singleflight_sync._otel' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
