"""A fake bus worker for broker tests: a DEALER that announces `caps` (as a local worker, or
as a peer's proxy when `node_id` is given), answers heartbeats, counts the requests it gets
and answers each with `reply(msg) -> (event, data)`."""
from __future__ import annotations

import os
import threading
from typing import Any, Callable

import zmq

from hearthnet.bus import protocol as P

Reply = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


def empty_result(_msg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "result", {"output": {}, "meta": {}}


class FakeWorker:
    def __init__(self, endpoint: str, name: str, caps: list[dict[str, Any]], *, node_id: str | None = None,
                 service: str = "remote", reply: Reply = empty_result) -> None:
        self.name = name
        self.reply = reply
        self.requests: list[str] = []
        self.stop = threading.Event()
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.connect(endpoint)
        self.sock.send(P.pack({"t": "ready", "worker": name, "service": service, "pid": os.getpid(),
                               "remote": node_id is not None, "node_id": node_id, "caps": caps}))
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _loop(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(50):
                continue
            msg = P.unpack(self.sock.recv())
            if msg.get("t") == "req":
                self.requests.append(msg["cap"])
                ev, d = self.reply(msg)
                self.sock.send(P.pack({"t": "end", "id": msg["id"], "ev": ev, "d": d}))
            elif msg.get("t") == "hb":
                self.sock.send(P.pack({"t": "hb"}))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close(0)
