"""CacheFiller with cachelib, whose get(key) takes no default: has(key) tells a miss from a stored None."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
from helpers import ExcThread, wait_until

from singleflight_sync import CacheFiller, Group

if TYPE_CHECKING:
    from pathlib import Path

cachelib = pytest.importorskip("cachelib", reason="cachelib is in the integration extra")


def caches(tmp_path: Path) -> list[Any]:
    return [cachelib.SimpleCache(), cachelib.FileSystemCache(str(tmp_path / "fs"))]


@pytest.mark.parametrize("kind", [0, 1], ids=["SimpleCache", "FileSystemCache"])
def test_one_rebuild_for_concurrent_misses_then_hits(tmp_path: Path, kind: int) -> None:
    cache = caches(tmp_path)[kind]
    group: Group[Any, Any] = Group()
    filler = CacheFiller(cache, group=group, ttl=60)
    release = threading.Event()
    builds = []

    def build() -> str:
        builds.append(1)
        release.wait(10)
        return "report"

    threads = [ExcThread(filler.fill, "report:today", build) for _ in range(20)]
    for t in threads:
        t.start()
    wait_until(lambda: group.stats().calls == 20)
    release.set()
    for t in threads:
        t.join(10)
    assert [t.result for t in threads] == ["report"] * 20
    assert len(builds) == 1
    assert cache.get("report:today") == "report"
    assert filler.fill("report:today", build) == "report"
    assert len(builds) == 1


@pytest.mark.parametrize("kind", [0, 1], ids=["SimpleCache", "FileSystemCache"])
def test_a_stored_none_is_a_hit(tmp_path: Path, kind: int) -> None:
    cache = caches(tmp_path)[kind]
    filler = CacheFiller(cache)
    calls = []
    assert filler.fill("nobody", lambda: calls.append(1)) is None
    assert filler.fill("nobody", lambda: calls.append(1)) is None
    assert calls == [1]


def test_a_cache_whose_get_has_no_default_and_no_has_is_refused() -> None:
    class Bare:
        def get(self, key: str) -> Any:
            return None

        def set(self, key: str, value: Any) -> None:
            pass

    with pytest.raises(TypeError, match=r"takes no default.*has\(key\)"):
        CacheFiller(Bare())
