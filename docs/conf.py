"""Sphinx configuration for the singleflight_sync documentation.

Built offline: intersphinx is off (no network in CI), so references to the
standard library and to redis-py are plain text, listed in nitpick_ignore.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from singleflight_sync import __version__  # noqa: E402 - after the path is set

project = "singleflight_sync"
author = "singleflight_sync developers"
copyright = "2026, singleflight_sync developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

nitpicky = True
# Types from outside this project, and the type variables of its generics:
# without intersphinx (offline builds) they cannot be linked.
nitpick_ignore_regex = [
    (
        "py:class",
        r"(builtins\.)?(int|float|str|bytes|bool|object|type|tuple|list|dict|set|None|BaseException|Exception|TypeError|ValueError|RuntimeError|TimeoutError|NoneType)",
    ),
    (
        "py:class",
        r"(typing|collections\.abc|typing_extensions|concurrent\.futures|asyncio|threading|logging|contextvars|datetime|decimal|uuid|enum|types)\..*",
    ),
    (
        "py:class",
        r"(Any|Callable|Hashable|Iterable|Iterator|Mapping|Awaitable|Coroutine|Executor|Future|Self|NamedTuple|Protocol|ParamSpec|TypeVar|Generic)",
    ),
    ("py:(class|obj)", r"(singleflight_sync\._\w+\.)?(K|V|P|R|T|P\.args|P\.kwargs)"),
    ("py:class", r"AbstractContextManager"),
    ("py:class", r"(redis|django|prometheus_client|opentelemetry|trace|metrics)\..*"),
    (
        "py:(obj|data|exc|func|meth|attr)",
        r"(typing|collections|concurrent|asyncio|threading|redis|django|os|functools)\..*",
    ),
]

html_theme = "furo"
html_title = f"singleflight_sync {release}"
html_static_path = ["_static"]


# Docstrings name the public API by its short name (:class:`Group` inside the
# Redis layer, :attr:`group` inside a class): resolve such a name against the
# public modules when Sphinx cannot find it where it was written.
_PUBLIC_PREFIXES = ("singleflight_sync.", "singleflight_sync.redis.", "singleflight_sync.SingleFlightFunction.")


def _resolve_public(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    domain = env.get_domain("py")
    for prefix in _PUBLIC_PREFIXES:
        if prefix + target in domain.objects:
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], prefix + target, node, contnode
            )
    return None


def setup(app):
    app.connect("missing-reference", _resolve_public)
