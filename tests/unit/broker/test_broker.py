"""The broker through real ZeroMQ ipc sockets, with real worker processes."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hearthnet.broker.core import Broker
from hearthnet.bus.client import BusClient
from hearthnet.errors import HearthNetError
from hearthnet.testing.waiting import wait_for, wait_for_async
from tests.unit.broker.fake_worker import FakeWorker

REPO = Path(__file__).resolve().parents[3]


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.w = f"ipc://{tmp}/w.ipc"
        self.c = f"ipc://{tmp}/c.ipc"
        self.broker = Broker(self.w, self.c, startup_grace=0.0)
        self.thread = threading.Thread(target=self.broker.serve_forever, daemon=True)
        self.thread.start()
        self.procs: list[subprocess.Popen] = []

    def worker(self, name: str, cap: str = "experimental.slow", max_concurrent: int = 4,
               idempotent: bool = False, env: dict[str, str] | None = None) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "tests.unit.broker.slow_worker", self.w, name,
                              cap, str(max_concurrent), "1" if idempotent else "0"], cwd=REPO,
                             env={**os.environ, **(env or {})})
        self.procs.append(p)
        return p

    def wait_ready(self, name: str, timeout: float = 10.0) -> None:
        def ready() -> bool:
            w = self.broker.workers.get(name)
            return w is not None and w.alive

        wait_for(ready, timeout, 0.02, message=f"{name} ready")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.broker.stop()
        self.thread.join(5)


@pytest.fixture
def bench(tmp_path):
    short = Path(f"/tmp/hn-test-{os.getpid()}-{time.monotonic_ns() % 10**8}")
    short.mkdir()
    b = Bench(short)
    yield b
    b.close()
    shutil.rmtree(short, ignore_errors=True)


def run(coro):
    return asyncio.run(coro)


async def _client(b: Bench) -> BusClient:
    bc = BusClient(b.c)
    await bc.start()
    return bc


def test_call_is_answered_and_traced(bench):
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        out = await bc.call("experimental.slow", "1.0", {"input": {"x": 1}}, trace="T1")
        traces = (await bc.admin("traces", n=5))["traces"]
        await bc.close()
        return out, traces

    out, traces = run(go())
    assert out["output"]["echo"] == {"x": 1}
    assert traces[-1]["trace_id"] == "T1"
    assert traces[-1]["route"] == "local:slow_00"
    assert traces[-1]["result"] == "ok"
    assert traces[-1]["tokens_out"] == 2


def test_stream_frames_in_order_then_done(bench):
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        frames = [f async for f in bc.stream("experimental.slow", "1.0", {"input": {"frames": 4}})]
        await bc.close()
        return frames

    frames = run(go())
    assert [d["text"] for ev, d in frames[:-1]] == ["0", "1", "2", "3"]
    assert frames[-1] == ("done", {"tokens_out": 4})


def test_unknown_capability_is_not_found_with_close_match(bench):
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        try:
            await bc.call("experimental.slwo", "1.0", {})
        finally:
            await bc.close()

    with pytest.raises(HearthNetError) as err:
        run(go())
    assert err.value.code == "not_found"
    assert "experimental.slow" in err.value.message


def test_incompatible_major_version_is_schema_mismatch(bench):
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        try:
            await bc.call("experimental.slow", "2.0", {})
        finally:
            await bc.close()

    with pytest.raises(HearthNetError) as err:
        run(go())
    assert err.value.code == "schema_mismatch"
    assert err.value.details["alt_capabilities"] == ["experimental.slow@1.0"]


def test_full_provider_queues_then_refuses_with_retry_after(bench):
    bench.worker("slow_00", max_concurrent=1)
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        body = {"input": {"sleep_ms": 300}}
        results = await asyncio.gather(*[bc.call("experimental.slow", "1.0", body)
                                         for _ in range(5)], return_exceptions=True)
        await bc.close()
        return results

    results = run(go())
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, HearthNetError)]
    assert len(ok) == 3  # one running + a queue of 2 x max_concurrent
    assert [r.code for r in refused] == ["capacity_exceeded", "capacity_exceeded"]
    assert all(r.details["retry_after_ms"] > 0 for r in refused)


def test_deadline_gives_timeout_and_frees_the_slot(bench):
    bench.worker("slow_00", max_concurrent=1)
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        with pytest.raises(HearthNetError) as err:
            await bc.call("experimental.slow", "1.0", {"input": {"sleep_ms": 2000}}, timeout=0.2)
        quick = await bc.call("experimental.slow", "1.0", {"input": {}}, timeout=5)
        await bc.close()
        return err.value.code, quick

    code, quick = run(go())
    assert code == "timeout"
    assert quick["output"]["echo"] == {}


def test_caller_leaving_cancels_the_work(bench):
    bench.worker("slow_00", max_concurrent=1)
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        agen = bc.stream("experimental.slow", "1.0", {"input": {"frames": 1000, "sleep_ms": 20}})
        await agen.__anext__()
        await agen.aclose()  # the caller goes away after one frame
        # the worker confirms the cancel and frees its slot (10 s guards against a hang;
        # the stream would otherwise run 1000 x 20 ms): how fast is for a bench, not a test
        await wait_for_async(lambda: not bench.broker.workers["slow_00"].in_flight(), 10, 0.005,
                             message="the worker confirming the cancel")
        traces = (await bc.admin("traces", n=1))["traces"]
        await bc.close()
        return traces

    traces = run(go())
    assert bench.broker.workers["slow_00"].in_flight() == 0
    assert traces[-1]["result"] == "cancelled"


def test_killed_worker_call_is_redispatched_to_replica(bench):
    a = bench.worker("slow_00")
    bench.worker("slow_01")
    bench.wait_ready("slow_00")
    bench.wait_ready("slow_01")

    async def go():
        bc = await _client(bench)
        task = asyncio.ensure_future(bc.call("experimental.slow", "1.0", {"input": {"sleep_ms": 500}}))
        await asyncio.sleep(0.1)
        victim = next(w for w in bench.broker.workers.values() if w.in_flight())
        os.kill(victim.pid, signal.SIGKILL)
        out = await task
        traces = (await bc.admin("traces", n=1))["traces"]
        await bc.close()
        return victim.name, out, traces

    victim, out, traces = run(go())
    assert out["output"]["echo"] == {"sleep_ms": 500}
    assert traces[-1]["redispatched"] == 1
    assert traces[-1]["worker"] != victim
    assert a is not None


def test_worker_killed_mid_stream_gives_partition(bench):
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        frames = []
        async for ev, d in bc.stream("experimental.slow", "1.0", {"input": {"frames": 50, "sleep_ms": 50}}):
            frames.append((ev, d))
            if len(frames) == 2:
                os.kill(bench.broker.workers["slow_00"].pid, signal.SIGKILL)
        await bc.close()
        return frames

    frames = run(go())
    assert frames[-1][0] == "error"
    assert frames[-1][1]["error"] == "partition"


def test_silent_worker_is_declared_dead(bench):
    p = bench.worker("slow_00")
    bench.wait_ready("slow_00")
    os.kill(p.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: not bench.broker.workers["slow_00"].alive, 6, message="slow_00 declared dead")
    finally:
        os.kill(p.pid, signal.SIGCONT)


def test_call_waiting_on_a_restart_is_refused_when_the_worker_returns_without_it(bench):
    """`model rm` of the last model: the llm worker restarts and announces no capability. A
    call parked while it was down must get not_found then, not wait for its deadline."""
    p = bench.worker("slow_00")
    bench.wait_ready("slow_00")
    p.kill()
    p.wait()
    wait_for(lambda: not bench.broker.workers["slow_00"].alive, 6, message="slow_00 seen dead")

    async def go():
        bc = await _client(bench)
        task = asyncio.ensure_future(bc.call("experimental.slow", "1.0", {"input": {}}, timeout=60))
        await wait_for_async(lambda: len(bench.broker.waiting) == 1, 5, message="the call parked")
        back = FakeWorker(bench.w, "slow_00", caps=[], service="slow")  # same name, no capability
        try:
            with pytest.raises(HearthNetError) as exc:
                await task
        finally:
            back.close()
            await bc.close()
        return exc.value

    err = run(go())
    assert err.code == "not_found" and "experimental.slow" in err.message
    assert not bench.broker.waiting


def test_malformed_frames_do_not_stop_the_broker(bench):
    import zmq

    bench.worker("slow_00")
    bench.wait_ready("slow_00")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(bench.c)
    sock.send(b"\xc1not msgpack")
    sock.send_multipart([b"a", b"b"])
    sock.close(0)

    async def go():
        bc = await _client(bench)
        out = await bc.call("experimental.slow", "1.0", {"input": {}})
        await bc.close()
        return out

    assert run(go())["output"]["echo"] == {}


def test_sigterm_drains_running_calls_and_routes_new_ones_elsewhere(bench):
    a = bench.worker("slow_00")
    bench.worker("slow_01")
    bench.wait_ready("slow_00")
    bench.wait_ready("slow_01")

    async def go():
        bc = await _client(bench)
        long = asyncio.ensure_future(bc.call("experimental.slow", "1.0", {"input": {"sleep_ms": 600}}))
        await asyncio.sleep(0.1)
        busy = next(w for w in bench.broker.workers.values() if w.in_flight())
        proc = a if busy.name == "slow_00" else bench.procs[1]
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        quick = await asyncio.gather(*[bc.call("experimental.slow", "1.0", {"input": {"n": i}})
                                       for i in range(5)])
        out = await long
        traces = (await bc.admin("traces", n=6))["traces"]
        await bc.close()
        return busy.name, out, quick, traces

    busy, out, quick, traces = run(go())
    assert out["output"]["echo"] == {"sleep_ms": 600}  # finished during the drain
    assert [q["output"]["echo"]["n"] for q in quick] == [0, 1, 2, 3, 4]
    assert traces[-1]["worker"] == busy  # the long call, answered last
    assert all(t["worker"] != busy and t["result"] == "ok" for t in traces[:-1])


def FakeRemote(bench: Bench, name: str, node_id: str, reply, idempotent: bool = True) -> FakeWorker:
    """A provider announced as a remote peer proxy; answers every call with `reply`."""
    return FakeWorker(bench.w, name, [{"name": "experimental.slow", "version": "1.0", "max_concurrent": 8,
                                       "idempotent": idempotent}], node_id=node_id, reply=reply)


def _wait_named(bench: Bench, name: str) -> None:
    bench.wait_ready(name)


def test_failing_remote_is_quarantined_retried_elsewhere_and_local_preferred(bench):
    bad = FakeRemote(bench, "peer:BAD", "ed25519:bad",
                     lambda m: ("error", {"error": "partition", "message": "peer unreachable"}))
    good = None
    try:
        _wait_named(bench, "peer:BAD")
        for _ in range(4):  # the only provider fails: the caller gets the provider's error
            with pytest.raises(HearthNetError) as err:
                run(_one_call(bench))
            assert err.value.code == "partition"
        assert bench.broker._health("peer:BAD", "experimental.slow").quarantined(time.monotonic())

        good = FakeRemote(bench, "peer:GOOD", "ed25519:good",
                          lambda m: ("result", {"output": {"from": "good"}, "meta": {}}))
        _wait_named(bench, "peer:GOOD")
        tried = bad.calls
        outs = [run(_one_call(bench)) for _ in range(3)]
        assert all(o["output"] == {"from": "good"} for o in outs)
        assert bad.calls == tried  # quarantined: not tried again

        caps = run(_admin(bench, "caps"))["capabilities"]
        entry = next(c for c in caps if c["node_id"] == "ed25519:bad")
        assert entry["local"] is False and entry["health"] == "quarantined"
        traces = run(_admin(bench, "traces", n=3))["traces"]
        assert {t["route"] for t in traces} == {"remote:ed25519:good"}

        bench.worker("slow_00")
        bench.wait_ready("slow_00")
        out = run(_one_call(bench))
        assert out["output"]["echo"] == {}  # the local worker wins over the healthy remote
    finally:
        bad.close()
        if good is not None:
            good.close()


def test_idempotent_call_whose_remote_fails_is_retried_on_the_next_candidate(bench):
    bad = FakeRemote(bench, "peer:BAD", "ed25519:bad",
                     lambda m: ("error", {"error": "partition", "message": "peer unreachable"}))
    good = FakeRemote(bench, "peer:GOOD", "ed25519:good",
                      lambda m: ("result", {"output": {"from": "good"}, "meta": {}}))
    try:
        _wait_named(bench, "peer:BAD")
        _wait_named(bench, "peer:GOOD")
        bench.broker.workers["peer:GOOD"].last_dispatch = time.monotonic() + 10  # BAD is picked first
        out = run(_one_call(bench))
        assert out["output"] == {"from": "good"} and bad.calls == 1
        trace = run(_admin(bench, "traces", n=1))["traces"][-1]
        assert trace["redispatched"] == 1 and trace["route"] == "remote:ed25519:good"
    finally:
        bad.close()
        good.close()


async def _admin(bench: Bench, op: str, **args) -> dict:
    bc = await _client(bench)
    try:
        return await bc.admin(op, **args)
    finally:
        await bc.close()


async def _one_call(bench: Bench) -> dict:
    bc = await _client(bench)
    try:
        return await bc.call("experimental.slow", "1.0", {"input": {}})
    finally:
        await bc.close()


def test_non_idempotent_remote_failure_is_reported_not_retried(bench):
    bad = FakeRemote(bench, "peer:BAD", "ed25519:bad",
                     lambda m: ("error", {"error": "internal_error", "message": "boom"}), idempotent=False)
    good = FakeRemote(bench, "peer:GOOD", "ed25519:good",
                      lambda m: ("result", {"output": {}, "meta": {}}), idempotent=False)
    try:
        _wait_named(bench, "peer:BAD")
        _wait_named(bench, "peer:GOOD")
        bench.broker.workers["peer:GOOD"].last_dispatch = time.monotonic() + 10  # BAD is picked first
        with pytest.raises(HearthNetError) as err:
            run(_one_call(bench))
        assert err.value.code == "internal_error"
    finally:
        bad.close()
        good.close()


def test_targeted_call_goes_only_to_that_node(bench):
    one = FakeRemote(bench, "peer:ONE", "ed25519:one", lambda m: ("result", {"output": {"from": "one"}, "meta": {}}))
    two = FakeRemote(bench, "peer:TWO", "ed25519:two", lambda m: ("result", {"output": {"from": "two"}, "meta": {}}))

    async def call(node: str) -> dict:
        bc = await _client(bench)
        try:
            return await bc.call("experimental.slow", "1.0", {"input": {}}, node=node)
        finally:
            await bc.close()

    try:
        _wait_named(bench, "peer:ONE")
        _wait_named(bench, "peer:TWO")
        assert {run(call("ed25519:two"))["output"]["from"] for _ in range(4)} == {"two"}
        assert run(call("ed25519:one"))["output"] == {"from": "one"}
        with pytest.raises(HearthNetError) as err:  # not a provider: refused, not parked
            run(call("ed25519:three"))
        assert err.value.code == "not_found" and "ed25519:three" in err.value.message
    finally:
        one.close()
        two.close()


def test_call_from_names_the_node_that_served_the_call(bench):
    """rag.ask says which node served each passage: the broker's answer carries it."""
    remote = FakeRemote(bench, "peer:ONE", "ed25519:one", lambda m: ("result", {"output": {}, "meta": {}}))

    async def call() -> tuple[dict, str]:
        bc = await _client(bench)
        try:
            return await bc.call_from("experimental.slow", "1.0", {"input": {}})
        finally:
            await bc.close()

    try:
        _wait_named(bench, "peer:ONE")
        assert run(call()) == ({"output": {}, "meta": {}}, "ed25519:one")
    finally:
        remote.close()
    bench.broker.node_id = "ed25519:ours"  # a local worker answers for this node
    bench.worker("slow_00")
    bench.wait_ready("slow_00")
    body, node = run(call())
    assert body["output"]["echo"] == {} and node == "ed25519:ours"
