"""examples/demo.py runs and shows what the README says it shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo.py"

LINE = re.compile(
    r"^(?P<label>without singleflight|with singleflight|second burst): +(?P<calls>\d+) concurrent calls -> "
    r"(?P<runs>\d+) executions?(?: of get_price)?(?: +\((?P<shared>\d+) callers shared the leader's result\))?; "
    r"(?P<price>every caller got the same price, [0-9.]+|callers got \d+ different)",
    re.MULTILINE,
)


def run_demo() -> str:
    env = dict(os.environ)
    # The README installs the package first; prepend the checkout so the demo
    # also runs from a tree that is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, f"demo exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def test_demo_output() -> None:
    out = run_demo()
    found = {m["label"]: m for m in LINE.finditer(out)}
    assert set(found) == {"without singleflight", "with singleflight", "second burst"}, out

    plain = found["without singleflight"]
    assert (int(plain["calls"]), int(plain["runs"])) == (200, 200), out
    assert plain["price"] == "every caller got the same price, 67250.5", out

    for label in ("with singleflight", "second burst"):
        m = found[label]
        assert int(m["calls"]) == 200, out
        # 200 threads leave one Barrier together and the leader's call takes
        # 100 ms; only a thread scheduled later than that starts a new flight.
        assert 1 <= int(m["runs"]) <= 5, out
        assert m["price"] == "every caller got the same price, 67250.5", out
        assert m["shared"] is not None, out
        assert int(m["shared"]) == 200 - int(m["runs"]), out

    # Not a cache: the second burst executed again.
    again = re.compile(r"^not a cache: the second burst ran get_price again \(\d+ \+ \d+ executions\)", re.MULTILINE)
    assert again.search(out), out
