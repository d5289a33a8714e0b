"""OpenTelemetry instrumentation: one span per flight, links from its followers, and metrics.

Enabled by :func:`instrument`, which rebinds a few of :class:`Group`'s
internal methods (the way OpenTelemetry's instrumentations patch the
libraries they trace) and :func:`uninstrument` puts them back. Nothing here
runs, and nothing is imported, until then: the uninstrumented ``do()`` is
the very same code. While instrumented, every call goes through
``Group``'s structured path (``_enter``, ``_lead``, ``_follow``, ``_land``)
instead of the inlined fast one, so that each step can be observed.

A flight's span is started in the leader's context, so it sits in the
leader's trace, and the function runs with it as the current span. Each
follower that waits in a thread gets a ``singleflight.wait`` span with a link
to the flight's span; a follower that joins through ``submit()`` or
``do_async()`` adds the link to its current span. The span of a flight lives
on the flight object itself, written once by the leader's thread. With a
RedisGroup, the leader's span context travels with the flight's outcome as a
W3C ``traceparent``, and a follower's flight in another process links to it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._errors import FlightTimeoutError
from ._group import Group, _outcome_of
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from ._group import _Flight

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_SCOPE = "singleflight_sync"

# _state_lock protects _saved and _active (instrument/uninstrument may race).
_state_lock = threading.Lock()
_saved: dict[str, Any] = {}
_active: _Instrumentation | None = None


def _hashed_label(key: Any) -> str:
    """The default key label: a short hash of ``repr(key)``, never the key itself."""
    try:
        text = repr(key)
    except Exception:  # a broken __repr__ must not break a traced flight
        return "unrepresentable"
    return hashlib.blake2b(text.encode("utf-8", "backslashreplace"), digest_size=8).hexdigest()


class _Instrumentation:
    """The tracer, the instruments and the key label of one :func:`instrument` call."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        key_label: Callable[[Any], str],
    ) -> None:
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider)
        self.key_label = key_label
        self.calls = meter.create_counter("singleflight.calls", "{call}", "Calls that joined or led a flight")
        self.executions = meter.create_counter("singleflight.executions", "{call}", "Times the function actually ran")
        self.shared = meter.create_counter(
            "singleflight.shared", "{call}", "Calls answered by another call's execution"
        )
        self.errors = meter.create_counter("singleflight.errors", "{flight}", "Executions that raised")
        self.timeouts = meter.create_counter("singleflight.timeouts", "{call}", "Followers that stopped waiting")
        self.in_flight = meter.create_up_down_counter("singleflight.in_flight", "{flight}", "Flights running now")
        self.flight_duration = meter.create_histogram(
            "singleflight.flight.duration", "s", "How long each flight ran, from its start to its landing"
        )
        self.wait_duration = meter.create_histogram(
            "singleflight.wait.duration", "s", "How long each follower waited for a flight"
        )

    def label(self, key: Any) -> str:
        try:
            return str(self.key_label(key))
        except Exception:  # a user's label function must not break a traced flight
            return "unlabelled"

    def start_flight(self, group: Group[Any, Any], flight: _Flight) -> None:
        """Open the flight's span in the current (the leader's) context."""
        span = self.tracer.start_span(
            "singleflight.flight",
            kind=SpanKind.INTERNAL,
            attributes={"singleflight.key": self.label(flight.key), "singleflight.group": type(group).__name__},
        )
        flight._otel = (span, time.perf_counter())  # type: ignore[attr-defined]
        self.in_flight.add(1)

    def end_flight(self, flight: _Flight, error: BaseException | None) -> None:
        # Kept on the flight (not popped): a follower that wakes after the
        # landing still reads it for its link. A flight lands exactly once.
        opened = flight.__dict__.get("_otel")
        if opened is None:
            return  # started before instrument() was called
        span, started = opened
        duration = time.perf_counter() - started
        outcome = _outcome_of(error)
        followers = flight.followers
        span.set_attribute("singleflight.followers", followers)
        span.set_attribute("singleflight.outcome", outcome)
        span.set_attribute("singleflight.duration", duration)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self.errors.add(1)
        span.end()
        self.in_flight.add(-1)
        self.calls.add(1)
        self.executions.add(1)
        self.flight_duration.record(duration, {"singleflight.outcome": outcome})

    def link_to(self, flight: _Flight) -> Link | None:
        opened = flight.__dict__.get("_otel")
        if opened is None:
            return None
        return Link(opened[0].get_span_context(), {"singleflight.role": "follower"})


def _traced(ins: _Instrumentation) -> dict[str, Any]:
    """The replacements for Group's methods, closed over one instrumentation."""
    original: dict[str, Any] = dict(vars(Group))
    enter, lead, follow = original["_enter"], original["_lead"], original["_follow"]
    land = original["_land"]
    handle: Callable[..., Future[Any]] = original["_handle"]
    tracer = ins.tracer

    def _enter(self: Group[Any, Any], key: Any, me: int) -> tuple[_Flight, bool]:
        flight, leader = enter(self, key, me)
        if leader:
            ins.start_flight(self, flight)
        return flight, leader

    def _lead(self: Group[Any, Any], flight: _Flight, fn: Any, args: Any, kwargs: Any) -> Any:
        opened = flight.__dict__.get("_otel")
        if opened is None:
            return lead(self, flight, fn, args, kwargs)
        # The work runs with the flight's span as the current one, so its own
        # spans (the HTTP call, the query) are children of the flight.
        with trace.use_span(opened[0], end_on_exit=False, record_exception=False, set_status_on_exception=False):
            return lead(self, flight, fn, args, kwargs)

    def _land(self: Group[Any, Any], flight: _Flight, value: Any, error: BaseException | None) -> None:
        try:
            land(self, flight, value, error)
        finally:
            ins.end_flight(flight, error)

    def _follow(self: Group[Any, Any], flight: _Flight, me: int, timeout: float | None) -> Any:
        started = time.perf_counter()
        span = tracer.start_span("singleflight.wait", attributes={"singleflight.key": ins.label(flight.key)})
        outcome = "shared"
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                return follow(self, flight, me, timeout)
        except FlightTimeoutError:
            outcome = "timeout"
            raise
        except Exception:
            outcome = "shared"  # the leader's exception, shared
            raise
        except BaseException:
            outcome = "abandoned"
            raise
        finally:
            # Read at the end: the leader opens its span just after it took
            # the key, which a follower can beat by a few microseconds.
            link = ins.link_to(flight)
            if link is not None:
                span.add_link(link.context, link.attributes)
            span.set_attribute("singleflight.outcome", outcome)
            span.end()
            ins.calls.add(1)
            if outcome == "shared":
                ins.shared.add(1)
            elif outcome == "timeout":
                ins.timeouts.add(1)
            ins.wait_duration.record(time.perf_counter() - started, {"singleflight.outcome": outcome})

    def _handle(  # noqa: PLR0913, PLR0917 - Group._handle's own signature
        self: Group[Any, Any],
        key: Any,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        start: Callable[..., object],
    ) -> Future[Any]:
        def traced_start(run: Callable[..., object], job: list[Any]) -> object:
            # Called only when this handle leads: open the span here, in the
            # submitter's context, before the executor can pick the job up.
            ins.start_flight(self, job[0])
            return start(run, job)

        return handle(self, key, fn, args, kwargs, traced_start)

    def _join_hook(self: Group[Any, Any], flight: _Flight, joined: Future[Any]) -> None:
        # A submit() or do_async() caller joined: link its current span.
        current = trace.get_current_span()
        link = ins.link_to(flight)
        if link is not None and current.is_recording():
            current.add_link(link.context, link.attributes)
        ins.calls.add(1)
        joined.add_done_callback(_count_handle)

    def _count_handle(joined: Future[Any]) -> None:
        if joined.cancelled():
            return
        error = joined.exception()
        if isinstance(error, FlightTimeoutError):
            ins.timeouts.add(1)
        else:
            ins.shared.add(1)

    propagator = TraceContextTextMapPropagator()

    def trace_out() -> str | None:
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        return carrier.get("traceparent")

    def trace_in(traceparent: str) -> None:
        # A follower in this process got an outcome from a leader in
        # another: link the current span (its flight's) to the leader's.
        context = trace.get_current_span(propagator.extract({"traceparent": traceparent})).get_span_context()
        current = trace.get_current_span()
        if context.is_valid and current.is_recording():
            current.add_link(context, {"singleflight.role": "remote follower"})

    return {
        "_trace_hooks": (trace_out, trace_in),
        "do": original["_do_generic"],
        "_enter": _enter,
        "_lead": _lead,
        "_follow": _follow,
        "_land": _land,
        "_handle": _handle,
        "_join_hook": _join_hook,
    }


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    key_label: Callable[[Any], str] | None = None,
) -> None:
    """Trace every flight of every group, and count them, with OpenTelemetry.

    Args:
        tracer_provider: where spans go; the global one by default.
        meter_provider: where metrics go; the global one by default.
        key_label: turns a key into the ``singleflight.key`` attribute. By
            default a short hash of ``repr(key)``: keys may hold personal
            data, so the raw key is never recorded unless you say so.

    Raises:
        RuntimeError: already instrumented (call :func:`uninstrument` first).

    Example::

        from singleflight_sync import otel

        otel.instrument(key_label=lambda key: f"price:{key[0]}")
    """
    global _active  # noqa: PLW0603 - one instrumentation per process, as OpenTelemetry's own
    given: object = key_label
    if given is not None and not callable(given):
        msg = f"key_label must be a callable taking a key and returning a str, got {type(key_label).__name__}"
        raise TypeError(msg)
    ins = _Instrumentation(tracer_provider, meter_provider, key_label or _hashed_label)
    with _state_lock:
        if _active is not None:
            msg = "singleflight_sync is already instrumented; call otel.uninstrument() first"
            raise RuntimeError(msg)
        for name, replacement in _traced(ins).items():
            _saved[name] = Group.__dict__[name]
            setattr(Group, name, replacement)
        _active = ins


def uninstrument() -> None:
    """Put Group's own methods back; flights that are running finish untraced."""
    global _active  # noqa: PLW0603
    with _state_lock:
        for name, original in _saved.items():
            setattr(Group, name, original)
        _saved.clear()
        _active = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    with _state_lock:
        return _active is not None
