"""One table of trades, seeded by ``manage.py setup_db``."""

from __future__ import annotations

from django.db import models


class Trade(models.Model):
    symbol = models.CharField(max_length=20, db_index=True)
    price = models.FloatField()
    qty = models.FloatField()
    executed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.symbol} {self.qty}@{self.price}"
