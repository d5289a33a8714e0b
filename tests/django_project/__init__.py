"""A minimal Django project used only by the test-suite.

``setup()`` points Django at :mod:`.settings` and loads the apps; the other
modules import Django at module level, so ``conftest.py`` keeps pytest's
``--doctest-modules`` from importing them before Django is configured.
"""

from __future__ import annotations

import os


def setup() -> None:
    """Configure Django with this project's settings, once per process."""
    from django.conf import settings  # noqa: PLC0415 - Django is optional for the rest of the suite

    ours = f"{__name__}.settings"
    if not settings.configured:
        os.environ["DJANGO_SETTINGS_MODULE"] = ours
    import django  # noqa: PLC0415

    django.setup()
    if settings.ROOT_URLCONF != f"{__name__}.urls":
        msg = f"Django was already configured by {settings.SETTINGS_MODULE!r}, not by {ours!r}"
        raise RuntimeError(msg)
