"""Keep pytest from importing the Django modules before ``setup()`` has run."""

from __future__ import annotations

collect_ignore = ["settings.py", "urls.py", "views.py", "models.py"]
