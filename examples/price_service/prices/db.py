"""The deliberate cost of the volume query, inside SQLite.

``sf_slow_sum(x)`` is an SQL aggregate: it sums ``x`` like ``SUM`` and then
sleeps ``DB_COST_MS`` before handing the result back, once per query (SQLite
calls ``finalize`` once per group). It stands in for a heavy report query and
counts how many times the database really ran one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.db.models import Aggregate, FloatField

_lock = threading.Lock()  # protects _executions
_executions = 0


def executions() -> int:
    """How many slow volume queries SQLite has finished in this process."""
    with _lock:
        return _executions


def reset() -> None:
    global _executions  # noqa: PLW0603  (a process-wide counter is the point)
    with _lock:
        _executions = 0


class _SlowSum:
    def __init__(self) -> None:
        self.total = 0.0

    def step(self, value: float | None) -> None:
        if value is not None:
            self.total += value

    def finalize(self) -> float:
        global _executions  # noqa: PLW0603
        time.sleep(settings.DB_COST_MS / 1000)
        with _lock:
            _executions += 1
        return self.total


def register_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: install ``sf_slow_sum`` on each new SQLite connection."""
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate("sf_slow_sum", 1, _SlowSum)


class SlowSum(Aggregate):
    """``SUM`` that costs ``DB_COST_MS`` per query; usable in ``QuerySet.aggregate()``."""

    function = "sf_slow_sum"
    name = "SlowSum"
    output_field = FloatField()
