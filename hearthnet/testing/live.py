"""A raw reader of a node's live feed (GET /api/v1/subscribe) for integration tests and
bench/live.py: its own connection over the node's unix socket, a thread parsing SSE
blocks into a queue (with the time each arrived), so a test waits for frames with a
bound instead of blocking forever. Deliberately independent of hearthnet.localapi."""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from hearthnet.unixhttp import UnixHTTPConnection


@dataclass
class Frame:
    event: str
    id: str | None
    data: Any
    at: float  # time.perf_counter() when its blank line arrived

    @property
    def event_id(self) -> str | None:
        return self.data.get("event_id") if isinstance(self.data, dict) else None


class Feed:
    def __init__(self, node: Any, topics: list[str], last_event_id: str | None = None,
                 since: str | None = None, *, ledger_input: dict[str, Any] | None = None,
                 read_after: float = 0.0) -> None:
        """GET /api/v1/subscribe; or, with `ledger_input`, the bare ledger subscription
        (POST /bus/v1/call community.log.subscribe as SSE: the baseline of bench/live.py).
        `read_after`: seconds to leave the stream unread first (a client that falls behind)."""
        self.read_after = read_after
        query = [("topic", t) for t in topics] + ([("since", since)] if since is not None else [])
        headers = {"Authorization": f"Bearer {node.token()}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn = UnixHTTPConnection(str(node.api_socket), timeout=30)
        if ledger_input is None:
            self.conn.request("GET", f"/api/v1/subscribe?{urllib.parse.urlencode(query)}", headers=headers)
        else:
            headers.update({"X-HearthNet-Capability": "community.log.subscribe", "Content-Type": "application/json"})
            self.conn.request("POST", "/bus/v1/call", json.dumps({"params": {}, "input": ledger_input}), headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.frames: queue.Queue = queue.Queue()
        self.comments = 0
        if self.status == 200:
            self.conn.sock.settimeout(None)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        time.sleep(self.read_after)
        block: dict[str, str] = {}
        try:
            while True:
                raw = self.resp.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line:
                    name, _, value = line.partition(":")
                    block[name] = value[1:] if value.startswith(" ") else value
                elif "data" in block:
                    self.frames.put(Frame(block.get("event", "message"), block.get("id"),
                                          json.loads(block["data"]), time.perf_counter()))
                    block = {}
        except (OSError, ValueError, AttributeError):  # AttributeError: closed under http.client's feet
            pass
        self.frames.put(None)  # the stream ended

    def next(self, timeout: float = 30) -> Frame:
        frame = self.frames.get(timeout=timeout)
        if frame is None:
            raise EOFError("the live feed ended")
        return frame

    def take(self, n: int, timeout: float = 30) -> list[Frame]:
        return [self.next(timeout) for _ in range(n)]

    def close(self) -> None:
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
