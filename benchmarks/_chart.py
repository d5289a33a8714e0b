"""The PNG chart: overhead and throughput bars, executions against concurrency.

Each full run saves its figures as ``results/latest-<pyver>.json``; the chart
draws one column per interpreter found there (3.11 and 3.13t side by side).
"""

# ruff: noqa: PLC0415 - matplotlib is optional: imported only when a chart is drawn

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

LIB = "#1f77b4"
REF = "#7f7f7f"
PEER = "#ff7f0e"
BASE = "#2ca02c"


def _colour(label: str) -> str:
    if label.startswith("singleflight_sync"):
        return LIB
    if label.startswith("reference"):
        return REF
    if label.startswith(("floor", "plain")):
        return BASE
    return PEER


def save_data(path: Path, header: list[str], data: dict[str, Any]) -> None:
    path.write_text(json.dumps({"header": header, "data": data}, indent=1, default=str) + "\n", encoding="utf-8")


def write_chart(results: Path, out: Path) -> str:
    try:
        import matplotlib as mpl
    except ImportError:
        return "chart: matplotlib is not installed (pip install 'singleflight-sync[bench]'); no chart written"
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("latest-*.json"))]
    runs = [r for r in runs if any(k in r["data"] for k in "ABC")]
    if not runs:
        return "chart: no saved run with benchmark A, B or C; no chart written"
    fig, axes = plt.subplots(3, len(runs), figsize=(9.5 * len(runs), 13), squeeze=False)
    for col, run in enumerate(runs):
        data = run["data"]
        title = run["header"][0].split("(")[0].replace("experimental free-threading build", "").strip()
        if "Py_GIL_DISABLED=1" in run["header"][1]:
            title += " free-threaded"
        for row, key in enumerate("ACB"):
            ax = axes[row, col]
            if key not in data:
                ax.set_axis_off()
                continue
            if key == "A":
                # Keyword-call rows would double the bars; the positional ones stand for each decorator.
                ratios = {k: v for k, v in data["A"]["x_floor"].items() if "keyword" not in k}
                _bars(
                    ax, ratios, "time per call / floor (lower is better)", f"{title}\nA. Uncontended overhead, x floor"
                )
            elif key == "C":
                _bars(
                    ax,
                    data["C"]["x_ref"],
                    "calls/s / reference's (higher is better)",
                    f"{title}\nC. Throughput, 8 threads x 1000 keys, x reference",
                )
            else:
                _executions(ax, data["B"], title)
    fig.suptitle("singleflight_sync benchmarks (2 shared cores; ratios measured in the same run)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return f"wrote {out}"


def _bars(ax: Any, values: dict[str, float], xlabel: str, title: str) -> None:
    labels = list(values)[::-1]
    nums = [values[k] for k in labels]
    ax.barh(labels, nums, color=[_colour(k) for k in labels])
    for y, v in enumerate(nums):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(0, max(nums) * 1.18)


def _executions(ax: Any, data: dict[str, Any], title: str) -> None:
    for name, series in data["series"].items():
        xs = sorted(int(n) for n in series)
        ys = [series[str(x)] if str(x) in series else series[x] for x in xs]
        style = "-o" if name.startswith(("singleflight_sync", "no library")) else "--."
        colour = "#d62728" if name.startswith("no library") else _colour(name)
        ax.plot(xs, ys, style, label=name, color=colour, alpha=0.9, markersize=4)
    ns = [int(n) for n in data["ns"]]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("concurrent identical callers")
    ax.set_ylabel("backend executions")
    ax.set_title(f"{title}\nB. Backend executions against concurrency (fn sleeps 50 ms)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
