"""Fork safety: a forked child never waits on a flight that belonged to a parent thread."""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Gate, followers_of, start, wait_until

from singleflight_sync import CallInfo, Group, _fork

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is not available on this platform"),
    pytest.mark.usefixtures("no_stranded_threads"),
    # Python 3.12+ warns that forking a multi-threaded process may deadlock the child;
    # holding parent threads across fork() is exactly what these tests are about.
    pytest.mark.filterwarnings(
        r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\):DeprecationWarning"
    ),
]

G = Group[Any, Any]
CHILD_DEADLINE = 20.0


def never() -> object:
    msg = "must never run"
    raise AssertionError(msg)


def run_in_fork(child: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork; run ``child`` in the child and return what it reported through a pipe.

    The child always leaves with ``os._exit`` so no pytest machinery runs there.
    A child that blocks is killed and the test fails instead of hanging.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(r)
            try:
                report = child()
            except BaseException:
                report = {"child_error": traceback.format_exc()}
                status = 1
            os.write(w, json.dumps(report).encode())
            os.close(w)
        finally:
            os._exit(status)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], CHILD_DEADLINE)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child blocked for {CHILD_DEADLINE}s")
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    assert "child_error" not in report, report.get("child_error")
    assert os.waitstatus_to_exitcode(status) == 0
    return report


def test_child_can_lead_a_key_held_by_a_parent_thread() -> None:
    group: G = Group()
    gate = Gate()
    leader = start(group.call, "k", gate)
    assert gate.entered.wait(10)
    blocked = start(group.call, "k", never)
    wait_until(lambda: followers_of(group, "k") == 1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        handle = group.submit(pool, "k", never)  # held by the forking (main) thread
        assert followers_of(group, "k") == 2

        def child() -> dict[str, Any]:
            out: dict[str, Any] = {
                "len": len(group),
                "keys": group.keys(),
                "waiting": len(group._waiting),
                "in_flight": group.in_flight("k"),
                "handle_done": handle.done(),
            }
            err = handle.exception(0)
            out["handle_error"] = type(err).__name__
            out["handle_error_key"] = getattr(err, "key", None)
            out["handle_message"] = str(err)
            info = group.call("k", lambda: "child value", timeout=1)
            out["lead"] = [info.value, info.leader, info.shared]
            out["len_after"] = len(group)
            out["other_key"] = group.do("other", lambda: 5)
            return out

        report = run_in_fork(child)
        assert report == {
            "len": 0,
            "keys": [],
            "waiting": 0,
            "in_flight": False,
            "handle_done": True,
            "handle_error": "LeaderInterrupted",
            "handle_error_key": "k",
            "handle_message": report["handle_message"],
            "lead": ["child value", True, False],
            "len_after": 0,
            "other_key": 5,
        }
        assert "fork" in report["handle_message"]

        # The parent is untouched: its flight is still running, with its callers.
        assert group.in_flight("k")
        assert followers_of(group, "k") == 2
        assert not handle.done()
        gate.finish("parent value")
        leader.join()
        blocked.join()
        assert leader.result == CallInfo("parent value", True, True)
        assert blocked.result == CallInfo("parent value", False, True)
        assert handle.result(10) == "parent value"
    assert len(group) == 0


def test_cancelled_handle_is_left_alone_in_the_child() -> None:
    group: G = Group()
    gate = Gate()
    leader = start(group.call, "k", gate)
    assert gate.entered.wait(10)
    with ThreadPoolExecutor(max_workers=1) as pool:
        live = group.submit(pool, "k", never)
        cancelled = group.submit(pool, "k", never)
        assert cancelled.cancel()

        def child() -> dict[str, Any]:
            return {
                "cancelled": cancelled.cancelled(),
                "live": type(live.exception(0)).__name__,
            }

        assert run_in_fork(child) == {"cancelled": True, "live": "LeaderInterrupted"}
        gate.finish(1)
        leader.join()
        assert live.result(10) == 1


def test_fork_inside_the_leaders_function() -> None:
    # The forking thread itself leads "k": in the child its flight is orphaned,
    # the map is empty, and the function's own return still reaches its caller.
    group: G = Group()
    follower_joined = Gate()
    reports: list[dict[str, Any]] = []

    def fn() -> str:
        assert follower_joined.release.wait(10)

        def child() -> dict[str, Any]:
            return {
                "len": len(group),
                "nested": group.do("k", lambda: "nested in child"),  # not re-entry: a new flight
            }

        reports.append(run_in_fork(child))
        return "parent"

    leader = start(group.call, "k", fn)
    wait_until(lambda: group.in_flight("k"))
    follower = start(group.call, "k", never)
    wait_until(lambda: followers_of(group, "k") == 1)
    follower_joined.release.set()
    leader.join()
    follower.join()
    assert reports == [{"len": 0, "nested": "nested in child"}]
    assert leader.result == CallInfo("parent", True, True)
    assert follower.result == CallInfo("parent", False, True)


def test_fork_while_leading_returns_to_the_caller_in_the_child() -> None:
    # fn forks while it leads "k": in the child, group.do() must still return
    # fn's value (through the orphaned landing) and leave an empty map.
    group: G = Group()
    parent_pid = os.getpid()

    def fn() -> str:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            return "child"
        _, status = os.waitpid(pid, 0)
        return f"parent:{os.waitstatus_to_exitcode(status)}"

    try:
        value = group.do("k", fn)
    except BaseException:
        if os.getpid() != parent_pid:  # pragma: no cover - never let the child run pytest on
            os._exit(9)
        raise
    if os.getpid() != parent_pid:  # pragma: no cover - child
        ok = value == "child" and len(group) == 0 and not group.in_flight("k")
        os._exit(7 if ok else 8)
    assert value == "parent:7"
    assert len(group) == 0


# -- multiprocessing with the 'fork' start method -------------------------------------------------------


def _mp_child(group: G, handle: Any, conn: Any) -> None:
    try:
        err = handle.exception(5)
        info = group.call("k", lambda: "from mp child", timeout=1)
        conn.send(
            {
                "len_before": 0 if info.leader else -1,
                "lead": [info.value, info.leader, info.shared],
                "handle_error": type(err).__name__,
                "cause": repr(getattr(err, "__cause__", None)),
                "len_after": len(group),
            }
        )
    except BaseException:
        conn.send({"child_error": traceback.format_exc()})
    finally:
        conn.close()


def test_multiprocessing_fork_child_leads_at_once() -> None:
    ctx = multiprocessing.get_context("fork")
    group: G = Group()
    gate = Gate()
    leader = start(group.call, "k", gate)
    assert gate.entered.wait(10)
    with ThreadPoolExecutor(max_workers=1) as pool:
        handle = group.submit(pool, "k", never)
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_mp_child, args=(group, handle, child_conn), daemon=True)
        proc.start()
        child_conn.close()
        try:
            assert parent_conn.poll(CHILD_DEADLINE), "the multiprocessing child blocked"
            report = parent_conn.recv()
        finally:
            proc.join(CHILD_DEADLINE)
            if proc.is_alive():
                proc.kill()
                proc.join()
            parent_conn.close()
        assert "child_error" not in report, report.get("child_error")
        assert report == {
            "len_before": 0,
            "lead": ["from mp child", True, False],
            "handle_error": "LeaderInterrupted",
            "cause": "None",
            "len_after": 0,
        }
        assert proc.exitcode == 0
        gate.finish("parent")
        leader.join()
        assert handle.result(10) == "parent"
    assert leader.result == CallInfo("parent", True, True)


def _mp_pool_task(key: str) -> str:
    return _MP_GROUP.do(key, lambda: f"child ran {key}")


_MP_GROUP: G = Group()


def test_multiprocessing_fork_pool_with_a_held_flight() -> None:
    ctx = multiprocessing.get_context("fork")
    gate = Gate()
    leader = start(_MP_GROUP.call, "shared-key", gate)
    assert gate.entered.wait(10)
    try:
        with ctx.Pool(2) as mp_pool:
            result = mp_pool.map_async(_mp_pool_task, ["shared-key", "shared-key", "x"])
            assert result.get(CHILD_DEADLINE) == ["child ran shared-key", "child ran shared-key", "child ran x"]
    finally:
        gate.finish("parent")
        leader.join()
    assert leader.result == CallInfo("parent", True, False)
    assert len(_MP_GROUP) == 0


def test_registry_lock_and_group_locks_are_free_after_fork_in_parent() -> None:
    group: G = Group()

    def child() -> dict[str, Any]:
        fresh: G = Group()  # registering a new group in the child must not block
        return {"fresh": fresh.do("a", lambda: 1), "old": group.do("b", lambda: 2)}

    assert run_in_fork(child) == {"fresh": 1, "old": 2}
    assert not _fork._registry_lock.locked()
    assert not group._lock.locked()
    assert _fork._held == []
    assert group.do("c", lambda: 3) == 3
