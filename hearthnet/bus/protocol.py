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
                    {"t": "ack", "id", "upto"}     the reader consumed `upto` frames of this
                                                    worker's stream (flow control, bus/flow.py)
                    {"t": "hb"} / {"t": "who"} (unknown worker: announce READY again)

Clients (gateway, bench; DEALER) <-> broker ROUTER on `clients.ipc`:
  client -> broker  {"t": "call", "id", "cap", "v", "body", "stream", "caller", "trace", "timeout"}
                    {"t": "cancel", "id"}
                    {"t": "ack", "id", "upto"}     `upto` frames of stream `id` consumed
                    {"t": "admin", "id", "op": "workers" | "caps" | "traces" | "metrics", "args": {}}
  broker -> client  {"t": "frame", "id", "ev", "d"} and one {"t": "end", "id", "ev", "d"}

Every process on the node may talk to the broker's sockets, so the broker checks each
message it receives (`worker_problem`, `client_problem`): a malformed one is dropped with
one log line, never allowed to raise inside the broker's loop.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import msgpack

from hearthnet import validate
from hearthnet.errors import HearthNetError

READY, HB, FRAME, END, BYE, REQ, CANCEL, WHO, CALL, ADMIN, DRAIN, REJECT = (
    "ready", "hb", "frame", "end", "bye", "req", "cancel", "who", "call", "admin", "drain",
    "reject",
)
ACK = "ack"  # stream flow control: frames consumed so far (hearthnet/bus/flow.py)
RESULT, DONE, ERROR = "result", "done", "error"

_packer = msgpack.Packer(use_bin_type=True)


class EncodeError(HearthNetError, ValueError):
    """A message msgpack cannot carry (an int beyond 64 bits, nesting over its limit, a
    type it does not know): the caller's bad data, not a crash of whoever sends it."""

    code = "bad_request"


def pack(msg: dict[str, Any]) -> bytes:
    try:
        return _packer.pack(msg)
    except (ValueError, TypeError, OverflowError) as exc:  # msgpack resets its buffer first
        raise EncodeError("bad_request", f"the message cannot be encoded for the bus: {exc}") from None


def unpack(data: bytes) -> dict[str, Any]:
    msg = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(msg, dict):
        raise ValueError("broker message is not a map")
    return msg


MAX_FIELD = 256  # worker names, capability names, versions, caller and trace ids
MAX_NOTE = 4096
MAX_TIMEOUT_SECONDS = validate.MAX_TIMEOUT_SECONDS
MAX_READY_CAPS = validate.MAX_CAPABILITIES
TERMINAL = (RESULT, DONE, ERROR)


def _str(msg: dict[str, Any], key: str, limit: int = MAX_FIELD, required: bool = False) -> str | None:
    """None if msg[key] is fine, else the problem."""
    v = msg.get(key)
    if v is None:
        return f"{key} missing" if required else None
    if not isinstance(v, str) or len(v) > limit:
        return f"{key} is not a string of at most {limit} characters"
    return None


def _call_id(v: Any) -> bool:
    """Ids are dictionary keys in the broker: ints (as our clients send) or short strings."""
    return (isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**64) or \
        (isinstance(v, str) and len(v) <= MAX_FIELD)


def _broker_id(v: Any) -> bool:
    """An id the broker gave out (REQ): a positive int."""
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**63


def _unknown(kind: Any) -> str:
    shown = repr(kind[:40]) if isinstance(kind, str) else f"of type {type(kind).__name__}"
    return f"unknown message type {shown}"


def worker_problem(msg: dict[str, Any]) -> str | None:
    """Why a message on the workers' socket is malformed, or None. READY descriptors are
    checked one by one later (`ready_caps`), so one bad entry costs only itself."""
    kind = msg.get("t")
    if kind in (FRAME, END):
        if not _broker_id(msg.get("id")):
            return "id is not a call id"
        ev = msg.get("ev")
        if not isinstance(ev, str) or len(ev) > MAX_FIELD or (kind == END and ev not in TERMINAL):
            return "ev is not an event name"
        return None  # `d` is the caller's business; an error end's body is checked on use
    if kind == HB:
        return _str(msg, "note", MAX_NOTE)
    if kind == REJECT:
        return None if _broker_id(msg.get("id")) else "id is not a call id"
    if kind in (DRAIN, BYE):
        return None
    if kind == READY:
        for key, limit in (("worker", MAX_FIELD), ("service", MAX_FIELD), ("node_id", MAX_FIELD),
                           ("note", MAX_NOTE)):
            problem = _str(msg, key, limit)
            if problem:
                return problem
        pid = msg.get("pid")
        if pid is not None and not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31):
            return "pid is not a process id"
        caps = msg.get("caps", [])
        if not isinstance(caps, list) or len(caps) > MAX_READY_CAPS:
            return f"caps is not a list of at most {MAX_READY_CAPS} descriptors"
        if not isinstance(msg.get("remote", False), bool):
            return "remote is not a bool"
        return None
    return _unknown(kind)


def ready_caps(caps: list[Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The valid descriptors of a READY frame by name, and the problems of the others."""
    good: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for d in caps:
        try:
            validate.ready_descriptor(d)
        except validate.PeerDataError as exc:
            problems.append(exc.message)
            continue
        good[d["name"]] = d
    return good, problems


_CALL_STRINGS = ("cap", "v", "caller", "trace")


def client_problem(msg: dict[str, Any]) -> str | None:
    """Why a message on the clients' socket is malformed, or None."""
    kind = msg.get("t")
    if kind == CALL:
        if not _call_id(msg.get("id")):
            return "id is not a call id"
        for key in _CALL_STRINGS:
            v = msg.get(key)
            if v.__class__ is str and len(v) <= MAX_FIELD:
                continue  # every call, every field: the common case costs one test
            problem = _str(msg, key, required=key == "cap")
            if problem:
                return problem
        timeout = msg.get("timeout")
        if timeout is not None and not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                                        and math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_SECONDS):
            return f"timeout is not a number of seconds in (0, {MAX_TIMEOUT_SECONDS}]"
        for key in ("stream", "local_only"):
            if not isinstance(msg.get(key, False), bool):
                return f"{key} is not a bool"
        return None
    if kind == CANCEL:
        return None if _call_id(msg.get("id")) else "id is not a call id"
    if kind == ACK:
        if not _call_id(msg.get("id")):
            return "id is not a call id"
        upto = msg.get("upto")
        if not (isinstance(upto, int) and not isinstance(upto, bool) and 0 < upto < 2**63):
            return "upto is not a frame count"
        return None
    if kind == ADMIN:
        if not _call_id(msg.get("id")):
            return "id is not a call id"
        args = msg.get("args")
        if args is not None and not isinstance(args, dict):
            return "args is not a map"
        args = args or {}
        n = args.get("n", 50)
        if not (isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 100_000):
            return "args.n is not a count"
        if args.get("capability") is not None and _str(args, "capability"):
            return "args.capability is not a capability name"
        return _str(msg, "op")
    return _unknown(kind)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


@functools.lru_cache(maxsize=256)
@functools.lru_cache(maxsize=1024)  # checked for every candidate of every call
def version_matches(requested: str, offered: str) -> bool:
    """CONTRACT §2.1: `name@>=A.B` matches offer X.Y iff X == A and Y >= B."""
    try:
        ra, rb = (int(x) for x in requested.split(".", 1))
        oa, ob = (int(x) for x in offered.split(".", 1))
    except ValueError:
        return False
    return ra == oa and ob >= rb
