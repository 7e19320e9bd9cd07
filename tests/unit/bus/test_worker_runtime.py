"""The worker runtime (hearthnet/bus/worker.py) against a bare ROUTER standing in for the
broker: how requests reach handlers, how answers, errors and cancellations go back."""
from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

import pytest
import zmq
import zmq.asyncio

from hearthnet.bus import protocol as P
from hearthnet.bus.service import Capability, Request
from hearthnet.bus.worker import WorkerRuntime
from hearthnet.errors import HearthNetError


class Probe:
    """Handlers of every kind the runtime accepts; each notes whether it ran in a task."""

    name = "probe"

    def __init__(self) -> None:
        self.in_task: dict[str, bool] = {}
        self.started: list[str] = []

    def capabilities(self) -> list[Capability]:
        return [Capability(name=n, handler=h, max_concurrent=8) for n, h in (
            ("t.plain", self.plain), ("t.later", self.later), ("t.async", self.async_),
            ("t.timeout", self.with_timeout), ("t.refuse", self.refuse), ("t.crash", self.crash),
            ("t.slow", self.slow))]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        return {}

    def _note(self, name: str) -> None:
        self.in_task[name] = asyncio.current_task() is not None

    def plain(self, req: Request) -> Any:
        self._note("plain")
        return {"output": req.input, "meta": {}}

    def later(self, req: Request) -> Any:  # a plain handler that hands back a coroutine
        async def answer() -> dict[str, Any]:
            self._note("later")
            await asyncio.sleep(0)
            return {"output": {"later": True}, "meta": {}}
        return answer()

    async def async_(self, req: Request) -> Any:
        self._note("async")
        return {"output": {"async": True}, "meta": {}}

    async def with_timeout(self, req: Request) -> Any:
        async with asyncio.timeout(5):  # needs a current task: an eager start would break it
            await asyncio.sleep(0)
        return {"output": {"timeout": "ok"}, "meta": {}}

    def refuse(self, req: Request) -> Any:
        raise HearthNetError("bad_request", "no thanks")

    def crash(self, req: Request) -> Any:
        raise ValueError("a bug")

    async def slow(self, req: Request) -> Any:
        self.started.append(req.trace_id)
        await asyncio.sleep(30)
        return {"output": {}, "meta": {}}


class FakeBroker:
    def __init__(self, sock: zmq.asyncio.Socket) -> None:
        self.sock = sock
        self.ident = b""
        self.next_id = 1

    async def ready(self) -> dict[str, Any]:
        while True:
            ident, data = await self.sock.recv_multipart()
            msg = P.unpack(data)
            if msg.get("t") == P.READY:
                self.ident = ident
                return msg

    async def send(self, msg: dict[str, Any]) -> None:
        await self.sock.send_multipart([self.ident, P.pack(msg)])

    def req(self, cap: str, body: dict[str, Any] | None = None, trace: str = "") -> dict[str, Any]:
        rid, self.next_id = self.next_id, self.next_id + 1
        return {"t": P.REQ, "id": rid, "cap": cap, "v": "1.0", "body": body or {"input": {"x": 1}},
                "stream": False, "caller": "local", "trace": trace, "ttl": 30.0}

    async def end(self, rid: int, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            _, data = await asyncio.wait_for(self.sock.recv_multipart(), timeout)
            msg = P.unpack(data)
            if msg.get("t") == P.END and msg.get("id") == rid:
                return msg


def run_with_runtime(test: Any, probe: Probe | None = None) -> tuple[Probe, WorkerRuntime]:
    """Run `test(broker, runtime)` with a Probe served by a WorkerRuntime."""
    probe = probe or Probe()

    async def main() -> WorkerRuntime:
        with tempfile.TemporaryDirectory(dir="/tmp") as d:
            ctx = zmq.asyncio.Context()
            sock = ctx.socket(zmq.ROUTER)
            sock.bind(f"ipc://{os.path.join(d, 'w.ipc')}")
            rt = WorkerRuntime(probe, f"ipc://{os.path.join(d, 'w.ipc')}", "probe_00")
            served = asyncio.ensure_future(rt.run())
            try:
                broker = FakeBroker(sock)
                await asyncio.wait_for(broker.ready(), 10)
                await test(broker, rt)
            finally:
                rt.stopping.set()
                await asyncio.wait_for(served, 10)
                sock.close(0)
                ctx.term()
            return rt

    return probe, asyncio.run(main())


def test_a_plain_handler_is_answered_at_once_without_a_task() -> None:
    async def test(broker: FakeBroker, rt: WorkerRuntime) -> None:
        req = broker.req("t.plain", {"input": {"x": 7}})
        await broker.send(req)
        end = await broker.end(req["id"])
        assert (end["ev"], end["d"]) == (P.RESULT, {"output": {"x": 7}, "meta": {}})
        assert rt.tasks == {}

    probe, _ = run_with_runtime(test)
    assert probe.in_task == {"plain": False}


def test_coroutines_run_in_a_task_and_may_use_asyncio_timeout() -> None:
    async def test(broker: FakeBroker, rt: WorkerRuntime) -> None:
        for cap, out in (("t.later", {"later": True}), ("t.async", {"async": True}),
                         ("t.timeout", {"timeout": "ok"})):
            req = broker.req(cap)
            await broker.send(req)
            end = await broker.end(req["id"])
            assert (end["ev"], end["d"]["output"]) == (P.RESULT, out), cap
        assert rt.tasks == {}  # each task let go of when it ended

    probe, _ = run_with_runtime(test)
    assert probe.in_task == {"later": True, "async": True}


@pytest.mark.parametrize("cap, code", [("t.refuse", "bad_request"), ("t.crash", "internal_error"),
                                       ("t.unknown", "not_found")])
def test_a_refusing_crashing_or_unknown_handler_answers_its_error(cap: str, code: str) -> None:
    async def test(broker: FakeBroker, rt: WorkerRuntime) -> None:
        req = broker.req(cap)
        await broker.send(req)
        end = await broker.end(req["id"])
        assert end["ev"] == P.ERROR and end["d"]["error"] == code
        if code == "internal_error":
            assert "a bug" not in end["d"]["message"]  # the log has the traceback, not the caller

    run_with_runtime(test)


def test_a_cancel_right_behind_its_request_is_confirmed_once() -> None:
    """REQ and CANCEL read in one drain: the task is cancelled before it ever ran. The
    broker frees the call's slot only on the worker's END, so it must still come."""
    async def test(broker: FakeBroker, rt: WorkerRuntime) -> None:
        req = broker.req("t.slow", trace="first")
        frames = [P.pack(req), P.pack({"t": P.CANCEL, "id": req["id"]})]
        for data in frames:  # back to back, before the worker's loop gets to run
            broker.sock.send_multipart([broker.ident, data])
        end = await broker.end(req["id"])
        assert end["ev"] == P.ERROR and end["d"]["error"] == "cancelled"
        with pytest.raises(asyncio.TimeoutError):  # and only once
            await broker.end(req["id"], timeout=0.3)
        assert rt.tasks == {}

    probe, _ = run_with_runtime(test)
    assert probe.started in ([], ["first"])


def test_a_cancel_of_a_running_call_ends_it_cancelled() -> None:
    async def test(broker: FakeBroker, rt: WorkerRuntime) -> None:
        req = broker.req("t.slow", trace="running")
        await broker.send(req)
        for _ in range(100):
            if probe.started:
                break
            await asyncio.sleep(0.02)
        await broker.send({"t": P.CANCEL, "id": req["id"]})
        end = await broker.end(req["id"])
        assert end["ev"] == P.ERROR and end["d"]["error"] == "cancelled"

    probe = Probe()
    run_with_runtime(test, probe)
    assert probe.started == ["running"]
