"""Shared fixtures for the singleflight_sync test-suite."""

from __future__ import annotations

import gc
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

# These machines are shared and noisy: a wall-clock deadline per example
# would fail a correct test whenever the box is busy. Every test is still
# bounded by pytest-timeout.
settings.register_profile("singleflight", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("singleflight")

# Tests import their helpers as a plain module (tests/ has no __init__.py).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from redis_servers import own_server  # noqa: E402 - after the sys.path set-up above

from singleflight_sync import Group  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def group() -> Group[object, object]:
    return Group()


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Run a test with the cyclic collector off, so only reference counting frees objects.

    A reference cycle then keeps its objects alive, which is what the memory
    tests must see to fail; the collector is restored (and run) afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


@pytest.fixture
def no_stranded_threads() -> Iterator[None]:
    """Fail a test that leaves one of its own threads running (opt in with usefixtures)."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leftover:
        t.join(5.0)
    stranded = [t.name for t in leftover if t.is_alive()]
    assert not stranded, f"threads still running after the test: {stranded}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("SINGLEFLIGHT_REDIS_URL")
    if url:
        yield url
        return
    with own_server("no SINGLEFLIGHT_REDIS_URL and no redis-server binary to start one") as server:
        yield server.url
