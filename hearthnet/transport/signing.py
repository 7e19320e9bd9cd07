"""The signed request/response envelope (CONTRACT §5 as amended here; spec
core-bus-transport §9).

Request headers:
    X-HearthNet-Capability          dotted name, e.g. `llm.chat`
    X-HearthNet-Capability-Version  `major.minor`
    X-HearthNet-Request-Id          ULID (also the trace id)
    X-HearthNet-From                caller's full NodeID (the verify key)
    X-HearthNet-To                  the receiving node's full NodeID
    X-HearthNet-Community           full community id
    X-HearthNet-Timestamp           RFC 3339 UTC, second precision
    X-HearthNet-Timeout             optional: seconds the caller waits, (0, 3600], <= 3 decimals
    X-HearthNet-Body-Hash           `blake3:<hex>` of the raw body bytes (of b"" for a GET)
    X-HearthNet-Signature           `ed25519:<b64url>` over canonical JSON of
        {"capability","version","request_id","from","to","community","timestamp",
         "timeout_seconds","body_hash"}
        (timeout_seconds: the header's number, or null without the header)

A deliberate change of the contract's envelope, which signed the parsed body: hashing
the raw bytes lets the server check signature, clock, membership and replay from the
headers alone, before it reads a byte of the body (a stranger cannot make it buffer or
parse 16 MiB), and then read the body with a size cap while hashing it. "to" binds a
request to one node: a member cannot replay another node's request to a third node, nor
a node's own request back to it. The timeout is signed so nobody on the path can stretch
it; the server caps it further by the capability's timeout_seconds.

Non-capability routes use the same envelope with transport-level capability names, which
are never registered on the bus: `sync.heads` (GET /sync/v1/heads) and `sync.events`
(POST /sync/v1/events), etc. The envelope covers neither path nor query string, so the
server must pass the route's name as `expect_capability` (a signed heads request cannot
then be replayed against another route) and sync routes take no query parameters.

Verification order and error codes (settled here; the spec left skew and replay open):
    missing/empty header, malformed version/request id/timestamp/timeout/body hash
                                                                  -> bad_request
    To is not this node, or From is this node (a request of ours
    coming back over the network)                                 -> invalid_signature
    malformed From, bad or missing signature                      -> invalid_signature
    |now - timestamp| > MAX_SKEW_SECONDS (120 s, DESIGN.md §3)    -> expired
    other community                                               -> unauthorized
    -- the gateway then checks membership (unauthorized / revoked), and only then --
    same (From, Request-Id) again inside that window              -> invalid_signature
    a member over its share of the replay cache                   -> rate_limited
    body bytes whose hash differs from X-HearthNet-Body-Hash      -> invalid_signature
The signature is checked before the clock so `expired` is only ever said about genuine
requests (the caller may re-issue). A replay, a request for another node and our own
request coming back all answer `invalid_signature`: the signature is authentic but not
valid *for this use*, the request must not be retried as is (here), and telling a
replayer nothing more than "bad signature" is the conservative choice. Only requests of
verified current members enter the replay cache, and each member has its own bounded
share of it (REPLAY_MAX_PER_SENDER), so nobody can fill it to lock the others out.

Responses (mutating capabilities MUST be signed, others SHOULD; spec §9; HearthNet signs
every peer reply, errors included):
    X-HearthNet-Request-Id, X-HearthNet-From (server), X-HearthNet-Timestamp,
    X-HearthNet-Signature over canonical JSON of
        {"request_id","from","timestamp","status","body"}  (status = HTTP status int)
    An event stream's headers are signed with body null: they prove which node accepted
    which request; the frames ride the pinned TLS connection.
"""
from __future__ import annotations

import heapq
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import blake3

from hearthnet.errors import HearthNetError
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair, verify_bytes, verify_key_from_full
from hearthnet.identity.manifest import parse_rfc3339, rfc3339, utcnow
from hearthnet.ids import new_ulid

MAX_SKEW_SECONDS = 120
MAX_TIMEOUT_SECONDS = 3600
# A member at the soft total rate (100/s) for the longest an entry lives (240 s) needs
# 24 000; a member beyond its share is rate limited, the others are not affected.
REPLAY_MAX_PER_SENDER = 30_000

H_CAPABILITY = "X-HearthNet-Capability"
H_VERSION = "X-HearthNet-Capability-Version"
H_REQUEST_ID = "X-HearthNet-Request-Id"
H_FROM = "X-HearthNet-From"
H_TO = "X-HearthNet-To"
H_COMMUNITY = "X-HearthNet-Community"
H_TIMESTAMP = "X-HearthNet-Timestamp"
H_TIMEOUT = "X-HearthNet-Timeout"
H_BODY_HASH = "X-HearthNet-Body-Hash"
H_SIGNATURE = "X-HearthNet-Signature"
REQUEST_HEADERS = (H_CAPABILITY, H_VERSION, H_REQUEST_ID, H_FROM, H_TO, H_COMMUNITY, H_TIMESTAMP,
                   H_BODY_HASH, H_SIGNATURE)
RESPONSE_HEADERS = (H_REQUEST_ID, H_FROM, H_TIMESTAMP, H_SIGNATURE)
# A missing signature is invalid_signature, not bad_request, so it is not "required" here.
_REQUIRED_REQUEST_HEADERS = tuple(h for h in REQUEST_HEADERS if h != H_SIGNATURE)

# Transport-level names for the sync routes (never registered on the bus).
SYNC_HEADS = "sync.heads"
SYNC_EVENTS = "sync.events"
SYNC_IDS = "sync.ids"  # beyond the spec: the event ids a peer holds (DESIGN.md §5 diff sync)
SYNC_PULL = "sync.pull"  # beyond the spec: fetch named events, so one round goes both ways
SYNC_DIGEST = "sync.digest"  # beyond the spec: ranged digests, so a round costs the difference (sync.py)
SYNC_ADMIT = "sync.admit"  # beyond the spec: the inviter's admission of a join (gateway/admit.py)
ROUTE_CAPABILITIES: dict[tuple[str, str], str] = {
    ("GET", "/sync/v1/heads"): SYNC_HEADS,
    ("POST", "/sync/v1/events"): SYNC_EVENTS,
    ("POST", "/sync/v1/ids"): SYNC_IDS,
    ("POST", "/sync/v1/pull"): SYNC_PULL,
    ("POST", "/sync/v1/digest"): SYNC_DIGEST,
    ("POST", "/sync/v1/admit"): SYNC_ADMIT,
}

# CONTRACT §9: clients MUST verify the response signature of these capabilities.
_MUTATING_SUFFIXES = (".post", ".invite", ".revoke", ".ingest", ".expire")
_MUTATING_NAMES = {"chat.send", SYNC_EVENTS}

_CAPABILITY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_VERSION_RE = re.compile(r"^\d{1,4}\.\d{1,4}$", re.ASCII)
_ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$", re.ASCII)
_TIMEOUT_RE = re.compile(r"^\d{1,4}(\.\d{1,3})?$", re.ASCII)
_BODY_HASH_RE = re.compile(r"^blake3:[0-9a-f]{64}$", re.ASCII)
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$", re.ASCII)


def response_signature_required(capability: str) -> bool:
    return capability in _MUTATING_NAMES or capability.endswith(_MUTATING_SUFFIXES)


def body_hash(raw: bytes | None) -> str:
    """`blake3:<hex>` of the raw body bytes (an absent body hashes as b"")."""
    return "blake3:" + blake3.blake3(raw or b"").hexdigest()


class BodyHasher:
    """Hash a body while it is read in chunks; `check()` compares with the signed hash."""

    def __init__(self, expected: str) -> None:
        self.expected, self._h, self.size = expected, blake3.blake3(), 0

    def update(self, chunk: bytes) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    def check(self) -> None:
        if "blake3:" + self._h.hexdigest() != self.expected:
            raise HearthNetError("invalid_signature", "request body does not match its signed hash")


# --------------------------------------------------------------------------- helpers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts and aiohttp's CIMultiDict."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value.strip() if isinstance(value, str) else None


def _required(headers: Mapping[str, str], names: tuple[str, ...], code: str) -> dict[str, str]:
    values = {n: _header(headers, n) for n in names}
    missing = [n for n, v in values.items() if not v]
    if missing:
        raise HearthNetError(code, f"missing header {', '.join(missing)}")
    return values  # type: ignore[return-value]  # all present after the check


def _as_utc(now: datetime | None) -> datetime:
    dt = utcnow() if now is None else now
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _canonical(obj: dict[str, Any]) -> bytes:
    try:
        return canonical_json(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise HearthNetError("bad_request", f"body cannot be signed: {exc}") from None


def _check_skew(ts: datetime, now: datetime, what: str) -> None:
    skew = abs((now - ts).total_seconds())
    if skew > MAX_SKEW_SECONDS:
        raise HearthNetError("expired", f"{what} timestamp is {skew:.0f} s off (limit {MAX_SKEW_SECONDS} s); check the clocks")


def _parse_timestamp(text: str, code: str) -> datetime:
    """Any shape of bad timestamp is `code`, never an exception of another kind
    (`0001-01-01T00:00:00+01:00` overflows when converted to UTC)."""
    try:
        if not _TIMESTAMP_RE.match(text):
            raise ValueError(text)
        return parse_rfc3339(text)
    except (ValueError, OverflowError, TypeError):
        raise HearthNetError(code, f"timestamp {text[:64]!r} is not RFC 3339 UTC") from None


def parse_timeout(text: str | None) -> float | None:
    """The X-HearthNet-Timeout value: None when absent; bad_request unless (0, 3600]."""
    if text is None or text == "":
        return None
    if not _TIMEOUT_RE.match(text) or not 0 < float(text) <= MAX_TIMEOUT_SECONDS:
        raise HearthNetError("bad_request", f"{H_TIMEOUT} {text[:32]!r} must be seconds in (0, {MAX_TIMEOUT_SECONDS}]")
    return float(text)


def format_timeout(seconds: float) -> str:
    """The header text for `seconds` (<= 3 decimals); parse_timeout gives back exactly
    the float that is signed."""
    value = round(min(max(float(seconds), 0.001), MAX_TIMEOUT_SECONDS), 3)
    return f"{value:.3f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- replay cache


@dataclass
class ReplayCache:
    """Bounded, time-windowed set of (from, request_id), with a share per sender.

    An entry lives until its *claimed* timestamp + window: after that the skew check
    refuses the request anyway, so remembering it longer buys nothing. A sender whose
    share is full is refused (`rate_limited`) rather than having live entries evicted,
    because an eviction would silently reopen a replay window. Only the gateway's
    verified members are added (see the module docstring), so the whole cache is bounded
    by members x max_per_sender and no sender can crowd out another."""

    window_seconds: int = MAX_SKEW_SECONDS
    max_per_sender: int = REPLAY_MAX_PER_SENDER
    _expiry: dict[tuple[str, str], float] = field(default_factory=dict)
    _heap: list[tuple[float, tuple[str, str]]] = field(default_factory=list)
    _per_sender: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self._expiry)

    def held_by(self, sender: str) -> int:
        return self._per_sender.get(sender, 0)

    def add(self, sender: str, request_id: str, timestamp: datetime, now: datetime) -> None:
        """Remember the request; invalid_signature if it was seen inside the window."""
        now_s = now.timestamp()
        self._purge(now_s)
        key = (sender, request_id)
        if key in self._expiry:
            raise HearthNetError("invalid_signature", f"request {request_id} from {sender} was already used (replay)")
        if self._per_sender[sender] >= self.max_per_sender:
            # Its oldest entry cannot be found cheaply; the window bounds the wait.
            raise HearthNetError("rate_limited", "too many recent requests from you to check for replays",
                                 retry_after_ms=1000)
        expiry = timestamp.timestamp() + self.window_seconds
        self._expiry[key] = expiry
        self._per_sender[sender] += 1
        heapq.heappush(self._heap, (expiry, key))

    def _purge(self, now_s: float) -> None:
        while self._heap and self._heap[0][0] < now_s:
            _, key = heapq.heappop(self._heap)
            if self._expiry.pop(key, None) is not None:
                left = self._per_sender[key[0]] - 1
                if left > 0:
                    self._per_sender[key[0]] = left
                else:
                    del self._per_sender[key[0]]


# --------------------------------------------------------------------------- requests


def request_envelope(capability: str, version: str, request_id: str, sender: str, to: str,
                     community: str, timestamp: str, timeout_seconds: float | None,
                     body_hash: str) -> dict[str, Any]:
    return {"capability": capability, "version": version, "request_id": request_id,
            "from": sender, "to": to, "community": community, "timestamp": timestamp,
            "timeout_seconds": timeout_seconds, "body_hash": body_hash}


def sign_request(kp: KeyPair, community_id: str, capability: str, version: str,
                 body: bytes | None, *, to: str, timeout_seconds: float | None = None,
                 request_id: str | None = None, now: datetime | None = None) -> dict[str, str]:
    """The `X-HearthNet-*` headers for one request to node `to`. `body` is the exact
    raw bytes that will be sent (None or b"" for a GET)."""
    if body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError("sign_request signs the raw body bytes; encode the JSON first")
    if not _CAPABILITY_RE.match(capability) or not _VERSION_RE.match(version):
        raise HearthNetError("bad_request", f"cannot sign {capability!r}@{version!r}: bad name or version")
    rid = request_id or new_ulid()
    ts = rfc3339(_as_utc(now))
    digest = body_hash(bytes(body) if body is not None else None)
    headers = {H_CAPABILITY: capability, H_VERSION: version, H_REQUEST_ID: rid,
               H_FROM: kp.node_id_full, H_TO: to, H_COMMUNITY: community_id, H_TIMESTAMP: ts,
               H_BODY_HASH: digest}
    timeout = None
    if timeout_seconds is not None:
        headers[H_TIMEOUT] = format_timeout(timeout_seconds)
        timeout = float(headers[H_TIMEOUT])
    env = request_envelope(capability, version, rid, kp.node_id_full, to, community_id, ts,
                           timeout, digest)
    headers[H_SIGNATURE] = kp.sign_bytes(_canonical(env))
    return headers


@dataclass(frozen=True)
class SignedRequest:
    """What the headers of a request proved (the body is checked later, by hash)."""

    sender: str
    capability: str
    version: str
    request_id: str
    timestamp: datetime
    timeout_seconds: float | None
    body_hash: str

    def hasher(self) -> BodyHasher:
        return BodyHasher(self.body_hash)

    def check_body(self, raw: bytes | None) -> None:
        if body_hash(raw) != self.body_hash:
            raise HearthNetError("invalid_signature", "request body does not match its signed hash")


def _check_request_shape(h: dict[str, str]) -> None:
    if not _CAPABILITY_RE.match(h[H_CAPABILITY]):
        raise HearthNetError("bad_request", f"{h[H_CAPABILITY][:80]!r} is not a capability name")
    if not _VERSION_RE.match(h[H_VERSION]):
        raise HearthNetError("bad_request", f"{H_VERSION} {h[H_VERSION][:16]!r} is not major.minor")
    if not _ULID_RE.match(h[H_REQUEST_ID]):
        raise HearthNetError("bad_request", f"{H_REQUEST_ID} {h[H_REQUEST_ID][:40]!r} is not a ULID")
    if not _BODY_HASH_RE.match(h[H_BODY_HASH]):
        raise HearthNetError("bad_request", f"{H_BODY_HASH} is not blake3:<64 hex digits>")


def _verify_signature(data: bytes, signature: str, sender: str, what: str) -> None:
    try:
        key = verify_key_from_full(sender)
    except HearthNetError:
        raise HearthNetError("invalid_signature", f"{H_FROM} {sender[:80]!r} is not a full node id") from None
    if not verify_bytes(data, signature, key):
        raise HearthNetError("invalid_signature", f"{what} signature does not verify for {sender}")


def verify_request_headers(headers: Mapping[str, str], *, self_node_id: str,
                           now: datetime | None = None, community_id: str | None = None,
                           expect_capability: str | None = None) -> SignedRequest:
    """Check a signed request from its headers alone (no body, no replay cache: the
    caller checks membership, then adds it to the ReplayCache, then reads the body and
    calls `check_body`/`hasher().check()`).

    `self_node_id`: this node; the request must be addressed to it and must not come
    from it. `community_id`: if given, the request must name it (else unauthorized).
    `expect_capability`: for routes with a fixed name such as `sync.heads` (else
    bad_request)."""
    h = _required(headers, _REQUIRED_REQUEST_HEADERS, "bad_request")
    h[H_SIGNATURE] = _header(headers, H_SIGNATURE) or ""
    _check_request_shape(h)
    ts = _parse_timestamp(h[H_TIMESTAMP], "bad_request")
    timeout = parse_timeout(_header(headers, H_TIMEOUT))
    # Cheap refusals first; the same answer as a bad signature, so nothing is learnt.
    if h[H_TO] != self_node_id:
        raise HearthNetError("invalid_signature", "request is addressed to another node")
    if h[H_FROM] == self_node_id:
        raise HearthNetError("invalid_signature", "request claims to come from this node itself")
    env = request_envelope(h[H_CAPABILITY], h[H_VERSION], h[H_REQUEST_ID], h[H_FROM], h[H_TO],
                           h[H_COMMUNITY], h[H_TIMESTAMP], timeout, h[H_BODY_HASH])
    _verify_signature(_canonical(env), h[H_SIGNATURE], h[H_FROM], "request")
    if expect_capability is not None and h[H_CAPABILITY] != expect_capability:
        raise HearthNetError("bad_request", f"this route takes {expect_capability}, not {h[H_CAPABILITY]}")
    if community_id is not None and h[H_COMMUNITY] != community_id:
        raise HearthNetError("unauthorized", "request is for another community")
    _check_skew(ts, _as_utc(now), "request")
    return SignedRequest(h[H_FROM], h[H_CAPABILITY], h[H_VERSION], h[H_REQUEST_ID], ts, timeout,
                         h[H_BODY_HASH])


def verify_request(headers: Mapping[str, str], body: bytes | None, *, replay: ReplayCache,
                   self_node_id: str, now: datetime | None = None, community_id: str | None = None,
                   expect_capability: str | None = None) -> str:
    """Headers, replay and body in one go, for servers without a membership step (test
    peers); returns the caller's full NodeID. The gateway uses the steps separately."""
    req = verify_request_headers(headers, self_node_id=self_node_id, now=now,
                                 community_id=community_id, expect_capability=expect_capability)
    req.check_body(body)
    replay.add(req.sender, req.request_id, req.timestamp, _as_utc(now))
    return req.sender


# --------------------------------------------------------------------------- responses


def response_envelope(request_id: str, sender: str, timestamp: str, status: int, body: Any) -> dict[str, Any]:
    return {"request_id": request_id, "from": sender, "timestamp": timestamp, "status": status, "body": body}


def sign_response(kp: KeyPair, request_id: str, status: int, body: Any, *,
                  now: datetime | None = None) -> dict[str, str]:
    ts = rfc3339(_as_utc(now))
    env = response_envelope(request_id, kp.node_id_full, ts, int(status), body)
    return {H_REQUEST_ID: request_id, H_FROM: kp.node_id_full, H_TIMESTAMP: ts,
            H_SIGNATURE: kp.sign_bytes(_canonical(env))}


_BODY_FIRST = b'{"body":null'  # the canonical envelope with body null starts so (sorted keys)


def signed_json_reply(kp: KeyPair, request_id: str, status: int, body: Any, *,
                      now: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """A reply body as canonical JSON bytes, with the headers that sign it
    (`sign_response`'s). The body is serialised once: those same bytes are the wire body
    and, framed by the rest of the envelope, the signed message — a large reply is not
    turned into JSON twice, nor held as text and bytes beyond the moment of signing.
    A peer's `verify_response` on the parsed body accepts it as any signed reply."""
    raw = _canonical(body)
    ts = rfc3339(_as_utc(now))
    shell = _canonical(response_envelope(request_id, kp.node_id_full, ts, int(status), None))
    if not shell.startswith(_BODY_FIRST):  # the envelope's keys changed: sign it whole
        return raw, sign_response(kp, request_id, status, body, now=now)
    message = b"".join((b'{"body":', raw, shell[len(_BODY_FIRST):]))
    return raw, {H_REQUEST_ID: request_id, H_FROM: kp.node_id_full, H_TIMESTAMP: ts,
                 H_SIGNATURE: kp.sign_bytes(message)}


def verify_response(headers: Mapping[str, str], body: Any, *, expected_from: str, request_id: str,
                    status: int, now: datetime | None = None) -> None:
    """Check a signed response from `expected_from` to our request `request_id`.
    Raises invalid_signature (missing, wrong signer or request, bad signature) or expired."""
    h = _required(headers, RESPONSE_HEADERS, "invalid_signature")
    if h[H_FROM] != expected_from:
        raise HearthNetError("invalid_signature", f"response is signed by {h[H_FROM][:80]}, not {expected_from}")
    if h[H_REQUEST_ID] != request_id:
        raise HearthNetError("invalid_signature", "response answers another request")
    ts = _parse_timestamp(h[H_TIMESTAMP], "invalid_signature")
    env = response_envelope(request_id, expected_from, h[H_TIMESTAMP], int(status), body)
    try:
        data = canonical_json(env)
    except (TypeError, ValueError, RecursionError):
        raise HearthNetError("invalid_signature", "response body cannot be canonicalised") from None
    _verify_signature(data, h[H_SIGNATURE], expected_from, "response")
    _check_skew(ts, _as_utc(now), "response")
