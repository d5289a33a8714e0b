"""Group.submit on a real ThreadPoolExecutor: deduplicated submission, per-caller futures."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import CancelledError, ThreadPoolExecutor, wait

import pytest
from helpers import Gate, followers_of

from singleflight_sync import Group

KEYS = 100
SUBMISSIONS = 10_000


def test_ten_thousand_submissions_over_a_hundred_keys_run_each_key_once():
    group: Group[int, str] = Group()
    release = threading.Event()
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    def work(key: int) -> str:
        with lock:
            runs[key] += 1
        assert release.wait(30), "never released"
        return f"value-{key}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        # Nothing can land before release: the 8 workers block in work() and
        # the other 92 flights wait in the pool's queue, so every submission
        # after the first of its key joins that key's flight.
        futures = [(i % KEYS, group.submit(pool, i % KEYS, work, i % KEYS)) for i in range(SUBMISSIONS)]
        assert not any(f.done() for _, f in futures)
        s = group.stats()
        assert (s.calls, s.executions, s.shared, s.in_flight) == (SUBMISSIONS, KEYS, 0, KEYS)
        assert followers_of(group, 0) == SUBMISSIONS // KEYS - 1
        release.set()
        _done, not_done = wait([f for _, f in futures], timeout=30)
        assert not not_done
        for key, f in futures:
            assert f.result() == f"value-{key}"
    assert runs == Counter(dict.fromkeys(range(KEYS), 1))
    s = group.stats()
    assert (s.calls, s.executions, s.shared, s.errors, s.in_flight) == (SUBMISSIONS, KEYS, SUBMISSIONS - KEYS, 0, 0)
    assert len({id(f) for _, f in futures}) == SUBMISSIONS  # one future per caller


def test_unheld_submissions_execute_a_bounded_number_of_times():
    """Without holding, a key runs again only after its previous flight landed.

    So executions lie between one per key and one per submission, and every
    submission that did not start a flight shared one: calls == executions + shared.
    """
    group: Group[int, int] = Group()
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    def work(key: int) -> int:
        with lock:
            runs[key] += 1
        return key * 2

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [(i % KEYS, group.submit(pool, i % KEYS, work, i % KEYS)) for i in range(SUBMISSIONS)]
        _done, not_done = wait([f for _, f in futures], timeout=30)
    assert not not_done
    assert all(f.result() == key * 2 for key, f in futures)
    s = group.stats()
    assert KEYS <= s.executions <= SUBMISSIONS
    assert set(runs) == set(range(KEYS))
    assert sum(runs.values()) == s.executions
    assert s.calls == SUBMISSIONS
    assert s.calls == s.executions + s.shared
    assert s.in_flight == 0


def test_cancelling_one_future_cancels_nobody_else():
    group: Group[str, str] = Group()
    gate = Gate()
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = group.submit(pool, "k", gate)
        assert gate.entered.wait(10)
        second = group.submit(pool, "k", gate)
        third = group.submit(pool, "k", gate)
        # The leader's own future too: cancelling it does not stop the flight.
        assert first.cancel()
        assert second.cancel()
        assert first.cancelled()
        assert second.cancelled()
        assert not third.done()
        assert group.in_flight("k")
        gate.finish("shared")
        assert third.result(10) == "shared"
        with pytest.raises(CancelledError):
            first.result()
    assert gate.calls == 1
    assert group.stats().in_flight == 0


def test_waiting_with_a_timeout_on_one_future_leaves_the_flight_alone():
    from concurrent.futures import TimeoutError as FuturesTimeout  # noqa: PLC0415

    group: Group[str, int] = Group()
    gate = Gate()
    with ThreadPoolExecutor(max_workers=1) as pool:
        a = group.submit(pool, "k", gate)
        b = group.submit(pool, "k", gate)
        assert gate.entered.wait(10)
        with pytest.raises(FuturesTimeout):
            a.result(timeout=0.01)
        gate.finish(5)
        assert (a.result(10), b.result(10)) == (5, 5)
    assert gate.calls == 1


def test_exceptions_reach_every_future_as_copies():
    group: Group[str, int] = Group()
    gate = Gate()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [group.submit(pool, "k", gate) for _ in range(5)]
        assert gate.entered.wait(10)
        gate.fail(ValueError("bad row"))
        errors = [f.exception(10) for f in futures]
    assert all(isinstance(e, ValueError) and str(e) == "bad row" for e in errors)
    assert len({id(e) for e in errors}) == 5
    assert len({id(e.__cause__) for e in errors}) == 1  # all copies of the one the function raised
    assert group.stats().errors == 1


def test_a_shut_down_executor_fails_the_submission_and_the_key_is_free_again():
    group: Group[str, int] = Group()
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shutdown"):
        group.submit(pool, "k", int, "1")
    assert not group.in_flight("k")
    with ThreadPoolExecutor(max_workers=1) as live:
        assert group.submit(live, "k", int, "1").result(10) == 1
