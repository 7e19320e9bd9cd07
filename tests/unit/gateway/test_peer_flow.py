"""The peer proxy forwards a peer's stream into the broker only as fast as the reader
acknowledges: it pulls no more from the peer's connection than one window ahead."""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import zmq

from hearthnet.bus import protocol as P
from hearthnet.constants import STREAM_WINDOW_FRAMES
from hearthnet.gateway.peers import PeerProxy
from hearthnet.testing.waiting import wait_for_async

W = STREAM_WINDOW_FRAMES
PEER = {"node_id": "ed25519:" + "A" * 43, "node_id_short": "AAAA", "endpoint": ["127.0.0.1", 1],
        "manifest": {"capabilities": []}}


class EndlessPeer:
    """A PeerClient whose stream never ends; counts the frames taken from it."""

    def __init__(self) -> None:
        self.pulled = 0
        self.closed = False

    async def stream(self, *args: Any, **kw: Any):
        try:
            while True:
                self.pulled += 1
                yield "chunk", {"i": self.pulled}
        finally:
            self.closed = True


def test_the_proxy_reads_the_peer_one_window_ahead_of_the_acks(tmp_path):
    async def go():
        path = f"/tmp/hn-pf-{os.getpid()}-{time.monotonic_ns() % 10**8}.ipc"
        router = zmq.Context.instance().socket(zmq.ROUTER)
        router.bind(f"ipc://{path}")
        peer = EndlessPeer()
        proxy = PeerProxy(f"ipc://{path}", peer, PEER)
        await proxy.start()
        try:
            ident, _ready = router.recv_multipart()
            router.send_multipart([ident, P.pack({"t": P.REQ, "id": 7, "cap": "file.read", "v": "1.0",
                                                  "body": {}, "stream": True, "ttl": 30})])
            await wait_for_async(lambda: peer.pulled >= W, 10, 0.01)
            for _ in range(20):  # give it every chance to read on; it must not
                await asyncio.sleep(0)
            held = peer.pulled
            router.send_multipart([ident, P.pack({"t": P.ACK, "id": 7, "upto": 8})])
            await wait_for_async(lambda: peer.pulled >= W + 8, 10, 0.01)
            for _ in range(20):
                await asyncio.sleep(0)
            after_ack = peer.pulled
            router.send_multipart([ident, P.pack({"t": P.CANCEL, "id": 7})])
            await wait_for_async(lambda: peer.closed and not proxy.credits, 10, 0.01)
            return held, after_ack
        finally:
            await proxy.close()
            router.close(0)
            os.unlink(path)

    held, after_ack = asyncio.run(go())
    assert held == W and after_ack == W + 8
