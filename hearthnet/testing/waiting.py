"""The one polling helper of the tests, labs and benchmarks: wait until something holds.

    peers = wait_for(lambda: node.api("/api/v1/status")["peers"], 30, message="alice sees a peer")

The predicate is called every `interval` seconds until it returns a truthy value, which
`wait_for` returns. An exception from the predicate counts as "not yet" (a node that is
restarting refuses connections; a worker not yet listed raises StopIteration) and is
remembered — except AssertionError, which ends the wait at once, so a predicate can fail
fast (`assert proc.poll() is None`). On timeout it raises AssertionError naming what was
awaited, the timeout and the last value or exception seen.

`wait_for_async` is the same inside an event loop (it sleeps with asyncio.sleep, so the
loop keeps running what is being waited for); the predicate itself stays synchronous.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Generator, TypeVar

T = TypeVar("T")
SHOWN_CHARS = 2000  # of the last value in the timeout message


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1,
             message: str | Callable[[], str] = "condition") -> T:
    """`predicate()`'s first truthy value within `timeout` seconds, else AssertionError.
    `message` says what was awaited; a callable is only evaluated on timeout (for costly
    diagnostics such as a node's log tail)."""
    attempts = _attempts(predicate, timeout, interval, message)
    try:
        while True:
            time.sleep(next(attempts))
    except StopIteration as done:
        value: T = done.value
        return value


async def wait_for_async(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1,
                         message: str | Callable[[], str] = "condition") -> T:
    """wait_for for coroutines: the same rules, without blocking the event loop."""
    attempts = _attempts(predicate, timeout, interval, message)
    try:
        while True:
            await asyncio.sleep(next(attempts))
    except StopIteration as done:
        value: T = done.value
        return value


def _attempts(predicate: Callable[[], T], timeout: float, interval: float,
              message: str | Callable[[], str]) -> Generator[float, None, T]:
    """Calls the predicate; yields how long to sleep before the next call; returns the
    truthy value, or raises AssertionError once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - not ready yet; reported on timeout
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            break
        yield max(0.0, min(interval, deadline - time.monotonic()))
    what = message() if callable(message) else message
    shown = f"{type(last).__name__}: {last}" if isinstance(last, BaseException) else repr(last)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {shown[:SHOWN_CHARS]})")
