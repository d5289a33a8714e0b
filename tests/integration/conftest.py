"""Fixtures for the integration tests: the price service example under real WSGI servers.

The example lives in ``examples/price_service``; its ``harness`` starts the
fake exchange (in this process), seeds SQLite and runs gunicorn or waitress
as subprocesses bound to 127.0.0.1, stopped by pid at teardown.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "price_service"
if str(EXAMPLE_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_DIR))

import exchange as exchange_mod  # noqa: E402  (lives in the example, found through the path set above)
import harness  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def exchange() -> Iterator[exchange_mod.Exchange]:
    server = exchange_mod.start_exchange(latency=0.1)
    try:
        yield server
    finally:
        exchange_mod.stop_exchange(server)


@pytest.fixture(scope="module")
def price_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db_path = tmp_path_factory.mktemp("price_db") / "prices.sqlite3"
    harness.setup_db(db_path, rows=2000)
    return db_path


@pytest.fixture
def fresh_exchange(exchange: exchange_mod.Exchange) -> exchange_mod.Exchange:
    """The module's exchange, with zeroed counters and the default latency and no rate limit."""
    with exchange.lock:
        exchange.latency = 0.1
        exchange.rate_limit = 0
    exchange.reset()
    return exchange
