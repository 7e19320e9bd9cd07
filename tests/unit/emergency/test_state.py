"""The state machine with an injected clock: debounce, recovery, hysteresis, flap hold."""
from __future__ import annotations

from hearthnet.emergency.state import DEGRADED, OFFLINE, ONLINE, StateMachine, classify

ALL_OK, ONE_BAD, TWO_BAD = [True] * 4, [False, True, True, True], [False, False, True, True]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def machine() -> tuple[StateMachine, Clock]:
    clock = Clock()
    return StateMachine(clock=clock, wall=clock), clock


def run(sm: StateMachine, clock: Clock, oks: list[bool], seconds: float, step: float = 2.0) -> list[str]:
    """Feed the same round every `step` seconds for `seconds`; the modes entered."""
    seen = []
    end = clock.t + seconds
    while clock.t < end:
        clock.t += step
        t = sm.feed(oks)
        if t is not None:
            seen.append(t.new)
    return seen


def test_classify() -> None:
    assert classify(ALL_OK) == ONLINE
    assert classify(ONE_BAD) == DEGRADED
    assert classify(TWO_BAD) == OFFLINE
    assert classify([False]) == OFFLINE  # a single probe that fails is all of them
    assert classify([]) == ONLINE


def test_one_failure_degrades_at_once_and_recovers_after_ten_seconds() -> None:
    sm, clock = machine()
    clock.t += 10
    assert sm.feed(ONE_BAD).new == DEGRADED
    assert run(sm, clock, ALL_OK, 10) == []  # passing since the first of these rounds: 8 s
    assert run(sm, clock, ALL_OK, 2) == [ONLINE]


def test_offline_only_after_thirty_seconds_of_failures() -> None:
    sm, clock = machine()
    clock.t += 10
    assert sm.feed(TWO_BAD).new == DEGRADED  # the first failing round only degrades
    assert run(sm, clock, TWO_BAD, 28) == []
    assert run(sm, clock, TWO_BAD, 2) == [OFFLINE]
    assert sm.since == clock.t


def test_debounce_restarts_when_the_failures_pause() -> None:
    sm, clock = machine()
    sm.feed(TWO_BAD)
    run(sm, clock, TWO_BAD, 20)
    run(sm, clock, ONE_BAD, 2)  # one round with a single failure breaks the 30 s run
    assert run(sm, clock, TWO_BAD, 30) == []  # failing since the first of these rounds: 28 s
    assert sm.mode == DEGRADED
    assert run(sm, clock, TWO_BAD, 2) == [OFFLINE]


def test_offline_is_sticky_until_all_pass_for_ten_seconds() -> None:
    sm, clock = machine()
    sm.feed(TWO_BAD)
    run(sm, clock, TWO_BAD, 30)
    assert sm.mode == OFFLINE
    assert run(sm, clock, ONE_BAD, 60) == []  # hysteresis: one passing probe more is not enough
    run(sm, clock, ALL_OK, 4)
    run(sm, clock, ONE_BAD, 2)  # the all-pass run is broken
    assert run(sm, clock, ALL_OK, 10) == []
    assert run(sm, clock, ALL_OK, 2) == [ONLINE]


def test_flap_hold_keeps_the_pessimistic_state_until_the_window_passes() -> None:
    sm, clock = machine()
    assert sm.feed(ONE_BAD).new == DEGRADED
    assert run(sm, clock, ALL_OK, 12) == [ONLINE]
    assert run(sm, clock, ONE_BAD, 2) == [DEGRADED]  # third transition within 60 s
    assert sm.held()
    assert run(sm, clock, ALL_OK, 30) == []  # would be online, held degraded
    assert sm.mode == DEGRADED
    assert run(sm, clock, ALL_OK, 30) == [ONLINE]  # the window has passed
    assert not sm.held()


def test_flap_hold_never_blocks_getting_worse() -> None:
    sm, clock = machine()
    sm.feed(ONE_BAD)
    run(sm, clock, ALL_OK, 12)
    run(sm, clock, ONE_BAD, 2)
    assert sm.held()
    assert run(sm, clock, TWO_BAD, 32) == [OFFLINE]
