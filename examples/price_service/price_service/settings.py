"""Settings of the price service: one app, SQLite, no sessions, no admin.

Environment:

- ``PRICE_SERVICE_EXCHANGE_URL``: base URL of the exchange (default ``http://127.0.0.1:8001``).
- ``PRICE_SERVICE_DB``: path of the SQLite file (default ``price_service.sqlite3`` in the system temp dir).
- ``PRICE_SERVICE_DB_COST_MS``: milliseconds the volume query spends in SQLite (default 100).
- ``PRICE_SERVICE_SINGLEFLIGHT``: ``0`` makes ``/price/`` and ``/volume/`` skip singleflight
  (``/price-raw/`` and ``/volume-raw/`` always do).
- ``PRICE_SERVICE_REDIS_URL``: a Redis for ``/price-redis/``, whose flights every
  worker process shares through a ``RedisGroup``, and for the two cached endpoints
  (unset: those three answer 503):

  - ``/price-swr/``: the cache alias ``"swr"``, a ``SingleFlightCache`` around Django's
    ``RedisCache`` with ``REFRESH_AFTER`` and ``REDIS``: a quote older than
    ``PRICE_REFRESH_AFTER`` seconds is served at once while one background refresh,
    shared by every worker process, replaces it (stale-while-revalidate).
  - ``/price-cached/``: the alias ``"blocking"``, the same wrapper without either
    option: a missing quote is rebuilt once per worker process, and requests wait for it.

- ``PRICE_SERVICE_CACHE_PREFIX``: the start of both aliases' ``KEY_PREFIX`` (default
  ``price-service``); tests give each run its own, so that runs sharing a Redis never
  read each other's quotes.
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
CACHE_PREFIX = os.environ.get("PRICE_SERVICE_CACHE_PREFIX", "price-service")

# The cached quotes: kept PRICE_CACHE_TIMEOUT seconds; past PRICE_REFRESH_AFTER
# seconds "swr" serves a quote stale while one refresh runs, and for
# PRICE_STALE_IF_ERROR seconds past the timeout it serves the last good quote
# when the exchange fails. "blocking" only rebuilds a missing quote once per process.
PRICE_CACHE_TIMEOUT = 60
PRICE_REFRESH_AFTER = 10
PRICE_STALE_IF_ERROR = 30

CACHES: dict[str, dict[str, object]] = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REDIS_URL:
    CACHES["swr"] = {
        "BACKEND": "singleflight_sync.django.SingleFlightCache",
        "LOCATION": REDIS_URL,
        "TIMEOUT": PRICE_CACHE_TIMEOUT,
        "KEY_PREFIX": f"{CACHE_PREFIX}:swr",
        "OPTIONS": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "REFRESH_AFTER": PRICE_REFRESH_AFTER,
            "STALE_IF_ERROR": PRICE_STALE_IF_ERROR,
            "REDIS": REDIS_URL,  # one rebuild or refresh at a time across every worker process
            "NAMESPACE": "price-service-cache",
        },
    }
    CACHES["blocking"] = {
        "BACKEND": "singleflight_sync.django.SingleFlightCache",
        "LOCATION": REDIS_URL,
        "TIMEOUT": PRICE_CACHE_TIMEOUT,
        "KEY_PREFIX": f"{CACHE_PREFIX}:blocking",
        # No REFRESH_AFTER: a caller waits for a missing quote. No REDIS: one rebuild per process.
        "OPTIONS": {"BACKEND": "django.core.cache.backends.redis.RedisCache"},
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
