"""The invite blob and its text forms (spec core-observability-cli-onboarding §6.1;
DESIGN.md §5).

An invite is an `InviteBlob` signed by the inviter over the canonical JSON of its fields:

    schema_version       1
    community_id         full id (the root key)
    community_name       1..64 characters
    inviter_node_id      full NodeID; its key verifies `signature`
    invitee_node_id      full NodeID: the one node that may redeem it (no open invites)
    initial_level        member | trusted
    bootstrap_endpoints  [{"transport": "https", "host", "port"}], where to reach the inviter
    expires_at           RFC 3339 UTC
    signature            ed25519:<b64url> over the canonical JSON of all the above

Text forms, all decoded by `decode_invite`:

    hearthnet://v1/<b64url payload>   what the CLI prints and puts in the QR code
    ed25519:<b64url canonical JSON>   the contract's `community.invite` wire field

The `hearthnet://v1/` payload is either the canonical JSON itself (first byte `{`) or,
when the blob allows it, the same fields packed into bytes (first byte 0x01): three
public keys, the raw signature, the expiry as Unix seconds, IP addresses as bytes. The
JSON of a typical invite is ~530 bytes and ~720 characters once base64url-encoded, which
needs a version-19 QR code (101 terminal columns with its quiet zone); packed it is ~290
characters, a version-12 code that fits an 80-column terminal, and well under the
spec's 500-byte target. Packing is lossless by construction: `encode_invite` packs only
a blob that unpacks to exactly the same fields (else it writes the JSON), and what is
verified is always the signature over the canonical JSON of the decoded fields.

The fresh-device id text `hearthnet-id://v1/<b64url canonical JSON of {"node_id_full",
"display_name"}>` (unsigned: it only carries a public key) is what a new device shows so
an inviter can address an invite to it.
"""
from __future__ import annotations

import ipaddress
import json
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from hearthnet.errors import HearthNetError, IdentityError
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import (
    PREFIX,
    SIG_BYTES,
    KeyPair,
    b64url_decode,
    b64url_nopad,
    full_node_id,
    parse_node_id,
    short_node_id,
    verify_payload_with_node_id,
)
from hearthnet.identity.manifest import COMMUNITY_NAME_MAX, parse_rfc3339, rfc3339, utcnow
from hearthnet.onboarding.errors import OnboardingError

SCHEMA_VERSION = 1
INVITE_PREFIX = "hearthnet://v1/"
ID_PREFIX = "hearthnet-id://v1/"
INVITE_LEVELS = ("member", "trusted")
INVITE_FIELDS = ("schema_version", "community_id", "community_name", "inviter_node_id",
                 "invitee_node_id", "initial_level", "bootstrap_endpoints", "expires_at", "signature")
ENDPOINT_FIELDS = ("transport", "host", "port")
MAX_ENDPOINTS = 8
MAX_TEXT = 8192  # anything longer is not an invite
DEFAULT_TTL_HOURS = 24.0
DISPLAY_NAME_MAX = 64

_PACKED = 0x01  # first payload byte of the packed form ('{' = 0x7B starts the JSON form)
_SAME_COMMUNITY_AND_INVITER = 0x01  # flag: the inviter is the community's root key
_HOST_NAME, _HOST_V4, _HOST_V6 = 0, 4, 6
_WHITESPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------- the blob


@dataclass(frozen=True)
class InviteBlob:
    community_id: str
    community_name: str
    inviter_node_id: str
    invitee_node_id: str
    initial_level: str
    bootstrap_endpoints: tuple[Mapping[str, Any], ...]
    expires_at: str
    signature: str = ""
    schema_version: int = SCHEMA_VERSION

    def body(self) -> dict[str, Any]:
        """Every field but the signature: what the signature covers (canonical JSON)."""
        return {
            "schema_version": self.schema_version,
            "community_id": self.community_id,
            "community_name": self.community_name,
            "inviter_node_id": self.inviter_node_id,
            "invitee_node_id": self.invitee_node_id,
            "initial_level": self.initial_level,
            "bootstrap_endpoints": [dict(e) for e in self.bootstrap_endpoints],
            "expires_at": self.expires_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature}

    @classmethod
    def from_dict(cls, doc: Any) -> "InviteBlob":
        """Check the shape of a decoded blob (not its signature); raises invite_invalid."""
        problem = _shape_problem(doc)
        if problem is not None:
            raise OnboardingError("invite_invalid", f"not a valid invite: {problem}")
        return cls(
            community_id=doc["community_id"], community_name=doc["community_name"],
            inviter_node_id=doc["inviter_node_id"], invitee_node_id=doc["invitee_node_id"],
            initial_level=doc["initial_level"],
            bootstrap_endpoints=tuple(dict(e) for e in doc["bootstrap_endpoints"]),
            expires_at=doc["expires_at"], signature=doc["signature"],
            schema_version=doc["schema_version"])

    def signature_ok(self) -> bool:
        return verify_payload_with_node_id(self.to_dict(), self.inviter_node_id)

    @property
    def expires(self) -> datetime:
        return parse_rfc3339(self.expires_at)

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) > self.expires

    def endpoints(self) -> list[tuple[str, int]]:
        return [(str(e["host"]), int(e["port"])) for e in self.bootstrap_endpoints]


def sign_invite(
    kp: KeyPair,
    *,
    community_id: str,
    community_name: str,
    invitee_node_id: str,
    initial_level: str,
    bootstrap_endpoints: Iterable[Mapping[str, Any]],
    expires_at: str,
) -> InviteBlob:
    """A blob signed by `kp` (the inviter). Raises invite_invalid for fields that would
    not decode again, so nothing malformed is ever handed out."""
    body = {
        "schema_version": SCHEMA_VERSION, "community_id": community_id,
        "community_name": community_name, "inviter_node_id": kp.node_id_full,
        "invitee_node_id": invitee_node_id, "initial_level": initial_level,
        "bootstrap_endpoints": [{k: e[k] for k in ENDPOINT_FIELDS} for e in bootstrap_endpoints],
        "expires_at": expires_at,
    }
    return InviteBlob.from_dict(kp.sign(body))


def expiry_after(hours: float, now: datetime | None = None) -> str:
    """RFC 3339 time `hours` from now, to the second."""
    at = (now or utcnow()) + timedelta(seconds=round(hours * 3600))
    return rfc3339(at)


# --------------------------------------------------------------------------- shape


def _node_id_ok(value: Any) -> bool:
    try:
        parse_node_id(value)
    except IdentityError:
        return False
    return True


def _endpoint_problem(e: Any) -> str | None:
    if not isinstance(e, dict) or set(e) != set(ENDPOINT_FIELDS):
        return f"a bootstrap endpoint must have exactly {', '.join(ENDPOINT_FIELDS)}"
    if e["transport"] != "https":
        return f"bootstrap transport {e['transport']!r} is not https"
    if not isinstance(e["host"], str) or not 0 < len(e["host"]) <= 253:
        return "a bootstrap host must be a non-empty string"
    port = e["port"]
    if type(port) is not int or not 0 < port < 65536:
        return f"bootstrap port {port!r} is not a TCP port"
    return None


def _shape_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "it is not an object"
    if set(doc) != set(INVITE_FIELDS):
        missing = sorted(set(INVITE_FIELDS) - set(doc))
        return f"missing {', '.join(missing)}" if missing else f"unknown fields {sorted(set(doc) - set(INVITE_FIELDS))}"
    if type(doc["schema_version"]) is not int or doc["schema_version"] != SCHEMA_VERSION:
        return f"schema_version {doc['schema_version']!r} is not {SCHEMA_VERSION}"
    for key in ("community_id", "inviter_node_id", "invitee_node_id"):
        if not _node_id_ok(doc[key]):
            return f"{key} is not a full node id"
    name = doc["community_name"]
    if not isinstance(name, str) or not 1 <= len(name) <= COMMUNITY_NAME_MAX:
        return f"community_name must be 1-{COMMUNITY_NAME_MAX} characters"
    if doc["initial_level"] not in INVITE_LEVELS:
        return f"initial_level {doc['initial_level']!r} is not one of {', '.join(INVITE_LEVELS)}"
    eps = doc["bootstrap_endpoints"]
    if not isinstance(eps, list) or not 1 <= len(eps) <= MAX_ENDPOINTS:
        return f"bootstrap_endpoints must list 1-{MAX_ENDPOINTS} endpoints"
    for e in eps:
        problem = _endpoint_problem(e)
        if problem is not None:
            return problem
    try:
        parse_rfc3339(doc["expires_at"])
    except (ValueError, TypeError):
        return "expires_at is not an RFC 3339 timestamp"
    if not isinstance(doc["signature"], str) or not doc["signature"].startswith(PREFIX):
        return "signature is missing"
    return None


# --------------------------------------------------------------------------- text forms


def encode_invite(blob: InviteBlob) -> str:
    """`hearthnet://v1/<b64url>`: the packed form when it is lossless, else the JSON."""
    packed = _pack(blob)
    payload = packed if packed is not None else canonical_json(blob.to_dict())
    return INVITE_PREFIX + b64url_nopad(payload)


def encode_invite_json(blob: InviteBlob) -> str:
    """`hearthnet://v1/<b64url canonical JSON>` (never packed)."""
    return INVITE_PREFIX + b64url_nopad(canonical_json(blob.to_dict()))


def encode_invite_contract(blob: InviteBlob) -> str:
    """The contract's wire form (`community.invite` output.invite_blob)."""
    return PREFIX + b64url_nopad(canonical_json(blob.to_dict()))


def decode_invite(text: str) -> InviteBlob:
    """Parse any invite text form and verify the inviter's signature. Raises
    OnboardingError('invite_invalid') with what is wrong; expiry and addressee are the
    redeemer's checks (`check_invite`)."""
    if not isinstance(text, str):
        raise OnboardingError("invite_invalid", "an invite is text")
    text = _WHITESPACE.sub("", text).strip("'\"<>")
    if len(text) > MAX_TEXT:
        raise OnboardingError("invite_invalid", f"that is {len(text)} characters long; an invite is far shorter")
    if text.startswith(ID_PREFIX):
        raise OnboardingError("invite_invalid", "that is a device id (hearthnet-id://), not an invite: "
                                                "give it to a member so they can invite this device")
    if text.lower().startswith(INVITE_PREFIX):
        payload = _b64(text[len(INVITE_PREFIX):])
    elif text.startswith(PREFIX):
        payload = _b64(text[len(PREFIX):])
        if len(payload) == 32:
            raise OnboardingError("invite_invalid", "that is a node id, not an invite")
    else:
        raise OnboardingError("invite_invalid", f"an invite starts with {INVITE_PREFIX} (or {PREFIX})")
    blob = _unpack(payload) if payload[:1] == bytes([_PACKED]) else _from_json(payload)
    if not blob.signature_ok():
        raise OnboardingError("invite_invalid", "the invite's signature does not verify: it was altered "
                                                "or not issued by the node it names")
    return blob


def check_invite(blob: InviteBlob, our_node_id: str, now: datetime | None = None) -> None:
    """The redeemer's checks (§6.4 step 1 after the signature): addressed to us, not expired."""
    if blob.invitee_node_id != our_node_id:
        raise OnboardingError(
            "invitee_mismatch",
            f"this invite is for node {short_node_id(blob.invitee_node_id)}, but this device is "
            f"{short_node_id(our_node_id)}",
            hint="an invite works only on the device whose id it was made for; run `hearthnet id` "
                 "on this device and ask for an invite to that id")
    if blob.is_expired(now):
        raise OnboardingError("invite_expired", f"this invite expired at {blob.expires_at}",
                              hint="ask the inviter for a new one (`hearthnet invite create`)")


def _b64(text: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError as exc:
        raise OnboardingError("invite_invalid", f"the invite text is damaged ({exc}); copy it again") from None


def _from_json(payload: bytes) -> InviteBlob:
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise OnboardingError("invite_invalid", "the invite text is damaged (not JSON inside); copy it again") from None
    return InviteBlob.from_dict(doc)


# --------------------------------------------------------------------------- packed form


def _pack_host(host: str) -> bytes | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("ascii", "strict") if host.isascii() else None
        return None if raw is None or len(raw) > 255 else bytes([_HOST_NAME, len(raw)]) + raw
    if str(ip) != host:  # a non-canonical spelling would not come back the same
        return None
    return bytes([_HOST_V4 if ip.version == 4 else _HOST_V6]) + ip.packed


def _pack(blob: InviteBlob) -> bytes | None:
    """The packed payload, or None when it could not reproduce every field exactly."""
    try:
        expires = parse_rfc3339(blob.expires_at)
        seconds = int(expires.timestamp())
        sig = b64url_decode(blob.signature[len(PREFIX):])
    except (ValueError, TypeError):
        return None
    name = blob.community_name.encode("utf-8")
    if (rfc3339(expires) != blob.expires_at or not 0 <= seconds < 2**32 or len(sig) != SIG_BYTES
            or len(name) > 255 or blob.schema_version != SCHEMA_VERSION):
        return None
    same = blob.community_id == blob.inviter_node_id
    out = bytearray([_PACKED, _SAME_COMMUNITY_AND_INVITER if same else 0])
    if not same:
        out += parse_node_id(blob.community_id)
    out += parse_node_id(blob.inviter_node_id) + parse_node_id(blob.invitee_node_id)
    out += bytes([INVITE_LEVELS.index(blob.initial_level)]) + struct.pack(">I", seconds)
    out += bytes([len(name)]) + name + bytes([len(blob.bootstrap_endpoints)])
    for e in blob.bootstrap_endpoints:
        host = _pack_host(e["host"])
        if host is None or e["transport"] != "https":
            return None
        out += host + struct.pack(">H", e["port"])
    out += sig
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise OnboardingError("invite_invalid", "the invite text is cut short; copy all of it")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]


def _unpack_host(r: _Reader) -> str:
    kind = r.byte()
    if kind == _HOST_V4:
        return str(ipaddress.IPv4Address(r.take(4)))
    if kind == _HOST_V6:
        return str(ipaddress.IPv6Address(r.take(16)))
    if kind == _HOST_NAME:
        try:
            return r.take(r.byte()).decode("ascii")
        except UnicodeDecodeError:
            raise OnboardingError("invite_invalid", "the invite text is damaged (bad host)") from None
    raise OnboardingError("invite_invalid", "the invite text is damaged (unknown host kind)")


def _unpack(payload: bytes) -> InviteBlob:
    r = _Reader(payload)
    r.byte()  # _PACKED
    flags = r.byte()
    community = None if flags & _SAME_COMMUNITY_AND_INVITER else full_node_id(r.take(32))
    inviter, invitee = full_node_id(r.take(32)), full_node_id(r.take(32))
    level = r.byte()
    (seconds,) = struct.unpack(">I", r.take(4))
    try:
        name = r.take(r.byte()).decode("utf-8")
    except UnicodeDecodeError:
        raise OnboardingError("invite_invalid", "the invite text is damaged (bad name)") from None
    endpoints = []
    for _ in range(r.byte()):
        host = _unpack_host(r)
        (port,) = struct.unpack(">H", r.take(2))
        endpoints.append({"transport": "https", "host": host, "port": port})
    signature = PREFIX + b64url_nopad(r.take(SIG_BYTES))
    if r.at != len(payload) or flags & ~_SAME_COMMUNITY_AND_INVITER or level >= len(INVITE_LEVELS):
        raise OnboardingError("invite_invalid", "the invite text is damaged; copy it again")
    return InviteBlob.from_dict({
        "schema_version": SCHEMA_VERSION, "community_id": community or inviter, "community_name": name,
        "inviter_node_id": inviter, "invitee_node_id": invitee, "initial_level": INVITE_LEVELS[level],
        "bootstrap_endpoints": endpoints,
        "expires_at": rfc3339(datetime.fromtimestamp(seconds, tz=timezone.utc)), "signature": signature})


# --------------------------------------------------------------------------- device id text


def encode_node_id_text(node_id: str, display_name: str = "") -> str:
    """`hearthnet-id://v1/<b64url canonical JSON>`: what a fresh device shows its inviter."""
    parse_node_id(node_id)
    doc = {"node_id_full": node_id, "display_name": display_name[:DISPLAY_NAME_MAX]}
    return ID_PREFIX + b64url_nopad(canonical_json(doc))


def decode_node_id_text(text: str) -> tuple[str, str]:
    """(full node id, display name) from a `hearthnet-id://v1/` text."""
    text = _WHITESPACE.sub("", text).strip("'\"<>")
    if not text.startswith(ID_PREFIX):
        raise HearthNetError("usage", f"a device id text starts with {ID_PREFIX}")
    try:
        doc = json.loads(b64url_decode(text[len(ID_PREFIX):]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise HearthNetError("usage", "the device id text is damaged; copy it again") from None
    node_id = doc.get("node_id_full") if isinstance(doc, dict) else None
    name = doc.get("display_name", "") if isinstance(doc, dict) else ""
    if not _node_id_ok(node_id) or not isinstance(name, str):
        raise HearthNetError("usage", "the device id text does not hold a full node id")
    return node_id, name[:DISPLAY_NAME_MAX]


def parse_invitee(text: str) -> tuple[str, str]:
    """`--node-id`: a full node id or a `hearthnet-id://` text -> (node id, display name)."""
    text = text.strip()
    if text.startswith(ID_PREFIX):
        return decode_node_id_text(text)
    try:
        parse_node_id(text)
    except IdentityError as exc:
        hint = (" (a short id is for display only: run `hearthnet id` on that device for the full one)"
                if "short" in exc.message else "")
        raise HearthNetError("usage", f"--node-id: {exc.message}{hint}") from None
    return text, ""
