"""WSGI entry point for ``gunicorn`` and ``waitress-serve``: ``price_service.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "price_service.settings")

application = get_wsgi_application()

# Each worker process loads this module after gunicorn forked it (no
# --preload): build the worker's RedisGroup now, not inside the first burst.
from prices import services  # noqa: E402 - needs the settings above

services.shared_fetch()
