"""Shared pieces: the environment header, result tables, threads held by a barrier."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._impls import PEER_DISTS, version_of

if TYPE_CHECKING:
    from collections.abc import Callable


def free_threaded_build() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def pyver_tag() -> str:
    """``3.11`` or ``3.13t``: names the results file."""
    major, minor = sys.version_info[:2]
    return f"{major}.{minor}{'t' if free_threaded_build() else ''}"


def core_revision() -> str:
    """The commit the library was measured at, and whether its files had local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "singleflight_sync"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes in singleflight_sync/" if dirty else "")


def environment() -> list[str]:
    build = "free-threaded" if free_threaded_build() else "GIL"
    return [
        f"Python {sys.version.splitlines()[0]}",
        f"build: {build} (Py_GIL_DISABLED={int(free_threaded_build())}, GIL enabled at run time: {gil_enabled()})",
        f"machine: {platform.system()} {platform.machine()}, os.cpu_count()={os.cpu_count()}"
        + (f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""),
        "versions: singleflight-sync "
        + version_of("singleflight-sync")
        + "".join(f", {d} {version_of(d)}" for d in PEER_DISTS),
        f"library at: {core_revision()}",
    ]


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    # Raw figures for the chart, keyed by whatever the benchmark likes.
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def render(self) -> str:
        cells = [[_fmt(c) for c in row] for row in self.rows]
        widths = [len(h) for h in self.headers]
        for row in cells:
            for i, c in enumerate(row):
                widths[i] = max(widths[i], len(c))
        numeric = [all(_is_num(r[i]) for r in self.rows if i < len(r)) for i in range(len(self.headers))]

        def line(row: list[str]) -> str:
            out = []
            for i, c in enumerate(row):
                last = i == len(row) - 1
                if numeric[i]:
                    out.append(c.rjust(widths[i]))
                else:
                    out.append(c if last else c.ljust(widths[i]))
            return "  ".join(out).rstrip()

        text = [self.title, "=" * len(self.title), line(self.headers), line(["-" * w for w in widths])]
        text += [line(r) for r in cells]
        text += self.footer
        return "\n".join(text)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or v in ("n/a", "-", "skipped")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def run_threads(n: int, body: Callable[[int], None], *, timeout: float = 120.0) -> None:
    """Start ``n`` threads running ``body(i)``; re-raise the first error after joining them all."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            body(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            msg = f"a benchmark thread did not finish within {timeout} s"
            raise RuntimeError(msg)
    if errors:
        raise errors[0]


def paired_timings(
    timers: dict[str, Any], baselines: list[str], number: int, rounds: int, best_of: int
) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]]]:
    """Time every ``timeit.Timer`` in rounds, each one next to the baselines.

    For each case in a round, the case and every baseline are timed
    alternately ``best_of`` times and the best of each is kept, so the ratio
    case/baseline compares runs made within a fraction of a second of each
    other. Returns (ns per call per round, {baseline: ratios per round}) per case.
    """
    ns: dict[str, list[float]] = {label: [] for label in timers}
    ratios: dict[str, dict[str, list[float]]] = {label: {b: [] for b in baselines} for label in timers}
    labels = list(timers)
    for label in labels:
        timers[label].timeit(max(1, number // 10))  # warm up
    for r in range(rounds):
        for label in labels if r % 2 == 0 else labels[::-1]:
            group = [label, *[b for b in baselines if b != label]]
            best = dict.fromkeys(group, float("inf"))
            for _ in range(best_of):
                for name in group:
                    best[name] = min(best[name], timers[name].timeit(number))
            ns[label].append(best[label] / number * 1e9)
            for b in baselines:
                ratios[label][b].append(best[label] / best[b])
    return ns, ratios
