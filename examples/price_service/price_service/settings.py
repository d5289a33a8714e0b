"""Settings of the price service: one app, SQLite, no sessions, no admin.

Environment:

- ``PRICE_SERVICE_EXCHANGE_URL``: base URL of the exchange (default ``http://127.0.0.1:8001``).
- ``PRICE_SERVICE_DB``: path of the SQLite file (default ``price_service.sqlite3`` in the system temp dir).
- ``PRICE_SERVICE_DB_COST_MS``: milliseconds the volume query spends in SQLite (default 100).
- ``PRICE_SERVICE_SINGLEFLIGHT``: ``0`` makes ``/price/`` and ``/volume/`` skip singleflight
  (``/price-raw/`` and ``/volume-raw/`` always do).
- ``PRICE_SERVICE_REDIS_URL``: a Redis for ``/price-redis/``, whose flights every
  worker process shares through a ``RedisGroup`` (unset: that endpoint answers 503).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SECRET_KEY = "price-service-example-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["prices"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "price_service.urls"
WSGI_APPLICATION = "price_service.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PRICE_SERVICE_DB", str(Path(tempfile.gettempdir()) / "price_service.sqlite3")),
        # Readers wait for a writer instead of failing at once with "database is locked".
        "OPTIONS": {"timeout": 20},
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

EXCHANGE_URL = os.environ.get("PRICE_SERVICE_EXCHANGE_URL", "http://127.0.0.1:8001").rstrip("/")
EXCHANGE_TIMEOUT = 10.0
DB_COST_MS = int(os.environ.get("PRICE_SERVICE_DB_COST_MS", "100"))
SINGLEFLIGHT = os.environ.get("PRICE_SERVICE_SINGLEFLIGHT", "1") != "0"
REDIS_URL = os.environ.get("PRICE_SERVICE_REDIS_URL", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
