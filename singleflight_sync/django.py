"""Django integration: a cache backend whose ``get_or_set`` rebuilds a missing key once.

Example (``settings.py``)::

    CACHES = {
        "default": {
            "BACKEND": "singleflight_sync.django.SingleFlightCache",
            "LOCATION": "redis://127.0.0.1:6379/1",
            "OPTIONS": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "REFRESH_AFTER": 30,
            },
        }
    }
"""

from __future__ import annotations

from ._django import SingleFlightCache

__all__ = ["SingleFlightCache"]
