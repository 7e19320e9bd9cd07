"""The broker's wire protocol: one msgpack map per ZeroMQ message (DESIGN.md §4).

Workers (DEALER) <-> broker ROUTER on `workers.ipc`:
  worker -> broker  {"t": "ready", "worker", "service", "pid", "caps": [descriptor], "note"}
                    {"t": "hb", "note"}            every HEARTBEAT_INTERVAL_SECONDS
                    {"t": "frame", "id", "ev", "d"} one stream frame
                    {"t": "end", "id", "ev", "d"}   terminal: ev = result | done | error
                    {"t": "drain"}                  stopping: send no new requests
                    {"t": "reject", "id"}           not taken (draining): route it elsewhere
                    {"t": "bye"}                    gone; unanswered calls are re-dispatched
  broker -> worker  {"t": "req", "id", "cap", "v", "body", "stream", "caller", "trace", "ttl"}
                    {"t": "cancel", "id"}
                    {"t": "hb"} / {"t": "who"} (unknown worker: announce READY again)

Clients (gateway, bench; DEALER) <-> broker ROUTER on `clients.ipc`:
  client -> broker  {"t": "call", "id", "cap", "v", "body", "stream", "caller", "trace", "timeout"}
                    {"t": "cancel", "id"}
                    {"t": "admin", "id", "op": "workers" | "caps" | "traces", "args": {}}
  broker -> client  {"t": "frame", "id", "ev", "d"} and one {"t": "end", "id", "ev", "d"}
"""
from __future__ import annotations

import functools
from typing import Any

import msgpack

READY, HB, FRAME, END, BYE, REQ, CANCEL, WHO, CALL, ADMIN, DRAIN, REJECT = (
    "ready", "hb", "frame", "end", "bye", "req", "cancel", "who", "call", "admin", "drain",
    "reject",
)
RESULT, DONE, ERROR = "result", "done", "error"

_packer = msgpack.Packer(use_bin_type=True)


def pack(msg: dict[str, Any]) -> bytes:
    return _packer.pack(msg)


def unpack(data: bytes) -> dict[str, Any]:
    msg = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(msg, dict):
        raise ValueError("broker message is not a map")
    return msg


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


@functools.lru_cache(maxsize=256)
def version_matches(requested: str, offered: str) -> bool:
    """CONTRACT §2.1: `name@>=A.B` matches offer X.Y iff X == A and Y >= B."""
    try:
        ra, rb = (int(x) for x in requested.split(".", 1))
        oa, ob = (int(x) for x in offered.split(".", 1))
    except ValueError:
        return False
    return ra == oa and ob >= rb
