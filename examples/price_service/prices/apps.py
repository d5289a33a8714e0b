"""App config: registers the SQLite cost function on every new connection."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created

from . import db


class PricesConfig(AppConfig):
    name = "prices"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        connection_created.connect(db.register_functions)
