"""Trace and count flights with OpenTelemetry: :func:`instrument`.

Needs the OpenTelemetry API (``pip install 'singleflight-sync[otel]'``);
``import singleflight_sync`` never imports it, and until :func:`instrument`
is called nothing of this module runs on any call.

Example::

    from singleflight_sync import otel

    otel.instrument()          # every group's flights, in the global tracer and meter providers
    ...
    otel.uninstrument()
"""

from __future__ import annotations

try:
    import opentelemetry as _otel_api  # noqa: F401  # pyright: ignore[reportUnusedImport] - fail here, with the install command
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "singleflight_sync.otel needs the OpenTelemetry API: pip install 'singleflight-sync[otel]'"
    raise ImportError(msg) from exc

from ._otel import instrument, is_instrumented, uninstrument

__all__ = ["instrument", "is_instrumented", "uninstrument"]
