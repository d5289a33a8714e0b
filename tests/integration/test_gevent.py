"""gunicorn's gevent worker: every request is a greenlet, and @singleflight still makes one call.

gevent has no free-threaded build, and importing it turns the GIL back on,
so these tests skip on a free-threaded interpreter (and say so), and .ci/run
installs gevent only for the interpreters with a GIL.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import threading
from typing import TYPE_CHECKING

import harness
import pytest
from helpers import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from exchange import Exchange

if sysconfig.get_config_var("Py_GIL_DISABLED"):
    pytest.skip("gevent has no free-threaded build (importing it would turn the GIL on)", allow_module_level=True)
pytest.importorskip("gevent", reason="gevent is in the integration extra, for interpreters with a GIL")
pytest.importorskip("django", reason="needs the integration extra (Django, gunicorn)")

N = 200
SYMBOL = "BTCUSDT"
pytestmark = pytest.mark.timeout(120)


def _held_burst(
    app: harness.AppServer, exchange: Exchange, path: str, *, in_view: Callable[[], bool]
) -> harness.BurstResult:
    """Fire N requests while the exchange holds every price request; open it once ``in_view`` are counted."""
    gate = threading.Event()
    with exchange.lock:
        exchange.gate = gate
    result: list[harness.BurstResult] = []
    burst = threading.Thread(target=lambda: result.append(harness.burst(f"{app.url}{path}", N, timeout=60)))
    burst.start()
    try:
        wait_until(in_view, timeout=60, what=f"the burst's requests in the view ({path})")
    finally:
        gate.set()
        burst.join(90)
        with exchange.lock:
            exchange.gate = None
    (res,) = result
    assert res.statuses == {200: N}, res.statuses
    return res


def test_one_gevent_worker_makes_one_upstream_call_for_200_requests(
    fresh_exchange: Exchange, price_db: Path, tmp_path: Path
) -> None:
    with harness.start_app_server(
        "gunicorn-gevent", workdir=tmp_path, exchange_url=fresh_exchange.url, db_path=price_db
    ) as app:
        harness.http_json(f"{app.url}/stats/reset", method="POST")

        def all_joined() -> bool:
            _, stats = harness.http_json(f"{app.url}/stats")
            return bool(stats["get_price"]["calls"] == N)

        res = _held_burst(app, fresh_exchange, f"/price/{SYMBOL}", in_view=all_joined)
        assert fresh_exchange.snapshot()["hits"] == 1
        assert len({body["quote_id"] for _, body, _ in res.responses}) == 1
        _, stats = harness.http_json(f"{app.url}/stats")
        assert (stats["get_price"]["executions"], stats["get_price"]["shared"]) == (1, N - 1)

        fresh_exchange.reset()
        res = _held_burst(
            app, fresh_exchange, f"/price-raw/{SYMBOL}", in_view=lambda: fresh_exchange.snapshot()["hits"] == N
        )
        assert fresh_exchange.snapshot()["hits"] == N


def test_refusals_and_fork_under_monkey_patching(tmp_path: Path) -> None:
    """ReentrantCallError, WaitCycleError and the fork handler with gevent's patched threading."""
    script = textwrap.dedent(
        """
        from gevent import monkey
        monkey.patch_all()
        import os, threading
        import gevent
        from singleflight_sync import Group, ReentrantCallError, WaitCycleError

        g = Group()
        try:
            g.do("k", lambda: g.do("k", int))
        except ReentrantCallError:
            pass
        else:
            raise SystemExit("no ReentrantCallError")

        # Two greenlets waiting on each other's keys: whichever joins second is refused.
        a_in, b_in = gevent.event.Event(), gevent.event.Event()
        errors = []
        def a():
            def work():
                a_in.set(); b_in.wait()
                try:
                    return g.do("b", int)
                except WaitCycleError as exc:
                    errors.append(exc)
                    return 0
            return g.do("a", work)
        def b():
            def work():
                b_in.set(); a_in.wait()
                try:
                    return g.do("a", int)
                except WaitCycleError as exc:
                    errors.append(exc)
                    return 0
            return g.do("b", work)
        ga, gb = gevent.spawn(a), gevent.spawn(b)
        gevent.joinall([ga, gb], timeout=10)
        assert ga.successful() and gb.successful(), (ga.exception, gb.exception)
        assert len(errors) == 1, errors

        # A greenlet leads a flight while the process forks: the child's group is empty.
        held = gevent.event.Event()
        leader = gevent.spawn(g.do, "held", lambda: held.wait() or 1)
        gevent.sleep(0)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if len(g) == 0 and g.do("held", lambda: 2) == 2 else 1)
        # gevent's patched waitpid waits on its SIGCHLD child watcher, which
        # can miss a child that exits at once (gevent#622: "racy at best"):
        # reap it with the real waitpid, which the hub cannot beat to it
        # because this greenlet does not yield.
        _, status = monkey.get_original("os", "waitpid")(pid, 0)
        held.set()
        leader.join()
        assert status == 0, status
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
