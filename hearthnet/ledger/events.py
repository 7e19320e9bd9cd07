"""The signed event envelope and the closed set of event types (spec core-events-discovery
§1–2; CONTRACT §7.1–7.2).

An event is a plain dict:

    schema_version  1
    event_id        ULID
    lamport         int >= 1, the per-community logical clock
    wall_clock      RFC 3339 UTC, advisory
    community_id    full id (the root key)
    author          full NodeID; its key verifies `signature`
    event_type      one of EVENT_TYPES
    data            object with that type's required fields
    signature       ed25519 over the canonical JSON of every other field

Shape checks return a problem string (or None) instead of raising, so a batch of received
events can be judged one by one without exceptions on the hot path.

Beyond the spec, two fields make membership order-proof (rules in views.py):
- `community.member.joined` carries `admission` {"by", "at", "signature"}: the invite
  author's node signed {"invite_event_id", "invitee_node_id", "at"} when the joiner
  redeemed (and only while the invite was unexpired on that node's clock), so expiry is
  judged on the inviter's clock, never on the joiner's `wall_clock`.
- `community.member.revoked` carries `frontier`: the sorted, unique event ids the
  revoker's node held that were authored by the target, plus the joins that used the
  target's invites, plus the governance events the target co-signed. Co-signers sign it
  with the rest of the data.
- `community.member.demoted` carries `frontier` too: the governance events the demoter's
  node held that the target authored or co-signed (views.py R4).

Co-signatures (revoke, promote, demote): each co-signer signs the canonical JSON of
`{"community_id", "event_type", "data": data minus co_signers}`. The spec says "the payload
minus co_signers"; binding the community and the type as well stops a signature collected
for one community or action from being replayed in another.
"""
from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any, Iterable, Mapping

from nacl.signing import VerifyKey

from hearthnet.errors import IdentityError
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import KeyPair, parse_node_id, verify_bytes, verify_payload
from hearthnet.identity.manifest import DEFAULT_POLICY, parse_rfc3339, rfc3339, utcnow
from hearthnet.ids import new_ulid

SCHEMA_VERSION = 1
ENVELOPE_FIELDS = ("schema_version", "event_id", "lamport", "wall_clock", "community_id",
                   "author", "event_type", "data", "signature")
MAX_LAMPORT = 2**63 - 1  # SQLite INTEGER
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")

MEMBER_LEVELS = ("member", "trusted", "anchor")
LEVEL_RANK = {level: rank for rank, level in enumerate(MEMBER_LEVELS, start=1)}
MARKET_EXPIRE_REASONS = ("fulfilled", "withdrawn", "user_request", "stale")

# Rejection reasons of a received event (IngestResult.rejected_reasons[].reason).
SCHEMA_UNKNOWN = "schema_unknown"
INVALID_SIGNATURE = "invalid_signature"
COMMUNITY_MISMATCH = "community_mismatch"
UNKNOWN_AUTHOR = "unknown_author"
REVOKED_AUTHOR = "revoked_author"
UNAUTHORIZED = "unauthorized"
LAMPORT_TOO_FAR = "lamport_too_far"

_S, _I, _D, _L, _N = str, int, dict, list, type(None)

# The closed set (§2): event_type -> required data field -> accepted JSON types.
# Extra data fields are allowed (they are signed; readers ignore what they do not know).
# federation.peer.* are reserved for Phase 2 and refused as schema_unknown until defined.
EVENT_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "community.created": {"name": (_S,), "founder_node_id": (_S,), "policy": (_D,)},
    "community.member.invited": {"invitee_node_id": (_S,), "display_name": (_S,),
                                 "initial_level": (_S,), "expires_at": (_S,)},
    "community.member.joined": {"invite_event_id": (_S,), "node_manifest": (_D,), "admission": (_D,)},
    "community.member.revoked": {"target_node_id": (_S,), "reason": (_S,), "co_signers": (_L,),
                                 "frontier": (_L,)},
    "community.member.promoted": {"target_node_id": (_S,), "new_level": (_S,), "co_signers": (_L,)},
    "community.member.demoted": {"target_node_id": (_S,), "new_level": (_S,), "co_signers": (_L,),
                                 "frontier": (_L,)},
    "community.policy.updated": {"policy": (_D,)},
    "node.manifest.updated": {"manifest": (_D,)},
    "market.post.created": {"client_id": (_S,), "category": (_S,), "title": (_S,), "body": (_S,),
                            "location": (_D, _N), "tags": (_L,), "ttl_seconds": (_I,)},
    "market.post.updated": {"client_id": (_S,), "target_event_id": (_S,), "fields": (_D,)},
    "market.post.expired": {"client_id": (_S,), "target_event_id": (_S,), "reason": (_S,)},
    "chat.message.sent": {"client_id": (_S,), "recipient": (_S,), "body": (_S,), "attachments": (_L,)},
    "chat.message.delivered": {"target_event_id": (_S,), "delivered_at": (_S,)},
    "chat.message.read": {"target_event_id": (_S,), "read_at": (_S,)},
    "file.cid.advertised": {"cid": (_S,), "sizes_bytes": (_I,)},
    "file.cid.unpinned": {"cid": (_S,)},
    "rag.document.ingested": {"corpus": (_S,), "doc_cid": (_S,), "title": (_S,),
                              "language": (_S, _N), "chunks": (_I,)},
    # Emergency alerts (issue 10), modelled on the Common Alerting Protocol 1.2: the
    # author is CAP's sender, wall_clock its `sent`; only trusted/anchor members issue
    # them (domain.py). An Update or Cancel names the alerts it replaces in `references`.
    "emergency.alert.issued": {"identifier": (_S,), "status": (_S,), "msg_type": (_S,), "urgency": (_S,),
                               "severity": (_S,), "certainty": (_S,), "headline": (_S,), "description": (_S,),
                               "instruction": (_S,), "area": (_S,), "expires": (_S,), "references": (_L,)},
    "emergency.alert.acknowledged": {"target_event_id": (_S,), "status": (_S,), "note": (_S,)},
}
# CAP 1.2 value sets (the spec's names, snake_case keys), and the acknowledgement statuses.
ALERT_ENUMS = {
    "status": ("Actual", "Exercise", "Test"),
    "msg_type": ("Alert", "Update", "Cancel"),
    "urgency": ("Immediate", "Expected", "Future", "Past", "Unknown"),
    "severity": ("Extreme", "Severe", "Moderate", "Minor", "Unknown"),
    "certainty": ("Observed", "Likely", "Possible", "Unlikely", "Unknown"),
}
ACK_STATUSES = ("ok", "need_help", "other")
ALERT_TEXT_MAX = {"identifier": 128, "headline": 160, "description": 4096, "instruction": 4096, "area": 512,
                  "note": 1024}
ALERT_REFERENCES_MAX = 32
RESERVED_TYPES = frozenset({"federation.peer.added", "federation.peer.removed"})
# Types the community view materialises (membership, invites, policy).
GOVERNANCE_TYPES = frozenset(t for t in EVENT_TYPES if t.startswith("community."))
CO_SIGNED_TYPES = frozenset(t for t, fields in EVENT_TYPES.items() if "co_signers" in fields)
# Governance types that change the community manifest (an invite does not).
MANIFEST_TYPES = GOVERNANCE_TYPES - {"community.member.invited"}
_NODE_ID_FIELDS = {"founder_node_id", "invitee_node_id", "target_node_id", "recipient"}
MAX_FRONTIER = 100_000  # event ids in one revocation's frontier
ADMISSION_FIELDS = ("by", "at", "signature")
_TIME_FIELDS = {"expires_at", "delivered_at", "read_at", "expires"}


# --------------------------------------------------------------------------- shape


def _type_ok(value: Any, accepted: tuple[type, ...]) -> bool:
    # bool is an int in Python but not in JSON Schema: true is no ttl_seconds.
    if isinstance(value, bool):
        return bool in accepted
    return isinstance(value, accepted)


def _node_id_ok(value: Any) -> bool:
    try:
        parse_node_id(value)
    except IdentityError:
        return False
    return True


def _time_ok(value: Any) -> bool:
    try:
        parse_rfc3339(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def data_problem(event_type: Any, data: Any) -> str | None:
    """What is wrong with `data` for `event_type` (required fields, basic types), or None."""
    fields = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if fields is None:
        return f"unknown event type {event_type!r}"
    if not isinstance(data, dict):
        return "data must be an object"
    for name, accepted in fields.items():
        if name not in data:
            return f"data.{name} is missing"
        if not _type_ok(data[name], accepted):
            return f"data.{name} has the wrong type"
    return _value_problem(event_type, data)


def _value_problem(event_type: str, data: Mapping[str, Any]) -> str | None:
    defined = EVENT_TYPES[event_type].keys()
    for name in _NODE_ID_FIELDS & defined:
        if not _node_id_ok(data[name]):
            return f"data.{name} is not a full node id"
    for name in _TIME_FIELDS & defined:
        if not _time_ok(data[name]):
            return f"data.{name} is not an RFC 3339 timestamp"
    for name in ("initial_level", "new_level"):
        if name in EVENT_TYPES[event_type] and data[name] not in MEMBER_LEVELS:
            return f"data.{name} {data[name]!r} is not one of {', '.join(MEMBER_LEVELS)}"
    problem = policy_problem(data["policy"]) if "policy" in EVENT_TYPES[event_type] else None
    if problem is not None:
        return problem
    if "target_event_id" in defined and not ULID_RE.match(data["target_event_id"]):
        return "data.target_event_id is not an event id"
    if event_type == "market.post.expired" and data["reason"] not in MARKET_EXPIRE_REASONS:
        return f"data.reason must be one of {', '.join(MARKET_EXPIRE_REASONS)}"
    if event_type.startswith("emergency.alert."):
        return alert_problem(event_type, data)
    if event_type == "community.member.joined":
        return admission_problem(data["admission"])
    if event_type in ("community.member.revoked", "community.member.demoted"):
        return frontier_problem(data["frontier"])
    return None


def alert_problem(event_type: str, data: Mapping[str, Any]) -> str | None:
    """CAP's value sets, a headline, bounded texts, references that are event ids."""
    for name, limit in ALERT_TEXT_MAX.items():
        if name in data and isinstance(data[name], str) and len(data[name]) > limit:
            return f"data.{name} is longer than {limit} characters"
    if event_type == "emergency.alert.acknowledged":
        if data["status"] not in ACK_STATUSES:
            return f"data.status must be one of {', '.join(ACK_STATUSES)}"
        return None
    for name, allowed in ALERT_ENUMS.items():
        if data[name] not in allowed:
            return f"data.{name} must be one of {', '.join(allowed)}"
    if not data["headline"].strip():
        return "data.headline must not be empty"
    refs = data["references"]
    if len(refs) > ALERT_REFERENCES_MAX or not all(isinstance(r, str) and ULID_RE.match(r) for r in refs):
        return f"data.references must be at most {ALERT_REFERENCES_MAX} event ids"
    if (data["msg_type"] != "Alert") != bool(refs):
        return "data.references must name the alerts an Update or Cancel replaces (and only then)"
    return None


def admission_problem(admission: Any) -> str | None:
    """Shape of a join's admission (its signature is checked by the view, which knows
    the invite's author)."""
    if not isinstance(admission, dict) or set(admission) != set(ADMISSION_FIELDS):
        return f"data.admission must have exactly the fields {', '.join(ADMISSION_FIELDS)}"
    if not _node_id_ok(admission["by"]):
        return "data.admission.by is not a full node id"
    if not _time_ok(admission["at"]):
        return "data.admission.at is not an RFC 3339 timestamp"
    if not isinstance(admission["signature"], str):
        return "data.admission.signature must be a string"
    return None


def frontier_problem(frontier: Any) -> str | None:
    """A revocation's or demotion's frontier: at most MAX_FRONTIER event ids (ULIDs), sorted and unique,
    so equal frontiers have one form."""
    if len(frontier) > MAX_FRONTIER:
        return f"data.frontier holds more than {MAX_FRONTIER} event ids"
    if not all(isinstance(i, str) and ULID_RE.match(i) for i in frontier):
        return "data.frontier must hold event ids (ULIDs)"
    if any(a >= b for a, b in zip(frontier, frontier[1:])):
        return "data.frontier must be sorted and without repeats"
    return None


def policy_problem(policy: Any) -> str | None:
    """A full policy: every DEFAULT_POLICY key with its type, nothing else."""
    if not isinstance(policy, dict) or set(policy) != set(DEFAULT_POLICY):
        return f"policy must have exactly the fields {', '.join(sorted(DEFAULT_POLICY))}"
    for key, default in DEFAULT_POLICY.items():
        if type(policy[key]) is not type(default):
            return f"policy.{key} has the wrong type"
    return None


def shape_problem(ev: Any) -> str | None:
    """What makes `ev` not a well-formed event envelope, or None. Does not check the
    signature."""
    if not isinstance(ev, dict):
        return "an event must be an object"
    if set(ev) != set(ENVELOPE_FIELDS):
        missing = sorted(set(ENVELOPE_FIELDS) - set(ev))
        return f"missing {', '.join(missing)}" if missing else f"unknown fields {sorted(set(ev) - set(ENVELOPE_FIELDS))}"
    if type(ev["schema_version"]) is not int or ev["schema_version"] != SCHEMA_VERSION:
        return f"schema_version {ev['schema_version']!r} is not {SCHEMA_VERSION}"
    if not isinstance(ev["event_id"], str) or not ULID_RE.match(ev["event_id"]):
        return "event_id is not a ULID"
    lamport = ev["lamport"]
    if type(lamport) is not int or not 1 <= lamport <= MAX_LAMPORT:
        return "lamport must be a positive integer"
    if not _time_ok(ev["wall_clock"]):
        return "wall_clock is not an RFC 3339 timestamp"
    if not _node_id_ok(ev["community_id"]) or not _node_id_ok(ev["author"]):
        return "community_id and author must be full node ids"
    if not isinstance(ev["signature"], str):
        return "signature must be a string"
    problem = data_problem(ev["event_type"], ev["data"])
    return None if problem is None else f"{ev['event_type']}: {problem}"


def verify_event_shape(ev: Any) -> None:
    """Raise LedgerError('schema_unknown') for a malformed envelope or unknown type."""
    from hearthnet.ledger.errors import LedgerError

    problem = shape_problem(ev)
    if problem is not None:
        raise LedgerError(SCHEMA_UNKNOWN, problem)


# --------------------------------------------------------------------------- signatures


@functools.lru_cache(maxsize=4096)
def _verify_key(node_id: str) -> VerifyKey | None:
    # A batch usually holds many events from few authors: decode each key once.
    try:
        return VerifyKey(parse_node_id(node_id))
    except IdentityError:
        return None


def verify_event_signature(ev: Mapping[str, Any]) -> bool:
    """The author's key signed the canonical JSON of every field but `signature`."""
    key = _verify_key(ev.get("author", "")) if isinstance(ev.get("author"), str) else None
    return key is not None and verify_payload(dict(ev), key)


def build_event(
    kp: KeyPair,
    community_id: str,
    lamport: int,
    event_type: str,
    data: Mapping[str, Any],
    *,
    now: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A signed envelope authored by `kp`. Raises LedgerError('bad_request') for data
    that does not fit the type (so nothing malformed is ever signed)."""
    from hearthnet.ledger.errors import LedgerError

    problem = data_problem(event_type, dict(data))
    if problem is not None:
        raise LedgerError("bad_request", f"{event_type}: {problem}")
    if type(lamport) is not int or not 1 <= lamport <= MAX_LAMPORT:
        raise LedgerError("bad_request", f"lamport {lamport!r} must be a positive integer")
    ev = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id or new_ulid(),
        "lamport": lamport,
        "wall_clock": rfc3339(now or utcnow()),
        "community_id": community_id,
        "author": kp.node_id_full,
        "event_type": event_type,
        "data": dict(data),
    }
    return kp.sign(ev)


def sort_key(ev: Mapping[str, Any]) -> tuple[int, str]:
    """Replay order (§3): lamport ascending, ties by event_id."""
    return ev["lamport"], ev["event_id"]


def wall_time(ev: Mapping[str, Any]) -> datetime:
    return parse_rfc3339(ev["wall_clock"])


# --------------------------------------------------------------------------- admissions


def admission_payload(invite_event_id: str, invitee_node_id: str, at: str) -> bytes:
    return canonical_json({"invite_event_id": invite_event_id, "invitee_node_id": invitee_node_id, "at": at})


def build_admission(kp: KeyPair, invite_event_id: str, invitee_node_id: str,
                    at: datetime | None = None) -> dict[str, str]:
    """The `admission` of a join, signed by the invite author's node `kp` at `at`."""
    when = rfc3339(at or utcnow())
    return {"by": kp.node_id_full, "at": when,
            "signature": kp.sign_bytes(admission_payload(invite_event_id, invitee_node_id, when))}


def admission_verifies(admission: Mapping[str, Any], invite_event_id: str, invitee_node_id: str,
                       inviter: str) -> bool:
    """`admission` was signed by `inviter` for this invite and invitee (shape checked)."""
    if admission.get("by") != inviter:
        return False
    return _admission_signed(invite_event_id, invitee_node_id, str(admission.get("at")),
                             str(admission.get("signature")), inviter)


@functools.lru_cache(maxsize=4096)
def _admission_signed(invite_event_id: str, invitee: str, at: str, signature: str, inviter: str) -> bool:
    # The view replays every join on each recompute: verify each admission once.
    key = _verify_key(inviter)
    return key is not None and verify_bytes(admission_payload(invite_event_id, invitee, at), signature, key)


# --------------------------------------------------------------------------- co-signatures


def co_signature_payload(community_id: str, event_type: str, data: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in data.items() if k != "co_signers"}
    return canonical_json({"community_id": community_id, "event_type": event_type, "data": body})


def co_sign(kp: KeyPair, community_id: str, event_type: str, data: Mapping[str, Any]) -> dict[str, str]:
    """One entry of `data.co_signers`."""
    return {"node_id": kp.node_id_full,
            "signature": kp.sign_bytes(co_signature_payload(community_id, event_type, data))}


def named_co_signers(ev: Mapping[str, Any]) -> set[str]:
    """The node ids an event's `co_signers` names, verified or not (what a frontier lists
    an event for: a bad signature counts for nothing anyway)."""
    if ev.get("event_type") not in CO_SIGNED_TYPES:
        return set()
    entries = (ev.get("data") or {}).get("co_signers") or []
    return {e["node_id"] for e in entries if isinstance(e, dict) and isinstance(e.get("node_id"), str)}


def valid_co_signers(ev: Mapping[str, Any]) -> set[str]:
    """Node ids whose co-signature on `ev` verifies (malformed entries are ignored)."""
    data = ev["data"]
    entries: Iterable[Any] = data.get("co_signers") or []
    payload = co_signature_payload(ev["community_id"], ev["event_type"], data)
    good = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        node_id, sig = entry.get("node_id"), entry.get("signature")
        key = _verify_key(node_id) if isinstance(node_id, str) else None
        if key is not None and verify_bytes(payload, sig, key):
            good.add(node_id)
    return good
