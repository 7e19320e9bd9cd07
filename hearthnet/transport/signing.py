"""The signed request/response envelope (CONTRACT §5; spec core-bus-transport §9).

Request headers:
    X-HearthNet-Capability          dotted name, e.g. `llm.chat`
    X-HearthNet-Capability-Version  `major.minor`
    X-HearthNet-Request-Id          ULID (also the trace id)
    X-HearthNet-From                caller's full NodeID (the verify key)
    X-HearthNet-Community           full community id
    X-HearthNet-Timestamp           RFC 3339 UTC, second precision
    X-HearthNet-Signature           `ed25519:<b64url>` over canonical JSON of
        {"capability","version","request_id","from","community","timestamp","body"}
        where body is the parsed JSON request body, or null for a GET.

Non-capability routes use the same envelope with transport-level capability names, which
are never registered on the bus: `sync.heads` (GET /sync/v1/heads) and `sync.events`
(POST /sync/v1/events). The envelope covers neither path nor query string, so the server
must pass the route's name as `expect_capability` (a signed heads request cannot then be
replayed against another route) and sync routes take no query parameters.

Verification order and error codes (settled here; the spec left skew and replay open):
    missing/empty header, malformed version/request id/timestamp  -> bad_request
    malformed From, bad or missing signature                      -> invalid_signature
    |now - timestamp| > MAX_SKEW_SECONDS (120 s, DESIGN.md §3)    -> expired
    same (From, Request-Id) again inside that window              -> invalid_signature
The signature is checked before the clock so `expired` is only ever said about genuine
requests (the caller may re-issue). A replay answers `invalid_signature`, not `expired`
or `bad_request`: the signature is authentic but not valid *for this use*, the request
must not be retried as is, and telling a replayer nothing more than "bad signature" is
the conservative choice. Only fully verified requests enter the replay cache, so an
unauthenticated sender cannot fill it.

Responses (mutating capabilities MUST be signed, others SHOULD; spec §9):
    X-HearthNet-Request-Id, X-HearthNet-From (server), X-HearthNet-Timestamp,
    X-HearthNet-Signature over canonical JSON of
        {"request_id","from","timestamp","status","body"}  (status = HTTP status int)
"""
from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from hearthnet.errors import HearthNetError
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair, verify_bytes, verify_key_from_full
from hearthnet.identity.manifest import parse_rfc3339, rfc3339, utcnow
from hearthnet.ids import new_ulid

MAX_SKEW_SECONDS = 120
REPLAY_MAX_ENTRIES = 250_000  # > hard total rate (1000 rps) x 240 s for a typical LAN

H_CAPABILITY = "X-HearthNet-Capability"
H_VERSION = "X-HearthNet-Capability-Version"
H_REQUEST_ID = "X-HearthNet-Request-Id"
H_FROM = "X-HearthNet-From"
H_COMMUNITY = "X-HearthNet-Community"
H_TIMESTAMP = "X-HearthNet-Timestamp"
H_SIGNATURE = "X-HearthNet-Signature"
REQUEST_HEADERS = (H_CAPABILITY, H_VERSION, H_REQUEST_ID, H_FROM, H_COMMUNITY, H_TIMESTAMP, H_SIGNATURE)
RESPONSE_HEADERS = (H_REQUEST_ID, H_FROM, H_TIMESTAMP, H_SIGNATURE)
# A missing signature is invalid_signature, not bad_request, so it is not "required" here.
_REQUIRED_REQUEST_HEADERS = tuple(h for h in REQUEST_HEADERS if h != H_SIGNATURE)

# Transport-level names for the sync routes (never registered on the bus).
SYNC_HEADS = "sync.heads"
SYNC_EVENTS = "sync.events"
SYNC_IDS = "sync.ids"  # beyond the spec: the event ids a peer holds (DESIGN.md §5 diff sync)
SYNC_PULL = "sync.pull"  # beyond the spec: fetch named events, so one round goes both ways
SYNC_ADMIT = "sync.admit"  # beyond the spec: the inviter's admission of a join (gateway/admit.py)
ROUTE_CAPABILITIES: dict[tuple[str, str], str] = {
    ("GET", "/sync/v1/heads"): SYNC_HEADS,
    ("POST", "/sync/v1/events"): SYNC_EVENTS,
    ("POST", "/sync/v1/ids"): SYNC_IDS,
    ("POST", "/sync/v1/pull"): SYNC_PULL,
    ("POST", "/sync/v1/admit"): SYNC_ADMIT,
}

# CONTRACT §9: clients MUST verify the response signature of these capabilities.
_MUTATING_SUFFIXES = (".post", ".invite", ".revoke", ".ingest", ".expire")
_MUTATING_NAMES = {"chat.send", SYNC_EVENTS}

_CAPABILITY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_VERSION_RE = re.compile(r"^\d{1,4}\.\d{1,4}$")
_ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def response_signature_required(capability: str) -> bool:
    return capability in _MUTATING_NAMES or capability.endswith(_MUTATING_SUFFIXES)


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
    except (TypeError, ValueError) as exc:
        raise HearthNetError("bad_request", f"body cannot be signed: {exc}") from None


def _check_skew(ts: datetime, now: datetime, what: str) -> None:
    skew = abs((now - ts).total_seconds())
    if skew > MAX_SKEW_SECONDS:
        raise HearthNetError("expired", f"{what} timestamp is {skew:.0f} s off (limit {MAX_SKEW_SECONDS} s); check the clocks")


def _parse_timestamp(text: str, code: str) -> datetime:
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise HearthNetError(code, f"timestamp {text!r} is not RFC 3339") from None


# --------------------------------------------------------------------------- replay cache


@dataclass
class ReplayCache:
    """Bounded, time-windowed set of (from, request_id).

    An entry lives until its *claimed* timestamp + window: after that the skew check
    refuses the request anyway, so remembering it longer buys nothing. When full, new
    requests are refused (`rate_limited`) rather than evicting live entries, because an
    eviction would silently reopen a replay window."""

    window_seconds: int = MAX_SKEW_SECONDS
    max_entries: int = REPLAY_MAX_ENTRIES
    _expiry: dict[tuple[str, str], float] = field(default_factory=dict)
    _heap: list[tuple[float, tuple[str, str]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, sender: str, request_id: str, timestamp: datetime, now: datetime) -> None:
        """Remember the request; invalid_signature if it was seen inside the window."""
        now_s = now.timestamp()
        self._purge(now_s)
        key = (sender, request_id)
        if key in self._expiry:
            raise HearthNetError("invalid_signature", f"request {request_id} from {sender} was already used (replay)")
        if len(self._expiry) >= self.max_entries:
            wait_ms = int(max(0.0, self._heap[0][0] - now_s) * 1000) + 1
            raise HearthNetError("rate_limited", "too many recent requests to check for replays", retry_after_ms=wait_ms)
        expiry = timestamp.timestamp() + self.window_seconds
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, key))

    def _purge(self, now_s: float) -> None:
        while self._heap and self._heap[0][0] < now_s:
            _, key = heapq.heappop(self._heap)
            self._expiry.pop(key, None)


# --------------------------------------------------------------------------- requests


def request_envelope(capability: str, version: str, request_id: str, sender: str,
                     community: str, timestamp: str, body: Any) -> dict[str, Any]:
    return {"capability": capability, "version": version, "request_id": request_id,
            "from": sender, "community": community, "timestamp": timestamp, "body": body}


def sign_request(kp: KeyPair, community_id: str, capability: str, version: str, body: Any, *,
                 request_id: str | None = None, now: datetime | None = None) -> dict[str, str]:
    """The `X-HearthNet-*` headers for one request (body None for a GET)."""
    if not _CAPABILITY_RE.match(capability) or not _VERSION_RE.match(version):
        raise HearthNetError("bad_request", f"cannot sign {capability!r}@{version!r}: bad name or version")
    rid = request_id or new_ulid()
    ts = rfc3339(_as_utc(now))
    env = request_envelope(capability, version, rid, kp.node_id_full, community_id, ts, body)
    return {H_CAPABILITY: capability, H_VERSION: version, H_REQUEST_ID: rid,
            H_FROM: kp.node_id_full, H_COMMUNITY: community_id, H_TIMESTAMP: ts,
            H_SIGNATURE: kp.sign_bytes(_canonical(env))}


def _check_request_shape(h: dict[str, str]) -> None:
    if not _CAPABILITY_RE.match(h[H_CAPABILITY]):
        raise HearthNetError("bad_request", f"{h[H_CAPABILITY]!r} is not a capability name")
    if not _VERSION_RE.match(h[H_VERSION]):
        raise HearthNetError("bad_request", f"{H_VERSION} {h[H_VERSION]!r} is not major.minor")
    if not _ULID_RE.match(h[H_REQUEST_ID]):
        raise HearthNetError("bad_request", f"{H_REQUEST_ID} {h[H_REQUEST_ID]!r} is not a ULID")


def _verify_signature(data: bytes, signature: str, sender: str, what: str) -> None:
    try:
        key = verify_key_from_full(sender)
    except HearthNetError:
        raise HearthNetError("invalid_signature", f"{H_FROM} {sender!r} is not a full node id") from None
    if not verify_bytes(data, signature, key):
        raise HearthNetError("invalid_signature", f"{what} signature does not verify for {sender}")


def verify_request(headers: Mapping[str, str], body: Any, *, replay: ReplayCache,
                   now: datetime | None = None, community_id: str | None = None,
                   expect_capability: str | None = None) -> str:
    """Check a signed request; returns the caller's full NodeID.

    `body` is the parsed JSON body (None for a GET). `community_id`: if given, the
    request must name it (else unauthorized). `expect_capability`: for routes with a
    fixed name such as `sync.heads` (else bad_request)."""
    h = _required(headers, _REQUIRED_REQUEST_HEADERS, "bad_request")
    h[H_SIGNATURE] = _header(headers, H_SIGNATURE) or ""
    _check_request_shape(h)
    ts = _parse_timestamp(h[H_TIMESTAMP], "bad_request")
    env = request_envelope(h[H_CAPABILITY], h[H_VERSION], h[H_REQUEST_ID], h[H_FROM],
                           h[H_COMMUNITY], h[H_TIMESTAMP], body)
    _verify_signature(_canonical(env), h[H_SIGNATURE], h[H_FROM], "request")
    if expect_capability is not None and h[H_CAPABILITY] != expect_capability:
        raise HearthNetError("bad_request", f"this route takes {expect_capability}, not {h[H_CAPABILITY]}")
    if community_id is not None and h[H_COMMUNITY] != community_id:
        raise HearthNetError("unauthorized", "request is for another community")
    moment = _as_utc(now)
    _check_skew(ts, moment, "request")
    replay.add(h[H_FROM], h[H_REQUEST_ID], ts, moment)  # last: only verified requests count
    return h[H_FROM]


# --------------------------------------------------------------------------- responses


def response_envelope(request_id: str, sender: str, timestamp: str, status: int, body: Any) -> dict[str, Any]:
    return {"request_id": request_id, "from": sender, "timestamp": timestamp, "status": status, "body": body}


def sign_response(kp: KeyPair, request_id: str, status: int, body: Any, *,
                  now: datetime | None = None) -> dict[str, str]:
    ts = rfc3339(_as_utc(now))
    env = response_envelope(request_id, kp.node_id_full, ts, int(status), body)
    return {H_REQUEST_ID: request_id, H_FROM: kp.node_id_full, H_TIMESTAMP: ts,
            H_SIGNATURE: kp.sign_bytes(_canonical(env))}


def verify_response(headers: Mapping[str, str], body: Any, *, expected_from: str, request_id: str,
                    status: int, now: datetime | None = None) -> None:
    """Check a signed response from `expected_from` to our request `request_id`.
    Raises invalid_signature (missing, wrong signer or request, bad signature) or expired."""
    h = _required(headers, RESPONSE_HEADERS, "invalid_signature")
    if h[H_FROM] != expected_from:
        raise HearthNetError("invalid_signature", f"response is signed by {h[H_FROM]}, not {expected_from}")
    if h[H_REQUEST_ID] != request_id:
        raise HearthNetError("invalid_signature", "response answers another request")
    ts = _parse_timestamp(h[H_TIMESTAMP], "invalid_signature")
    env = response_envelope(request_id, expected_from, h[H_TIMESTAMP], int(status), body)
    try:
        data = canonical_json(env)
    except (TypeError, ValueError):
        raise HearthNetError("invalid_signature", "response body cannot be canonicalised") from None
    _verify_signature(data, h[H_SIGNATURE], expected_from, "response")
    _check_skew(ts, _as_utc(now), "response")
