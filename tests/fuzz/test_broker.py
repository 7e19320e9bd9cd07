"""Fuzz (a): the broker's frame decoder and handlers. Random bytes and random msgpack
structures (well-formed messages with one field made hostile, and anything at all) go
straight into a real Broker's receive path from both sockets, and then over its real
ROUTER sockets; afterwards the same broker still serves a normal call from a real worker,
and no handler ever failed (the "broker failed" last-resort log stays empty)."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from hearthnet.broker.core import Broker
from hearthnet.bus import protocol as P
from hearthnet.bus.client import BusClient
from tests.fuzz.strategies import deep, msgpack_values, mutate
from tests.unit.broker.test_broker import Bench

CAPS = ["experimental.slow", "experimental.fuzz", "llm.chat", "x"]
GOOD: dict[str, dict[str, Any]] = {
    "ready": {"t": "ready", "worker": "fuzz_00", "service": "fuzz", "pid": os.getpid(), "note": None,
              "caps": [{"name": "experimental.fuzz", "version": "1.0", "max_concurrent": 2,
                        "timeout_seconds": 30, "idempotent": True, "params": {"models": ["a"]},
                        "trust_required": "member", "stability": "beta", "schema_hash": "blake3:0"}]},
    "hb": {"t": "hb", "note": "fine"},
    "frame": {"t": "frame", "id": 1, "ev": "token", "d": {"text": "x"}},
    "end": {"t": "end", "id": 1, "ev": "result", "d": {"output": {}, "meta": {"tokens_in": 1}}},
    "end_error": {"t": "end", "id": 2, "ev": "error", "d": {"error": "partition", "message": "x"}},
    "reject": {"t": "reject", "id": 1},
    "drain": {"t": "drain"},
    "bye": {"t": "bye"},
    "call": {"t": "call", "id": 1, "cap": "experimental.fuzz", "v": "1.0", "body": {"input": {}},
             "stream": False, "caller": "", "trace": "T", "timeout": 5, "local_only": False},
    "cancel": {"t": "cancel", "id": 1},
    "ack": {"t": "ack", "id": 1, "upto": 8},
    "admin": {"t": "admin", "id": 1, "op": "traces", "args": {"n": 5, "capability": "x"}},
}
WORKER_KINDS = ["ready", "hb", "frame", "end", "end_error", "reject", "drain", "bye"]
CLIENT_KINDS = ["call", "cancel", "ack", "admin"]


@st.composite
def messages(draw: Any, kinds: list[str]) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        try:
            return msgpack.packb(draw(msgpack_values | deep), use_bin_type=True)
        except ValueError:  # deeper than msgpack packs: the same nesting, written by hand
            return b"\x91" * 2000 + b"\xc0"
    good = GOOD[draw(st.sampled_from(kinds))]
    paths = [(k,) for k in good] + [("id",), ("extra",)]
    if "caps" in good:
        paths += [("caps", 0, k) for k in good["caps"][0]] + [("caps", 0)]
    if isinstance(good.get("args"), dict):
        paths += [("args", "n"), ("args", "capability")]
    msg = mutate(draw, good, paths) if choice == 2 else dict(good, id=draw(st.integers(0, 5)),
                                                            cap=draw(st.sampled_from(CAPS)))
    try:
        return msgpack.packb(msg, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        return msgpack.packb(None)


@pytest.fixture(scope="module")
def broker_dir():
    short = Path(f"/tmp/hn-fuzz-{os.getpid()}")
    short.mkdir(exist_ok=True)
    yield short
    shutil.rmtree(short, ignore_errors=True)


class Failures(logging.Handler):
    """Counts the broker's last-resort "a handler raised" lines."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "broker failed" in record.getMessage():
            self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def idle_broker(broker_dir):
    """A broker that is not polling: the test thread feeds its receive path directly."""
    b = Broker(f"ipc://{broker_dir}/w.ipc", f"ipc://{broker_dir}/c.ipc", startup_grace=0.0)
    failures = Failures()
    logging.getLogger("hearthnet.broker").addHandler(failures)
    yield b, failures
    logging.getLogger("hearthnet.broker").removeHandler(failures)
    b.close()


@given(st.lists(st.tuples(st.sampled_from(["worker", "client"]), st.binary(min_size=1, max_size=8)), min_size=1,
                max_size=4), st.data())
def test_handlers_survive_anything(idle_broker, senders, data):
    broker, failures = idle_broker
    for side, ident in senders:
        kinds = WORKER_KINDS if side == "worker" else CLIENT_KINDS
        raw = data.draw(messages(kinds))
        (broker.receive_worker if side == "worker" else broker.receive_client)(ident, raw)
    broker._tick()  # deadlines and heartbeats run over whatever state the messages left
    assert not failures.lines, failures.lines[0]


@given(st.lists(st.binary(max_size=100) | messages(CLIENT_KINDS + WORKER_KINDS), min_size=1, max_size=20))
@pytest.mark.parametrize("side", ["worker", "client"])
def test_sockets_survive_anything(fuzz_bench, side, frames):
    sock = fuzz_bench.sockets[side]
    for raw in frames:
        sock.send(raw)


@pytest.fixture(scope="module")
def fuzz_bench():
    short = Path(f"/tmp/hn-fuzzs-{os.getpid()}")
    short.mkdir(exist_ok=True)
    bench = Bench(short)
    failures = Failures()
    logging.getLogger("hearthnet.broker").addHandler(failures)
    ctx = zmq.Context.instance()
    bench.sockets = {}
    for side, endpoint in (("worker", bench.w), ("client", bench.c)):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        bench.sockets[side] = sock
    bench.failures = failures
    try:
        yield bench
        # After everything: the broker still serves a real worker's call.
        time.sleep(0.5)
        assert bench.thread.is_alive()
        bench.worker("slow_00", cap="experimental.after_fuzz")
        bench.wait_ready("slow_00")

        async def go():
            bc = BusClient(bench.c)
            await bc.start()
            try:
                return await bc.call("experimental.after_fuzz", "1.0", {"input": {"ok": 1}}, timeout=20)
            finally:
                await bc.close()

        assert asyncio.run(go())["output"]["echo"] == {"ok": 1}
        assert not failures.lines, failures.lines[0]
    finally:
        for sock in bench.sockets.values():
            sock.close(0)
        logging.getLogger("hearthnet.broker").removeHandler(failures)
        bench.close()
        shutil.rmtree(short, ignore_errors=True)


def test_idle_broker_then_serves(idle_broker):
    """The broker fed by test_handlers_survive_anything still routes a call end to end."""
    broker, failures = idle_broker
    thread = threading.Thread(target=broker.serve_forever, daemon=True)
    thread.start()
    worker = zmq.Context.instance().socket(zmq.DEALER)
    worker.setsockopt(zmq.LINGER, 0)
    worker.connect(broker.wsock.getsockopt(zmq.LAST_ENDPOINT).decode())
    worker.send(P.pack({"t": "ready", "worker": "final", "service": "f", "pid": os.getpid(),
                        "caps": [{"name": "experimental.final", "version": "1.0", "max_concurrent": 1}]}))

    async def go():
        bc = BusClient(broker.csock.getsockopt(zmq.LAST_ENDPOINT).decode())
        await bc.start()
        try:
            task = asyncio.ensure_future(bc.call("experimental.final", "1.0", {"input": 1}, timeout=20))
            while True:
                while not worker.poll(0):
                    await asyncio.sleep(0.01)
                req = P.unpack(worker.recv())
                if req.get("t") == "req":
                    break
            worker.send(P.pack({"t": "end", "id": req["id"], "ev": "result", "d": {"output": "fine"}}))
            return await task
        finally:
            await bc.close()

    try:
        assert asyncio.run(go())["output"] == "fine"
        assert thread.is_alive() and not failures.lines
    finally:
        broker.stop()
        thread.join(5)
        worker.close(0)
