"""Malformed messages on the broker's sockets (any process on the node may write there):
each is dropped with one log line, and the broker keeps serving (issue 6 §5)."""
from __future__ import annotations

import logging
import os
import time

import msgpack
import pytest
import zmq

from hearthnet.bus import protocol as P
from hearthnet.errors import HearthNetError
from tests.unit.broker.test_broker import _client, bench, run  # noqa: F401  (bench is a fixture)

DEEP: object = []
for _ in range(900):
    DEEP = [DEEP]

# (socket, message): each one crashed or could crash the broker before it checked frames.
MALFORMED = [
    ("client", [1, 2, 3]),  # not a map
    ("client", "call"),
    ("client", {"t": "call", "id": [1], "cap": "experimental.slow"}),  # unhashable id
    ("client", {"t": "call", "id": {"a": 1}, "cap": "experimental.slow"}),
    ("client", {"t": "call", "id": 7, "cap": "experimental.slow", "timeout": "soon"}),
    ("client", {"t": "call", "id": 8, "cap": "experimental.slow", "timeout": float("nan")}),
    ("client", {"t": "call", "id": 9, "cap": "experimental.slow", "timeout": -1}),
    ("client", {"t": "call", "id": 10, "cap": ["experimental.slow"]}),
    ("client", {"t": "call", "id": 11, "cap": "x" * 10_000}),
    ("client", {"t": "call", "id": 12, "cap": "experimental.slow", "stream": "yes"}),
    ("client", {"t": "cancel", "id": [1, 2]}),
    ("client", {"t": "admin", "id": 13, "op": "traces", "args": {"n": "all"}}),
    ("client", {"t": "admin", "id": 14, "op": "traces", "args": [1]}),
    ("client", {"t": "admin", "id": 15, "op": "traces", "args": {"capability": {"x": 1}}}),
    ("client", {"t": 5}),
    ("client", {}),
    ("worker", [{"t": "ready"}]),
    ("worker", {"t": "ready", "worker": ["w"], "caps": []}),
    ("worker", {"t": "ready", "worker": "evil", "caps": "all of them"}),
    ("worker", {"t": "ready", "worker": "evil", "caps": [], "pid": "me"}),
    ("worker", {"t": "ready", "worker": "evil", "caps": [], "note": {"n": 1}}),
    ("worker", {"t": "hb", "note": [1]}),
    ("worker", {"t": "end", "id": [1], "ev": "result", "d": {}}),
    ("worker", {"t": "end", "id": 1, "ev": {"x": 1}, "d": {}}),
    ("worker", {"t": "end", "id": 1, "ev": "maybe", "d": {}}),
    ("worker", {"t": "frame", "id": "x", "ev": "token", "d": {}}),
    ("worker", {"t": "reject", "id": None}),
    ("worker", {"t": b"\x00"}),
]


def _dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _call_ok(bench) -> dict:  # noqa: F811
    async def go():
        bc = await _client(bench)
        try:
            return await bc.call("experimental.slow", "1.0", {"input": {"ok": 1}}, timeout=10)
        finally:
            await bc.close()

    return run(go())


def test_malformed_messages_are_dropped_and_the_broker_keeps_serving(bench, caplog):  # noqa: F811
    bench.worker("slow_00")
    bench.wait_ready("slow_00")
    socks = {"client": _dealer(bench.c), "worker": _dealer(bench.w)}
    caplog.set_level(logging.WARNING, "hearthnet.broker")
    try:
        for side, msg in MALFORMED:
            socks[side].send(msgpack.packb(msg, use_bin_type=True))
        socks["client"].send(b"\xc1 not msgpack at all")
        socks["client"].send(b"\xdd\xff\xff\xff\xff")  # an array of 4 G entries, 5 bytes long
        socks["client"].send(b"\x91" * 5000 + b"\x90")  # nested deeper than msgpack unpacks
        socks["worker"].send_multipart([b"three", b"part", b"message"])
        time.sleep(0.3)
        assert bench.thread.is_alive()
        assert _call_ok(bench)["output"]["echo"] == {"ok": 1}
    finally:
        for sock in socks.values():
            sock.close(0)
    assert "evil" not in bench.broker.workers
    dropped = [r for r in caplog.records if "malformed broker frame" in r.getMessage()]
    assert dropped and not [r for r in caplog.records if "broker failed" in r.getMessage()]


def test_a_flood_of_one_malformed_message_is_logged_once(bench, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, "hearthnet.broker")
    sock = _dealer(bench.c)
    try:
        for _ in range(200):
            sock.send(msgpack.packb({"t": "call", "id": [1]}))
        time.sleep(0.3)
    finally:
        sock.close(0)
    dropped = [r for r in caplog.records if "malformed broker frame" in r.getMessage()]
    assert len(dropped) == 1


def test_ready_with_a_bad_descriptor_keeps_the_good_ones(bench):  # noqa: F811
    sock = _dealer(bench.w)
    try:
        sock.send(P.pack({"t": "ready", "worker": "mixed", "service": "x", "pid": os.getpid(), "caps": [
            {"name": "experimental.good", "version": "1.0", "max_concurrent": 2},
            {"name": "experimental.bad", "version": "1.0", "max_concurrent": "lots"},
            {"name": "experimental.worse", "version": 1, "timeout_seconds": "soon"},
            "not a descriptor", {"version": "1.0"},
            {"name": "experimental.p", "version": "1.0", "params": {"models": 5}, "trust_required": "god"},
        ]}))
        bench.wait_ready("mixed")
        assert set(bench.broker.workers["mixed"].caps) == {"experimental.good"}
    finally:
        sock.close(0)


def test_a_workers_malformed_error_reaches_the_caller_as_internal_error(bench):  # noqa: F811
    """An error end whose body is not an error object used to crash the broker
    (`(data or {}).get` on a string); now the caller gets internal_error."""
    import asyncio

    sock = _dealer(bench.w)
    sock.send(P.pack({"t": "ready", "worker": "odd", "service": "x", "pid": os.getpid(), "caps": [
        {"name": "experimental.odd", "version": "1.0", "max_concurrent": 4}]}))
    bench.wait_ready("odd")

    async def go():
        bc = await _client(bench)
        codes = []
        try:
            for body in ("boom", ["x"], {"error": ["x"]}, 7):
                task = asyncio.ensure_future(bc.call("experimental.odd", "1.0", {}, timeout=10))
                req: dict = {}
                while req.get("t") != "req":
                    while not sock.poll(0):
                        await asyncio.sleep(0.01)
                    req = P.unpack(sock.recv())
                sock.send(P.pack({"t": "end", "id": req["id"], "ev": "error", "d": body}))
                with pytest.raises(HearthNetError) as err:
                    await task
                codes.append(err.value.code)
        finally:
            await bc.close()
        return codes

    try:
        assert run(go()) == ["internal_error"] * 4
        assert bench.thread.is_alive()
    finally:
        sock.close(0)
