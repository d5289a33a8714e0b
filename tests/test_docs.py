"""Every ```python block of the README and of the docs pages runs as a test.

Blocks run in page order, each in a fresh namespace. Blocks that show
configuration or need a framework (```py, ```sh, ```text) are not run.
"""

from __future__ import annotations

import re
import sys
import textwrap
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"```python\n(.*?)^ *```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        where = page.relative_to(ROOT).as_posix()
        for m in _BLOCK.finditer(text):
            # A block inside a list item is indented: run it dedented.
            found.append((f"{where}:{text.count(chr(10), 0, m.start()) + 1}", textwrap.dedent(m.group(1))))
    return found


def test_pages_have_examples() -> None:
    pages = {where.rsplit(":", 1)[0] for where, _ in _blocks()}
    assert "README.md" in pages
    assert len(pages) >= 8


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[where for where, _ in _blocks()])
def test_example_runs(where: str, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real module, so that what the example defines (a dataclass) can find it.
    module = types.ModuleType("doc_" + re.sub(r"\W", "_", where))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, where, "exec"), module.__dict__)
