"""A stateful test: concurrent flights held by events, checked against a sequential model.

Every leader runs a Gate that blocks until a rule releases it, so the real
group's state between rules is fully determined: the model predicts who runs
the function, which outcome each caller gets, the counters and the map.
"""

# ruff: noqa: PT017 - the model classifies each caller's outcome inside except blocks

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
from helpers import ExcThread, Gate, followers_of, start, wait_until
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from singleflight_sync import CallInfo, FlightStats, FlightTimeoutError, Group, LeaderInterrupted

KEYS = st.sampled_from(["a", "b", ("t", 1)])


class Boom(Exception):
    pass


class Halt(BaseException):
    pass


@dataclass(eq=False)
class ModelFlight:
    key: Any
    gate: Gate
    leader: ExcThread
    followers: list[ExcThread] = field(default_factory=list)


class FlightMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.group: Group[Any, Any] = Group()
        self.current: dict[Any, ModelFlight] = {}  # what the group's map must hold
        self.running: list[ModelFlight] = []  # every flight not landed yet, forgotten ones included
        self.calls = self.executions = self.shared = self.errors = self.timeouts = 0
        self.stray_runs: list[Any] = []
        self.tokens = itertools.count()
        self.lock = threading.Lock()

    def _never(self, key: Any) -> Any:
        def fn() -> None:
            with self.lock:
                self.stray_runs.append(key)

        return fn

    # -- rules -----------------------------------------------------------------------------------

    @rule(key=KEYS)
    def start_leader(self, key: Any) -> None:
        if key in self.current:
            # The real group would make this caller a follower: covered by add_follower.
            return
        gate = Gate()
        leader = start(self.group.call, key, gate)
        assert gate.entered.wait(10), "a caller for a free key did not lead"
        flight = ModelFlight(key, gate, leader)
        self.current[key] = flight
        self.running.append(flight)
        self.calls += 1
        self.executions += 1

    @precondition(lambda self: self.current)
    @rule(data=st.data())
    def add_follower(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.current, key=repr)))
        flight = self.current[key]
        t = start(self.group.call, key, self._never(key))
        n = len(flight.followers) + 1
        wait_until(lambda: followers_of(self.group, key) == n, what="follower joined")
        flight.followers.append(t)
        self.calls += 1

    @precondition(lambda self: self.current)
    @rule(data=st.data())
    def time_out_follower(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.current, key=repr)))
        flight = self.current[key]
        t = start(self.group.call, key, self._never(key), timeout=0.001)
        try:
            t.join()
        except FlightTimeoutError as exc:
            assert exc.key == key
        else:
            msg = f"a follower of a held flight got {t.result!r} instead of timing out"
            raise AssertionError(msg)
        assert flight.leader.is_alive()
        assert all(f.is_alive() for f in flight.followers)
        self.calls += 1
        self.timeouts += 1

    @precondition(lambda self: self.running)
    @rule(data=st.data(), how=st.sampled_from(["value", "error", "interrupt"]))
    def land(self, data: st.DataObject, how: str) -> None:
        flight = data.draw(st.sampled_from(self.running))
        token = next(self.tokens)
        if how == "value":
            flight.gate.finish(("value", token))
        elif how == "error":
            flight.gate.fail(Boom(token))
        else:
            flight.gate.fail(Halt(token))
        self._check_landing(flight, how, token)

    @rule(key=KEYS)
    def forget(self, key: Any) -> None:
        expected = key in self.current
        assert self.group.forget(key) is expected
        self.current.pop(key, None)

    @rule(key=KEYS)
    def forget_unshared(self, key: Any) -> None:
        flight = self.current.get(key)
        expected = flight is not None and not flight.followers
        assert self.group.forget_unshared(key) is expected
        if expected:
            del self.current[key]

    # -- checks ----------------------------------------------------------------------------------

    def _check_landing(self, flight: ModelFlight, how: str, token: int) -> None:
        self.running.remove(flight)
        if self.current.get(flight.key) is flight:
            del self.current[flight.key]
        n = len(flight.followers)
        if how == "value":
            flight.leader.join()
            assert flight.leader.result == CallInfo(("value", token), True, n > 0)
            for t in flight.followers:
                t.join()
                assert t.result == CallInfo(("value", token), False, True)
        else:
            expected_type = Boom if how == "error" else Halt
            try:
                flight.leader.join()
            except expected_type as exc:
                original: BaseException = exc
            else:
                msg = f"leader returned {flight.leader.result!r}"
                raise AssertionError(msg)
            assert original.args == (token,)
            for t in flight.followers:
                try:
                    t.join()
                except Boom as exc:
                    assert how == "error"
                    assert exc is not original
                    assert exc.__cause__ is original
                except LeaderInterrupted as exc:
                    assert how == "interrupt"
                    assert exc.__cause__ is original
                    assert exc.key == flight.key
                else:
                    msg = f"follower returned {t.result!r}"
                    raise AssertionError(msg)
            self.errors += 1
        self.shared += n
        assert flight.gate.calls == 1

    @invariant()
    def matches_the_model(self) -> None:
        assert self.group.stats() == FlightStats(
            self.calls, self.executions, self.shared, self.errors, self.timeouts, len(self.current)
        )
        assert sorted(self.group.keys(), key=repr) == sorted(self.current, key=repr)
        assert len(self.group) == len(self.current)
        for key, flight in self.current.items():
            assert followers_of(self.group, key) == len(flight.followers)
        assert self.stray_runs == []
        # Every blocked follower of a running flight is registered as waiting.
        assert len(self.group._waiting) == sum(len(f.followers) for f in self.running)

    def teardown(self) -> None:
        for flight in list(self.running):
            token = next(self.tokens)
            flight.gate.finish(("value", token))
            self._check_landing(flight, "value", token)
        assert self.group._flights == {}
        assert self.group._waiting == {}
        assert self.stray_runs == []


FlightMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFlights = FlightMachine.TestCase
