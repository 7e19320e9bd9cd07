"""The online/degraded/offline state machine (spec svc-emergency-ui §1.5). Pure: it is fed
one probe round at a time with `feed(oks)` and reads time from an injected clock, so the
debounce, recovery and flap-hold rules are tested without sleeping.

Per round: no internet probe failing -> `online`; failures >= min(2, number of probes) ->
`offline` class; otherwise (exactly one failing) -> `degraded` class.

    online   -> degraded  at once when any probe fails
    degraded -> offline   the offline class held continuously for 30 s
    any      -> online    every probe passing continuously for 10 s
    offline  stays offline until then (one passing probe is not enough)

Anti-flap: once EMERGENCY_FLAP_MAX_TRANSITIONS transitions happened within the last
EMERGENCY_FLAP_WINDOW_SECONDS, a move to a *less* pessimistic mode is held until the
window has passed (moves to a more pessimistic one always happen).
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

from hearthnet.constants import (EMERGENCY_FLAP_MAX_TRANSITIONS, EMERGENCY_FLAP_WINDOW_SECONDS,
                                 EMERGENCY_RECOVERY_SECONDS, EMERGENCY_TRANSITION_DEBOUNCE_SECONDS)

ONLINE, DEGRADED, OFFLINE = "online", "degraded", "offline"
MODES = (ONLINE, DEGRADED, OFFLINE)
RANK = {ONLINE: 0, DEGRADED: 1, OFFLINE: 2}  # higher = more pessimistic


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def classify(oks: Sequence[bool]) -> str:
    fails = sum(1 for ok in oks if not ok)
    if fails == 0:
        return ONLINE
    return OFFLINE if fails >= min(2, len(oks)) else DEGRADED


@dataclass(frozen=True)
class Transition:
    old: str
    new: str
    at: float  # wall clock seconds


class StateMachine:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, mode: str = ONLINE) -> None:
        self.clock = clock
        self.wall = wall
        self.mode = mode
        self.since = wall()  # wall clock time of the last change (or of the start)
        self._offline_since: float | None = None  # clock time the offline class began
        self._pass_since: float | None = None  # clock time all-passing began
        self._changes: collections.deque[float] = collections.deque()  # clock times of transitions

    def feed(self, oks: Sequence[bool]) -> Transition | None:
        """One probe round; the transition it caused, if any."""
        now = self.clock()
        raw = classify(oks)
        self._offline_since = (self._offline_since if self._offline_since is not None else now) \
            if raw == OFFLINE else None
        self._pass_since = (self._pass_since if self._pass_since is not None else now) if raw == ONLINE else None
        target = self._target(raw, now)
        if target == self.mode or (RANK[target] < RANK[self.mode] and self.held(now)):
            return None
        return self._move(target, now)

    def _target(self, raw: str, now: float) -> str:
        if self._pass_since is not None and (self.mode == ONLINE or now - self._pass_since >= EMERGENCY_RECOVERY_SECONDS):
            return ONLINE
        if self.mode == OFFLINE:
            return OFFLINE
        if self._offline_since is not None and now - self._offline_since >= EMERGENCY_TRANSITION_DEBOUNCE_SECONDS:
            return OFFLINE
        return DEGRADED if raw != ONLINE else self.mode

    def held(self, now: float | None = None) -> bool:
        """The flap hold is on: improvements wait until the window has passed."""
        now = self.clock() if now is None else now
        while self._changes and now - self._changes[0] >= EMERGENCY_FLAP_WINDOW_SECONDS:
            self._changes.popleft()
        return len(self._changes) >= EMERGENCY_FLAP_MAX_TRANSITIONS

    def _move(self, target: str, now: float) -> Transition:
        t = Transition(self.mode, target, self.wall())
        self.mode, self.since = target, t.at
        self._changes.append(now)
        return t
