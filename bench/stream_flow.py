"""Stream throughput with flow control against raw ZeroMQ, measured in the same run.

    .venv/bin/python bench/stream_flow.py [--rounds 3] [--chunks 800] [--tokens 40000]

Two workloads: 800 frames of a 256 KiB chunk (≈ 350 KB each on the wire, file.read's
shape: 200 MB) and 40 000 small frames (a 48-byte chunk each, like LLM tokens).

- bus: a real broker process and the experimental.echo worker process; the bench process
  reads with BusClient.stream as fast as it can. Every frame goes through the window:
  the worker waits for credit, the client acks every 8 frames consumed, the broker
  relays the acks (hearthnet/bus/flow.py).
- raw: the same three processes' shape with nothing but ZeroMQ: a producer DEALER sends
  the same msgpack frames as fast as it can, a relay process forwards the bytes between
  two ROUTERs (no decoding), the bench process's DEALER receives and unpacks them. No
  acks, no window, no broker bookkeeping.

Rounds alternate bus and raw so drift on a shared machine hits both; medians are
printed with the ratio bus / raw of frames/s and MB/s (payload bytes: the chunk bytes).
With --node, also a real node's local API (SSE over the unix socket, read by
hearthnet/testing/sse_reader.py without sleeping) for the large frames.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

BENCH = Path(__file__).resolve()
HERE = BENCH.parent


# ---- roles run as subprocesses -------------------------------------------------------

def role_broker(d: str) -> None:
    from hearthnet.broker.core import Broker

    Broker(f"ipc://{d}/w.ipc", f"ipc://{d}/c.ipc", startup_grace=0.0).serve_forever()


def role_worker(d: str) -> None:
    from hearthnet.bus.worker import run_service
    from hearthnet.services.echo import EchoService

    run_service(EchoService(), f"ipc://{d}/w.ipc", "echo_00")


def role_relay(d: str) -> None:
    """Forward bytes between the producer and the consumer: ROUTER <-> ROUTER."""
    ctx = zmq.Context.instance()
    prod, cons = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    for s, name in ((prod, "raw-p"), (cons, "raw-c")):
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.bind(f"ipc://{d}/{name}.ipc")
    poller = zmq.Poller()
    poller.register(prod, zmq.POLLIN)
    poller.register(cons, zmq.POLLIN)
    producer = consumer = None
    while True:
        events = dict(poller.poll())
        if cons in events:
            consumer, data = cons.recv_multipart()
            if producer is not None:
                prod.send_multipart([producer, data])
        if prod in events:
            ident, data = prod.recv_multipart()
            if producer is None:
                producer = ident  # its hello
            elif consumer is not None:
                cons.send_multipart([consumer, data])


def role_producer(d: str) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(f"ipc://{d}/raw-p.ipc")
    sock.send(b"hello")
    while True:
        n, size = msgpack.unpackb(sock.recv())
        data = base64.urlsafe_b64encode(os.urandom(size)).rstrip(b"=").decode()
        for i in range(n):
            sock.send(msgpack.packb({"t": "frame", "id": 1, "ev": "chunk", "d": {"i": i, "data_b64": data}}))
        sock.send(msgpack.packb({"t": "end", "id": 1, "ev": "done", "d": {"chunks": n}}))


ROLES = {"broker": role_broker, "worker": role_worker, "relay": role_relay, "producer": role_producer}


# ---- measurements ---------------------------------------------------------------------

async def bus_stream(d: str, n: int, size: int) -> tuple[float, int]:
    from hearthnet.bus.client import BusClient

    bc = BusClient(f"ipc://{d}/c.ipc")
    await bc.start()
    try:
        t0, frames = time.perf_counter(), 0
        async for ev, _ in bc.stream("experimental.echo", "1.0", {"input": {"chunks": n, "chunk_bytes": size}},
                                     timeout=3600):
            if ev == "error":
                raise RuntimeError(f"bus stream failed: {_}")
            frames += ev == "chunk"
        return time.perf_counter() - t0, frames
    finally:
        await bc.close()


def raw_stream(sock: zmq.Socket, n: int, size: int) -> tuple[float, int]:
    t0, frames = time.perf_counter(), 0
    sock.send(msgpack.packb([n, size]))
    while True:
        msg = msgpack.unpackb(sock.recv(), raw=False)
        if msg["t"] == "end":
            return time.perf_counter() - t0, frames
        frames += 1


def node_stream(n: int, size: int) -> tuple[float, int]:
    from hearthnet.testing.nodes import Node

    tmp = tempfile.TemporaryDirectory(prefix="hn-bench-")
    node = Node(Path(tmp.name), "bench")
    node.env["HEARTHNET_WORKERS_ECHO"] = "true"
    try:
        node.init()
        node.start(wait_workers=("broker", "gateway", "echo"))
        body = json.dumps({"params": {}, "input": {"chunks": n, "chunk_bytes": size}})
        out = subprocess.run([sys.executable, "-m", "hearthnet.testing.sse_reader", str(node.run_dir),
                              "experimental.echo", body, "--timeout", "3600"],
                             env=node.env, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        return r["seconds"], r["frames"] - 1
    finally:
        node.cleanup()
        tmp.cleanup()


def rates(seconds: float, frames: int, size: int) -> dict[str, float]:
    return {"frames_per_s": round(frames / seconds), "mb_per_s": round(frames * size / seconds / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=sorted(ROLES))
    ap.add_argument("--dir")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=800)
    ap.add_argument("--tokens", type=int, default=40_000)
    ap.add_argument("--node", action="store_true", help="also a real node's local API (SSE)")
    args = ap.parse_args()
    if args.role:
        ROLES[args.role](args.dir)
        return
    d = tempfile.mkdtemp(prefix="hn-sf-", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, str(BENCH), "--role", r, "--dir", d], env=env)
             for r in ("broker", "relay", "worker", "producer")]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(f"ipc://{d}/raw-c.ipc")
    workloads = {"chunks_256KiB": (args.chunks, 256 * 1024), "tokens_48B": (args.tokens, 48)}
    results: dict[str, dict[str, list[dict]]] = {w: {"bus": [], "raw": []} for w in workloads}
    try:
        time.sleep(1.5)  # the worker announces itself, the producer says hello
        for _ in range(args.rounds):
            for w, (n, size) in workloads.items():
                results[w]["bus"].append(rates(*asyncio.run(bus_stream(d, n, size)), size))
                results[w]["raw"].append(rates(*raw_stream(sock, n, size), size))
    finally:
        sock.close(0)
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
    summary = {w: {k: {m: statistics.median(r[m] for r in runs) for m in ("frames_per_s", "mb_per_s")}
                   for k, runs in ks.items()} for w, ks in results.items()}
    for w in summary:
        summary[w]["ratio_bus_over_raw"] = round(summary[w]["bus"]["frames_per_s"] / summary[w]["raw"]["frames_per_s"], 2)
    if args.node:
        n, size = workloads["chunks_256KiB"]
        summary["chunks_256KiB"]["node_local_api_sse"] = rates(*node_stream(n, size), size)
    print(json.dumps({"median_of_rounds": summary, "rounds": args.rounds}, indent=2))
    for w, s in summary.items():
        print(f"{w}: bus with flow control {s['bus']['frames_per_s']} frames/s, {s['bus']['mb_per_s']} MB/s; "
              f"raw ZeroMQ {s['raw']['frames_per_s']} frames/s, {s['raw']['mb_per_s']} MB/s; "
              f"bus/raw {s['ratio_bus_over_raw']}x")


if __name__ == "__main__":
    main()
