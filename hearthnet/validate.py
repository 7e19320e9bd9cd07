"""Shape checks for what crosses a trust boundary: peer manifests, capability descriptors
(from a peer's manifest or a worker's READY frame), and the replies of the sync routes.

Every check raises PeerDataError (a HearthNetError, code `bad_response`) and nothing else,
whatever it is given: wrong types, deep nesting, huge lists, unhashable values. Callers
catch exactly that, log it once per peer (hearthnet.ratelog) and drop the item — the peer,
the capability entry or the sync round — while the rest goes on.

The checks walk data iteratively (never by recursion) and bound every string, list and
nesting level, so a hostile value costs at most its own size to reject.
"""
from __future__ import annotations

import math
import re
from typing import Any, NoReturn

from hearthnet.errors import HearthNetError

# Bounds. Generous for honest peers (a capability's params hold a model catalogue; a
# manifest lists a few dozen capabilities) and small enough that checking is cheap.
MAX_NAME = 128  # capability names, worker names, ids
MAX_TEXT = 1024  # display names, notes, hosts
MAX_CAPABILITIES = 256
MAX_ENDPOINTS = 32
MAX_MAX_CONCURRENT = 1024
MAX_TIMEOUT_SECONDS = 400 * 86400  # subscriptions run "a year" (365 d)
MAX_PARAMS_NODES = 4096  # values inside one capability's params
MAX_PARAMS_DEPTH = 8
MAX_SYNC_IDS = 1_000_000  # ids in one /sync/v1/ids reply (the 16 MiB reply cap binds first)

CAP_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")  # dotted lowercase
VERSION_RE = re.compile(r"^[0-9]{1,4}\.[0-9]{1,4}$")  # "X.Y"
SCHEMA_HASH_RE = re.compile(r"^blake3:[0-9a-f]{64}$")
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # event ids
HASH_RE = re.compile(r"^[0-9a-f]{32}$")  # a range digest's hash (ledger/digest.py)
STABILITIES = ("stable", "beta", "experimental")
TRUST_LEVELS = ("member", "trusted", "anchor", "self")
MANIFEST_CAP_FIELDS = ("name", "version", "stability", "schema_hash", "params", "max_concurrent")


class PeerDataError(HearthNetError):
    """Data from a peer (or another process) that does not have the contract's shape."""

    code = "bad_response"


def fail(what: str, problem: str) -> NoReturn:
    raise PeerDataError("bad_response", f"{what} {problem}")


def _shown(value: Any) -> str:
    """A short, safe rendering of a bad value for a log line."""
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, str):
        value = value[:80]
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int too long to print, an odd object
        return f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- primitives


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(what, f"is {_shown(value)}, not an object")
    return value


def text(value: Any, what: str, *, max_len: int = MAX_TEXT, pattern: re.Pattern[str] | None = None,
         empty: bool = True) -> str:
    if not isinstance(value, str):
        fail(what, f"is {_shown(value)}, not a string")
    if len(value) > max_len:
        fail(what, f"is longer than {max_len} characters")
    if not empty and not value:
        fail(what, "is empty")
    if pattern is not None and not pattern.match(value):
        fail(what, f"{_shown(value)} is not of the form {pattern.pattern}")
    return value


def integer(value: Any, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        fail(what, f"is {_shown(value)}, not an integer")
    if not lo <= value <= hi:
        fail(what, f"{value} is outside {lo}..{hi}")
    return value


def number(value: Any, what: str, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        fail(what, f"is {_shown(value)}, not a number")
    if not (math.isfinite(value) and lo <= value <= hi):
        fail(what, f"{_shown(value)} is outside {lo:g}..{hi:g}")
    return float(value)


def array(value: Any, what: str, max_len: int) -> list[Any]:
    if not isinstance(value, list):
        fail(what, f"is {_shown(value)}, not a list")
    if len(value) > max_len:
        fail(what, f"has {len(value)} entries, more than {max_len}")
    return value


def plain_json(value: Any, what: str, *, max_depth: int, max_nodes: int,
               max_text: int = 64 * 1024) -> Any:
    """JSON data only (objects with string keys, lists, strings, finite numbers, integers
    the bus can carry, bools, null), nested at most `max_depth` deep and holding at most
    `max_nodes` values."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        v, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            fail(what, f"holds more than {max_nodes} values")
        if isinstance(v, dict):
            if depth > max_depth:
                fail(what, f"is nested deeper than {max_depth}")
            if len(v) > max_nodes:
                fail(what, f"holds more than {max_nodes} values")
            for k, item in v.items():
                if not isinstance(k, str) or len(k) > MAX_TEXT:
                    fail(what, f"has a key {_shown(k)}")
                stack.append((item, depth + 1))
        elif isinstance(v, list):
            if depth > max_depth:
                fail(what, f"is nested deeper than {max_depth}")
            if len(v) > max_nodes:
                fail(what, f"holds more than {max_nodes} values")
            stack.extend((item, depth + 1) for item in v)
        elif isinstance(v, str):
            if len(v) > max_text:
                fail(what, f"holds a string longer than {max_text}")
        elif isinstance(v, float):
            if not math.isfinite(v):
                fail(what, f"holds {v}")
        elif isinstance(v, int) and not isinstance(v, bool):
            if not -2**63 <= v < 2**64:  # what msgpack (the bus) can carry
                fail(what, "holds an integer beyond 64 bits")
        elif v is not None and not isinstance(v, bool):
            fail(what, f"holds {type(v).__name__}, which JSON has not")
    return value


# --------------------------------------------------------------------------- capabilities


def manifest_capability(c: Any, what: str = "capability") -> dict[str, Any]:
    """One `capabilities[]` entry of a node manifest (CONTRACT §6.1): all six fields."""
    c = obj(c, what)
    missing = [k for k in MANIFEST_CAP_FIELDS if k not in c]
    if missing:
        fail(what, f"lacks {', '.join(missing)}")
    name = text(c["name"], f"{what} name", max_len=MAX_NAME, pattern=CAP_NAME_RE)
    what = f"capability {name}"
    text(c["version"], f"{what} version", max_len=9, pattern=VERSION_RE)
    _stability(c["stability"], what)
    text(c["schema_hash"], f"{what} schema_hash", max_len=71, pattern=SCHEMA_HASH_RE)
    _params(c["params"], what)
    integer(c["max_concurrent"], f"{what} max_concurrent", 1, MAX_MAX_CONCURRENT)
    return c


def ready_descriptor(d: Any, what: str = "descriptor") -> dict[str, Any]:
    """A descriptor in a worker's READY frame: name and version required, every other
    field the broker reads type-checked when present."""
    d = obj(d, what)
    name = text(d.get("name"), f"{what} name", max_len=MAX_NAME, pattern=CAP_NAME_RE)
    what = f"capability {name}"
    text(d.get("version"), f"{what} version", max_len=9, pattern=VERSION_RE)
    if d.get("stability") is not None:
        _stability(d["stability"], what)
    if d.get("schema_hash") is not None:
        text(d["schema_hash"], f"{what} schema_hash", max_len=MAX_NAME)
    if d.get("params") is not None:
        _params(d["params"], what)
    if d.get("max_concurrent") is not None:
        integer(d["max_concurrent"], f"{what} max_concurrent", 1, MAX_MAX_CONCURRENT)
    if d.get("timeout_seconds") is not None:
        number(d["timeout_seconds"], f"{what} timeout_seconds", 0.001, MAX_TIMEOUT_SECONDS)
    if d.get("trust_required") is not None and d["trust_required"] not in TRUST_LEVELS:
        fail(what, f"trust_required {_shown(d['trust_required'])} is not one of {', '.join(TRUST_LEVELS)}")
    for flag in ("idempotent", "streams"):
        if d.get(flag) is not None and not isinstance(d[flag], bool):
            fail(what, f"{flag} is {_shown(d[flag])}, not a bool")
    return d


def _stability(value: Any, what: str) -> None:
    if not isinstance(value, str) or value not in STABILITIES:
        fail(what, f"stability {_shown(value)} is not one of {', '.join(STABILITIES)}")


def _params(value: Any, what: str) -> None:
    obj(value, f"{what} params")
    plain_json(value, f"{what} params", max_depth=MAX_PARAMS_DEPTH, max_nodes=MAX_PARAMS_NODES)


# --------------------------------------------------------------------------- node manifests


def endpoint(e: Any, what: str = "endpoint") -> dict[str, Any]:
    e = obj(e, what)
    text(e.get("transport"), f"{what} transport", max_len=32, empty=False)
    text(e.get("host"), f"{what} host", max_len=253, empty=False)
    integer(e.get("port"), f"{what} port", 1, 65535)
    return e


def node_manifest_fields(m: dict[str, Any]) -> None:
    """Type, shape and bounds of every field of a node manifest (spec core-identity-config
    §7) that `verify_node_manifest` does not check itself (node_id, times, signature)."""
    text(m["contract_version"], "contract_version", max_len=9, pattern=VERSION_RE)
    text(m["display_name"], "display_name", max_len=MAX_TEXT)
    text(m["community_id"], "community_id", max_len=MAX_NAME)
    text(m["profile"], "profile", max_len=32)
    for i, e in enumerate(array(m["endpoints"], "endpoints", MAX_ENDPOINTS)):
        endpoint(e, f"endpoints[{i}]")
    hw = obj(m["hardware"], "hardware")
    if hw.get("gpu") is not None:
        text(hw["gpu"], "hardware.gpu", max_len=MAX_TEXT)
    for key in ("vram_gb", "ram_gb", "disk_free_gb"):
        number(hw.get(key), f"hardware.{key}", 0, 1e9)
    integer(hw.get("cpu_cores"), "hardware.cpu_cores", 0, 1 << 20)
    load = obj(m["load"], "load")
    number(load.get("cpu"), "load.cpu", 0, 1e6)
    number(load.get("vram_used_gb"), "load.vram_used_gb", 0, 1e9)
    integer(load.get("in_flight_total"), "load.in_flight_total", 0, 1 << 31)
    integer(m["uptime_seconds"], "uptime_seconds", 0, 1 << 53)
    names: set[tuple[str, str]] = set()
    for i, c in enumerate(array(m["capabilities"], "capabilities", MAX_CAPABILITIES)):
        manifest_capability(c, f"capabilities[{i}]")
        key = (c["name"], c["version"])
        if key in names:
            fail(f"capabilities[{i}]", f"repeats {c['name']}@{c['version']}")
        names.add(key)
    if "tls_fingerprint" in m:
        text(m["tls_fingerprint"], "tls_fingerprint", max_len=80)


# --------------------------------------------------------------------------- peers


def peer_record(peer: Any, kind: str = "added") -> dict[str, Any]:
    """A verified peer as the discovery worker reports it (community.peers.watch): the
    fields the gateway's mesh uses (a removal needs only the node id). Its manifest was
    verified by discovery; this guards the gateway against a record it cannot use."""
    peer = obj(peer, "peer")
    text(peer.get("node_id"), "peer node_id", max_len=MAX_NAME, empty=False)
    if kind == "removed":
        return peer
    text(peer.get("node_id_short"), "peer node_id_short", max_len=MAX_NAME, empty=False)
    for key in ("display_name", "source"):
        if peer.get(key) is not None:
            text(peer[key], f"peer {key}")
    ep = obj(peer.get("endpoint"), "peer endpoint")
    text(ep.get("host"), "peer endpoint host", max_len=253, empty=False)
    integer(ep.get("port"), "peer endpoint port", 1, 65535)
    manifest = obj(peer.get("manifest") or {}, "peer manifest")
    array(manifest.get("capabilities") or [], "peer manifest capabilities", MAX_CAPABILITIES)
    return peer


# --------------------------------------------------------------------------- sync replies


def heads_reply(reply: Any) -> dict[str, Any]:
    """`GET /sync/v1/heads` → {community_id, head, heads_by_type, count, digest?}."""
    reply = obj(reply, "heads reply")
    integer(reply.get("head"), "heads reply head", 0, 2**63 - 1)
    integer(reply.get("count"), "heads reply count", 0, 2**63 - 1)
    if reply.get("digest") is not None:
        text(reply["digest"], "heads reply digest", max_len=MAX_NAME)
    return reply


def ids_reply(reply: Any) -> list[str]:
    """`POST /sync/v1/ids` → {ids}: event ids (ULIDs), in the peer's replay order, without
    repeats (a repeated id is dropped, not an error)."""
    ids = array(obj(reply, "ids reply").get("ids"), "ids reply ids", MAX_SYNC_IDS)
    for i in ids:
        if not isinstance(i, str) or not ULID_RE.match(i):
            fail("ids reply", f"holds {_shown(i)}, not an event id")
    return list(dict.fromkeys(ids))


def events_reply(reply: Any, sent: int) -> tuple[int, int]:
    """`POST /sync/v1/events` → {accepted, rejected, …}: (accepted, rejected), each at
    most the number of events sent."""
    reply = obj(reply, "events reply")
    accepted = integer(reply.get("accepted", 0), "events reply accepted", 0, sent)
    rejected = integer(reply.get("rejected", 0), "events reply rejected", 0, sent)
    return accepted, rejected


def pull_reply(reply: Any, asked: list[str]) -> list[dict[str, Any]]:
    """`POST /sync/v1/pull` → {events}: only events we asked for, each an object (the
    ledger verifies each one's signature and content)."""
    events = array(obj(reply, "pull reply").get("events"), "pull reply events", len(asked))
    wanted = set(asked)
    for ev in events:
        if not isinstance(ev, dict):
            fail("pull reply", f"holds {_shown(ev)}, not an event")
        eid = ev.get("event_id")
        if not isinstance(eid, str) or eid not in wanted:
            fail("pull reply", f"holds event {_shown(eid)}, which was not asked for")
    return events


def digest_reply(reply: Any, asked: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """`POST /sync/v1/digest` → {ranges: [{lamport_lo, lamport_hi, count, hash}]}: one
    entry per range asked, in the order asked, echoing its bounds; returns (count, hash)."""
    ranges = array(obj(reply, "digest reply").get("ranges"), "digest reply ranges", len(asked))
    if len(ranges) != len(asked):
        fail("digest reply", f"has {len(ranges)} ranges for the {len(asked)} asked")
    out = []
    for entry, (lo, hi) in zip(ranges, asked):
        entry = obj(entry, "digest reply range")
        if entry.get("lamport_lo") != lo or entry.get("lamport_hi") != hi:
            fail("digest reply", f"answers a range that was not asked ({_shown(entry.get('lamport_lo'))})")
        count = integer(entry.get("count"), "digest reply count", 0, 2**63 - 1)
        out.append((count, text(entry.get("hash"), "digest reply hash", max_len=32, pattern=HASH_RE)))
    return out
