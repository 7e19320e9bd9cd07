"""The raw baseline for bench/call_latency.py: the same topology as a node's call path
(aiohttp -> ZeroMQ ROUTER broker -> worker, msgpack frames, ipc sockets) with nothing
else: no auth, no routing table, no traces, no supervisord.

    python bench/raw_pipeline.py broker RUN_DIR
    python bench/raw_pipeline.py worker RUN_DIR
    python bench/raw_pipeline.py gateway RUN_DIR   (HTTP on RUN_DIR/raw-api.sock, as a node's local API)
"""
from __future__ import annotations

import asyncio
import itertools
import json
import sys

import msgpack
import zmq
import zmq.asyncio


def broker(run_dir: str) -> None:
    """Front ROUTER for clients, back ROUTER for one worker; forwards by identity."""
    ctx = zmq.Context.instance()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    front.bind(f"ipc://{run_dir}/raw-c.ipc")
    back.bind(f"ipc://{run_dir}/raw-w.ipc")
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    worker = None
    while True:
        events = dict(poller.poll())
        if back in events:
            ident, data = back.recv_multipart()
            msg = msgpack.unpackb(data)
            if msg.get("t") == "ready":
                worker = ident
            else:
                front.send_multipart([msg["c"], data])
        if front in events and worker is not None:
            client, data = front.recv_multipart()
            msg = msgpack.unpackb(data)
            msg["c"] = client
            back.send_multipart([worker, msgpack.packb(msg)])


def worker(run_dir: str) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(f"ipc://{run_dir}/raw-w.ipc")
    sock.send(msgpack.packb({"t": "ready"}))
    while True:
        msg = msgpack.unpackb(sock.recv())
        sock.send(msgpack.packb({"t": "end", "id": msg["id"], "c": msg["c"],
                                 "d": {"output": msg["body"].get("input"), "meta": {}}}))


async def gateway(run_dir: str) -> None:
    from aiohttp import web

    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.connect(f"ipc://{run_dir}/raw-c.ipc")
    pending: dict[int, asyncio.Future] = {}
    ids = itertools.count()

    async def reader() -> None:
        while True:
            msg = msgpack.unpackb(await sock.recv())
            fut = pending.pop(msg["id"], None)
            if fut is not None:
                fut.set_result(msg["d"])

    async def call(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        rid = next(ids)
        fut = asyncio.get_running_loop().create_future()
        pending[rid] = fut
        await sock.send(msgpack.packb({"t": "call", "id": rid, "body": body}))
        return web.json_response(await fut)

    app = web.Application()
    app.router.add_post("/bus/v1/call", call)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, f"{run_dir}/raw-api.sock").start()
    asyncio.create_task(reader())
    await asyncio.Event().wait()


if __name__ == "__main__":
    role, run_dir = sys.argv[1], sys.argv[2]
    if role == "broker":
        broker(run_dir)
    elif role == "worker":
        worker(run_dir)
    else:
        asyncio.run(gateway(run_dir))
