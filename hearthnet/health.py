"""A node's signed health summary (`node.health@1.0`, README "Mesh doctor").

The summary is a plain JSON object signed like the node manifest: `signature` is the
node's device key (Ed25519) over the canonical JSON of every other field
(`identity.keys.sign_payload` / `verify_payload_with_node_id`), so it proves itself
end to end, whichever hops carried it. `type` keeps it from being mistaken for any
other document the same key signs (a manifest, a request envelope).

A reader trusts a summary only when all of these hold (`verify_summary`):
the signature checks out for the member it asked (the node id *is* the public key, and
the member comes from this node's own community log), `node_id` is that member,
`community_id` is ours, `issued_at` is within SUMMARY_MAX_AGE_SECONDS of now (either
way), and the `nonce` it sent comes back. Anything else is "unverified": its contents
are never shown as facts.

    build_summary(kp, facts, nonce=..., now=...) -> signed dict
    verify_summary(doc, node_id=..., community_id=..., nonce=..., now=...) -> Verdict
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from hearthnet.identity.keys import KeyPair, verify_payload_with_node_id
from hearthnet.identity.manifest import parse_rfc3339, rfc3339, utcnow

CAPABILITY = "node.health"
SUMMARY_TYPE = "hearthnet.node.health"
SUMMARY_FORMAT = 1
# Same window as a signed request's clock skew (transport/signing.py): an older summary
# may be a replay, a newer one comes from a clock we cannot compare with.
SUMMARY_MAX_AGE_SECONDS = 120
NONCE_MAX_CHARS = 128
MAX_SUMMARY_DEPTH = 8
MAX_SUMMARY_VALUES = 4_096
# What a summary must hold; the facts' own fields are checked by shape, loosely.
SUMMARY_FIELDS = ("type", "format", "node_id", "display_name", "community_id", "version", "profile",
                  "uptime_seconds", "online_state", "sync", "event_log", "checks_run",
                  "failing_checks", "healthy", "issued_at", "nonce", "signature")
FACT_FIELDS = ("display_name", "community_id", "version", "profile", "uptime_seconds", "online_state",
               "sync", "event_log", "checks_run", "failing_checks")


def build_summary(kp: KeyPair, facts: Mapping[str, Any], *, nonce: str | None = None,
                  now: datetime | None = None) -> dict[str, Any]:
    """The summary of `facts` (FACT_FIELDS), issued now and signed by `kp`. `healthy` is
    derived here: no failing check that is a failure (warnings do not count)."""
    failing = [dict(c) for c in facts.get("failing_checks") or []]
    doc = {k: facts.get(k) for k in FACT_FIELDS}
    doc.update({
        "type": SUMMARY_TYPE, "format": SUMMARY_FORMAT, "node_id": kp.node_id_full,
        "failing_checks": failing,
        "healthy": not any(c.get("status") in ("fail", "crashed") for c in failing),
        "issued_at": rfc3339(_now(now)), "nonce": nonce,
    })
    return kp.sign(doc)


@dataclass(frozen=True)
class Verdict:
    verified: bool
    reason: str | None = None  # why not, in plain words

    @classmethod
    def bad(cls, reason: str) -> "Verdict":
        return cls(False, reason)


def verify_summary(doc: Any, *, node_id: str, community_id: str | None, nonce: str | None,
                   now: datetime | None = None) -> Verdict:
    """Whether `doc` is `node_id`'s own, fresh summary for our request. Never raises,
    whatever `doc` holds (it comes from a peer)."""
    shape = _shape_problem(doc)
    if shape is not None:
        return Verdict.bad(shape)
    if doc["node_id"] != node_id:
        return Verdict.bad(f"it names node {str(doc['node_id'])[:60]}, not the member asked")
    if not verify_payload_with_node_id(doc, node_id):
        return Verdict.bad("its signature does not verify with the member's key")
    if community_id is not None and doc["community_id"] != community_id:
        return Verdict.bad("it is for another community")
    try:
        issued = parse_rfc3339(doc["issued_at"])
    except (ValueError, OverflowError):
        return Verdict.bad("its issued_at is not a timestamp")
    skew = abs((_now(now) - issued).total_seconds())
    if skew > SUMMARY_MAX_AGE_SECONDS:
        return Verdict.bad(f"it is stale: issued {rfc3339(issued)}, {int(skew)} s from now "
                           f"(more than {SUMMARY_MAX_AGE_SECONDS} s)")
    if nonce is not None and doc["nonce"] != nonce:
        return Verdict.bad("it answers another request (nonce differs): a replay")
    return Verdict(True)


def _shape_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "the answer is not a health summary (not an object)"
    missing = [k for k in SUMMARY_FIELDS if k not in doc]
    if missing:
        return f"the answer is not a health summary (missing {', '.join(missing[:4])})"
    if doc["type"] != SUMMARY_TYPE or doc["format"] != SUMMARY_FORMAT:
        return "the answer is not a health summary of a format this node reads"
    if not isinstance(doc["node_id"], str) or not isinstance(doc["issued_at"], str):
        return "the answer's node_id or issued_at is not text"
    if not isinstance(doc["failing_checks"], list) or not isinstance(doc["healthy"], bool):
        return "the answer's failing_checks or healthy field has the wrong type"
    if _too_big(doc):
        return f"the answer is nested deeper than {MAX_SUMMARY_DEPTH} or holds over {MAX_SUMMARY_VALUES} values"
    return None


def _too_big(doc: Any) -> bool:
    """Depth/size bound before the summary is canonicalised or shown."""
    count, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_SUMMARY_DEPTH or count > MAX_SUMMARY_VALUES:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


def _now(now: datetime | None) -> datetime:
    return utcnow() if now is None else now.astimezone(timezone.utc).replace(microsecond=0)
