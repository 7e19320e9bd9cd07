from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearthnet.testing.waiting import wait_for, wait_for_async


class Countdown:
    """Falsy, then raising, then a value: what a node looks like while it starts."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.calls = 0

    def __call__(self) -> Any:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if isinstance(step, BaseException):
            raise step
        return step


def test_returns_the_first_truthy_value_after_retrying_falsy_values_and_errors() -> None:
    pred = Countdown([None, ConnectionRefusedError("not listening"), {}, {"peers": ["b"]}])
    assert wait_for(pred, timeout=30, interval=0) == {"peers": ["b"]}
    assert pred.calls == 4


def test_timeout_names_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError) as err:
        wait_for(lambda: [], timeout=0, interval=0, message="bob sees alice")
    assert str(err.value) == "bob sees alice: not within 0 s (last: [])"


def test_timeout_reports_the_last_exception() -> None:
    with pytest.raises(AssertionError, match=r"ledger healthy: .*KeyError: 'ledger'"):
        wait_for(Countdown([KeyError("ledger")]), timeout=0, interval=0, message="ledger healthy")


def test_an_assertion_in_the_predicate_ends_the_wait_at_once() -> None:
    pred = Countdown([AssertionError("node exited")])
    with pytest.raises(AssertionError, match="node exited"):
        wait_for(pred, timeout=30, interval=0)
    assert pred.calls == 1


def test_a_callable_message_is_built_only_on_timeout() -> None:
    built: list[str] = []

    def message() -> str:
        built.append("x")
        return "diagnostics"

    assert wait_for(lambda: 1, timeout=0, interval=0, message=message) == 1
    assert built == []
    with pytest.raises(AssertionError, match="^diagnostics: "):
        wait_for(lambda: 0, timeout=0, interval=0, message=message)
    assert built == ["x"]


def test_a_huge_last_value_is_cut() -> None:
    class NotYet:
        def __bool__(self) -> bool:
            return False

        def __repr__(self) -> str:
            return "x" * 100_000

    with pytest.raises(AssertionError) as err:
        wait_for(NotYet, timeout=0, interval=0)
    assert 2000 <= len(str(err.value)) < 2100


def test_a_stop_iteration_from_the_predicate_is_not_yet() -> None:
    pred = Countdown([StopIteration(), "ledger_00"])  # next(...) over a list not yet filled
    assert wait_for(pred, timeout=30, interval=0) == "ledger_00"


def test_async_variant_lets_the_loop_run_what_it_waits_for() -> None:
    async def scenario() -> str:
        state: dict[str, str] = {}

        async def worker() -> None:
            await asyncio.sleep(0)
            state["done"] = "yes"

        task = asyncio.ensure_future(worker())
        got = await wait_for_async(lambda: state.get("done"), timeout=30, interval=0)
        await task
        return got

    assert asyncio.run(scenario()) == "yes"


def test_async_variant_times_out_like_the_sync_one() -> None:
    with pytest.raises(AssertionError, match=r"^beacon heard: not within 0 s \(last: 0\)$"):
        asyncio.run(wait_for_async(lambda: 0, timeout=0, interval=0, message="beacon heard"))
