"""Settings of the test project: LocMem cache, a SQLite file in the temp dir, no middleware."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_package = __name__.rpartition(".")[0]

SECRET_KEY = "singleflight-sync-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
ROOT_URLCONF = f"{_package}.urls"
INSTALLED_APPS = [_package]
MIDDLEWARE: list[str] = []
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# A file, not ":memory:": each thread has its own connection, and Django
# never closes an in-memory one, which Python 3.13+ reports as a
# ResourceWarning (an error under filterwarnings=error) when a thread ends.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SINGLEFLIGHT_DJANGO_DB")
        or str(Path(tempfile.gettempdir()) / f"singleflight-sync-tests-{os.getpid()}.sqlite3"),
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "singleflight-sync-tests",
    }
}
