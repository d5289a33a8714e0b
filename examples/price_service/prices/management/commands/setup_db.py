"""``manage.py setup_db``: migrate and seed the trades table (idempotent)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from prices.models import Trade

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")


class Command(BaseCommand):
    help = "Create the schema and seed trades for each symbol."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rows", type=int, default=5000, help="trades per symbol (default 5000)")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        rows = options["rows"]
        if Trade.objects.exists():
            self.stdout.write(f"already seeded: {Trade.objects.count()} trades")
            return
        rng = random.Random(42)
        start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        with transaction.atomic():
            for symbol in SYMBOLS:
                base = 100 + rng.random() * 60_000
                Trade.objects.bulk_create(
                    Trade(
                        symbol=symbol,
                        price=base * (1 + rng.uniform(-0.02, 0.02)),
                        qty=rng.uniform(0.001, 5),
                        executed_at=start + dt.timedelta(seconds=i),
                    )
                    for i in range(rows)
                )
        self.stdout.write(f"seeded {rows * len(SYMBOLS)} trades")
