"""OpenTelemetry across processes: a follower's flight in another process links to the leader's span."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is in the integration extra")
redis = pytest.importorskip("redis")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402 - after the skips
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from singleflight_sync import otel  # noqa: E402
from singleflight_sync.redis import RedisGroup  # noqa: E402

LEADER = r"""
import json, sys, time
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from singleflight_sync import otel
from singleflight_sync.redis import RedisGroup

url, ns = sys.argv[1], sys.argv[2]
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
otel.instrument(tracer_provider=provider)
client = redis.Redis.from_url(url)

def work():
    print("started", flush=True)
    deadline = time.monotonic() + 30
    while client.get(ns + ":go") is None and time.monotonic() < deadline:
        time.sleep(0.005)  # waiting for the test's signal through Redis, in another process
    return 7

with RedisGroup(url, namespace=ns) as group:
    assert group.do("k", work) == 7
(flight,) = [s for s in spans.get_finished_spans() if s.name == "singleflight.flight"]
print(json.dumps({"trace_id": flight.context.trace_id, "span_id": flight.context.span_id}), flush=True)
"""


def test_a_follower_in_another_process_links_to_the_leaders_span(redis_url: str, ns: str, client: Any) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, redis_url, ns], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    otel.instrument(tracer_provider=provider)
    try:
        assert leader.stdout is not None
        assert leader.stdout.readline().strip() == "started"
        with RedisGroup(redis_url, namespace=ns) as group:
            got: list[Any] = []
            follower = threading.Thread(target=lambda: got.append(group.do("k", lambda: "ran here")))
            follower.start()
            deadline = time.monotonic() + 15
            while group._remote_waits != 1:
                assert time.monotonic() < deadline, "the follower never waited on the leader's flight"
                time.sleep(0.002)
            client.set(f"{ns}:go", "1")
            follower.join(15)
            assert got == [7]
        remote = json.loads(leader.stdout.readline())
        assert leader.wait(15) == 0
    finally:
        otel.uninstrument()
        if leader.poll() is None:
            leader.kill()
            leader.wait(10)
        for stream in (leader.stdout, leader.stderr):
            if stream is not None:
                stream.close()
    (flight,) = [s for s in spans.get_finished_spans() if s.name == "singleflight.flight"]
    links = [(link.context.trace_id, link.context.span_id) for link in flight.links]
    assert links == [(remote["trace_id"], remote["span_id"])]
    assert dict(flight.links[0].attributes or {}) == {"singleflight.role": "remote follower"}


def test_a_traced_error_lingers_only_with_linger_errors(make_group: Any) -> None:
    """The traceparent header in front of a traced outcome does not hide that the outcome is an error."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    otel.instrument(tracer_provider=provider)
    try:
        a, b = make_group(linger=30), make_group(linger=30)

        def boom() -> None:
            raise ValueError("once")

        with pytest.raises(ValueError, match="once"):
            a.do("e", boom)
        assert b.do("e", lambda: "ran again") == "ran again"  # an error lingers only with linger_errors=True
        assert a.do("v", lambda: 5) == 5
        assert b.do("v", lambda: pytest.fail("ran again although the value lingers")) == 5
    finally:
        otel.uninstrument()
