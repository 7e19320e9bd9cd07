"""Stream flow control through a real broker (ZeroMQ ipc sockets): acks relayed from the
client to the worker as the reader consumes, at most one window per stream anywhere, a
worker that ignores the window cut off, a stalled reader's stream ended and freed."""
from __future__ import annotations

import asyncio
from typing import Any

from hearthnet.bus import flow
from hearthnet.bus import protocol as P
from hearthnet.bus.zmqloop import LoopDealer
from hearthnet.constants import STREAM_STALL_TIMEOUT_SECONDS, STREAM_WINDOW_FRAMES
from hearthnet.testing.waiting import wait_for, wait_for_async
from tests.unit.broker.test_broker import _client, bench, run  # noqa: F401  (bench is a fixture)

W = STREAM_WINDOW_FRAMES


class FakeWorker:
    """A worker socket driven by the test: it sends exactly the frames the test says."""

    def __init__(self, endpoint: str, name: str = "fake_00") -> None:
        self.got: asyncio.Queue = asyncio.Queue()
        self.dealer = LoopDealer(endpoint, self.got.put_nowait)
        self.dealer.send({"t": P.READY, "worker": name, "service": "fake", "caps": [{
            "name": "experimental.fake", "version": "1.0", "stability": "experimental",
            "schema_hash": "blake3:" + "0" * 64, "params": {}, "max_concurrent": 4,
            "trust_required": "member", "timeout_seconds": 30, "idempotent": False,
            "streams": True}]})

    async def next(self, kind: str) -> dict[str, Any]:
        while True:
            msg = await asyncio.wait_for(self.got.get(), 10)
            if msg.get("t") == kind:
                return msg

    def frames(self, rid: int, start: int, n: int) -> None:
        for i in range(start, start + n):
            self.dealer.send({"t": P.FRAME, "id": rid, "ev": "token", "d": {"i": i}})


def test_the_worker_gets_acks_as_the_reader_consumes_not_as_frames_arrive(bench):
    async def go():
        worker = FakeWorker(bench.w)
        await wait_for_async(lambda: "fake_00" in bench.broker.workers, 10, 0.01)
        bc = await _client(bench)
        frames = bc.stream("experimental.fake", "1.0", {})
        first = asyncio.ensure_future(frames.__anext__())
        req = await worker.next(P.REQ)
        worker.frames(req["id"], 0, W)  # a full window
        await first
        queue = next(iter(bc.pending.values()))
        await wait_for_async(lambda: queue.qsize() == W - 1, 10, 0.01)
        early = worker.got.qsize()  # all W frames arrived, only one taken: no ack yet
        got = [await frames.__anext__() for _ in range(8)]  # the 9th request acks 8
        ack = await worker.next(P.ACK)
        await frames.aclose()
        await worker.next(P.CANCEL)
        worker.dealer.close()
        await bc.close()
        return early, got, ack, req

    early, got, ack, req = run(go())
    assert early == 0
    assert [d["i"] for _, d in got] == list(range(1, 9))
    assert ack == {"t": P.ACK, "id": req["id"], "upto": 8}


def test_a_worker_that_sends_past_its_window_is_cut_off(bench):
    async def go():
        worker = FakeWorker(bench.w)
        await wait_for_async(lambda: "fake_00" in bench.broker.workers, 10, 0.01)
        bc = await _client(bench)
        frames = bc.stream("experimental.fake", "1.0", {})
        first = asyncio.ensure_future(frames.__anext__())
        req = await worker.next(P.REQ)
        worker.frames(req["id"], 0, W + 50)  # ignores the window
        # the broker cuts it off before the reader takes more than the first frame, so no
        # credit the reader returns can widen the window (under load it otherwise may)
        cancel = await worker.next(P.CANCEL)
        out = [await first]
        async for f in frames:
            out.append(f)
        worker.dealer.send({"t": P.END, "id": req["id"], "ev": P.ERROR,
                            "d": P.error_body("cancelled", "cancelled")})
        await wait_for_async(lambda: not bench.broker.calls, 10, 0.01)
        worker.dealer.close()
        await bc.close()
        return out, cancel, req

    out, cancel, req = run(go())
    assert len(out) == W + 1  # the window's frames, then the error: nothing past the window
    assert out[-1][0] == "error" and out[-1][1]["error"] == "internal_error"
    assert "flow control" in out[-1][1]["message"]
    assert cancel["id"] == req["id"]


def test_a_slow_reader_gets_every_frame_and_no_hop_holds_more_than_a_window(bench):
    """A real worker streams 300 frames as fast as it can; the reader takes one every
    2 ms. Each time the reader looks, the broker's unconsumed count for the call and the
    client's queue are within one window."""
    bench.worker("slow_00")
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        seen, in_flight, queued = [], [], []
        frames = bc.stream("experimental.slow", "1.0", {"input": {"frames": 300}})
        async for ev, d in frames:
            seen.append((ev, d))
            calls = list(bench.broker.calls.values())
            in_flight.append(calls[0].flow.in_flight() if calls else 0)
            queued.append(sum(q.qsize() for q in bc.pending.values()))
            await asyncio.sleep(0.002)
        await bc.close()
        return seen, in_flight, queued

    seen, in_flight, queued = run(go())
    assert [d["text"] for _, d in seen[:-1]] == [str(i) for i in range(300)]
    assert seen[-1] == ("done", {"tokens_out": 300})
    assert max(in_flight) <= W and max(queued) <= W + 1  # + the END
    assert max(in_flight) >= W // 2  # the producer did run ahead of the reader


def test_a_stalled_reader_gets_its_stream_ended_and_everything_freed(bench):
    """The reader takes two frames and stops; past the worker's stall timeout (0.3 s
    here) the worker ends the stream with `timeout`, the broker frees the call and the
    slot, and the provider's health is not blamed for it."""
    bench.worker("slow_00", env={"HN_TEST_STALL_SECONDS": "0.3"})
    bench.wait_ready("slow_00")

    async def go():
        bc = await _client(bench)
        frames = bc.stream("experimental.slow", "1.0", {"input": {"frames": 10_000}})
        head = [await frames.__anext__(), await frames.__anext__()]
        broker = bench.broker
        await wait_for_async(lambda: not broker.calls and broker.workers["slow_00"].in_flight() == 0,
                             10, 0.02, message="stalled stream freed")
        rest = [f async for f in frames]  # what was still queued for the reader, then the end
        health = broker.health.get(("slow_00", "experimental.slow"))
        await bc.close()
        return head, rest, health, broker.workers["slow_00"].errors

    head, rest, health, errors = run(go())
    assert len(head) + len(rest) - 1 <= W  # the reader acked nothing: one window, no more
    assert rest[-1][0] == "error" and rest[-1][1]["error"] == "timeout"
    assert health is None or not health.samples  # a stalled reader is not the provider's fault
    assert errors == 1


def test_a_reader_slower_per_eight_frames_than_the_stall_timeout_is_not_cut(bench):
    """Stall timeout 1 s on both sides; the reader takes 0.3 s over each frame, so eight
    frames take 2.4 s. It still gets every frame: it acks each frame once it is slow."""
    bench.worker("slow_00", env={"HN_TEST_STALL_SECONDS": "1"})
    bench.wait_ready("slow_00")

    async def go():
        flow.configure(1.0)
        try:
            bc = await _client(bench)
            seen = []
            async for ev, d in bc.stream("experimental.slow", "1.0", {"input": {"frames": W + 8}}):
                seen.append((ev, d))
                await asyncio.sleep(0.3)
            await bc.close()
            return seen
        finally:
            flow.configure(STREAM_STALL_TIMEOUT_SECONDS)

    seen = run(go())
    assert seen[-1] == ("done", {"tokens_out": W + 8})
