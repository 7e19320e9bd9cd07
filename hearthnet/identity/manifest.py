"""Signed manifests (spec core-identity-config §7, §8; CONTRACT §6).

Node manifest: who this node is, where to reach it and what it offers; signed by the
device key, valid for exactly MANIFEST_TTL_SECONDS and republished before it expires.

Community manifest: the membership view at `head_lamport`. The genesis version is built
here (founder = root key = community id, sole anchor); later versions are regenerated
from the event log by the ledger.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from hearthnet import validate
from hearthnet.constants import MANIFEST_TTL_SECONDS
from hearthnet.errors import HearthNetError, IdentityError
from hearthnet.fsutil import atomic_write
from hearthnet.identity.canonical import canonical_json
from hearthnet.identity.keys import (
    KeyPair,
    parse_node_id,
    verify_bytes,
    verify_key_from_full,
    verify_payload_with_node_id,
)
from hearthnet.version import CONTRACT_VERSION

MANIFEST_VERSION = 1
NODE_MANIFEST_FIELDS = (
    "version", "contract_version", "node_id", "display_name", "community_id", "profile",
    "endpoints", "hardware", "capabilities", "uptime_seconds", "load", "issued_at",
    "expires_at", "signature",
)
COMMUNITY_MANIFEST_FIELDS = (
    "version", "community_id", "name", "root_key", "created_at", "lamport_at_creation",
    "policy", "members", "revoked", "head_lamport", "signature",
)
HARDWARE_FIELDS = ("gpu", "vram_gb", "ram_gb", "cpu_cores", "disk_free_gb")
LOAD_FIELDS = ("cpu", "vram_used_gb", "in_flight_total")
DEFAULT_POLICY: dict[str, Any] = {
    "min_signatures_to_invite": 1,
    "min_signatures_to_demote": 3,
    "min_signatures_to_revoke": 3,
    "capability_token_ttl_seconds": 86400,
    "federation_enabled": True,
    "default_member_can_invite": True,
}
COMMUNITY_NAME_MAX = 64
MAX_MANIFEST_DEPTH = 16  # capability params nest at most 8 (hearthnet.validate)
MAX_MANIFEST_VALUES = 65_536  # node manifests; a community manifest grows with its members
MAX_COMMUNITY_MANIFEST_VALUES = 2_000_000


# --------------------------------------------------------------------------- time


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def rfc3339(dt: datetime) -> str:
    """UTC, second precision, `Z` suffix: 2026-05-26T08:14:22Z. Naive = UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """A timezone-aware timestamp in UTC; ValueError for anything else, including times
    that exist only in another zone (0001-01-01T00:00:00+01:00 is before year 1 in UTC)."""
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError(f"{text!r:.80} is not a timestamp")
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone")
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1-9999 in UTC") from None


def _now(now: datetime | None) -> datetime:
    dt = utcnow() if now is None else now
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Truncate first so expires_at - issued_at is exactly the TTL on the wire too.
    return dt.astimezone(timezone.utc).replace(microsecond=0)


# --------------------------------------------------------------------------- node manifest


def build_node_manifest(
    kp: KeyPair,
    *,
    display_name: str,
    community_id: str,
    profile: str,
    endpoints: Iterable[Mapping[str, Any]],
    hardware: Mapping[str, Any],
    capabilities: Iterable[Mapping[str, Any]],
    uptime_seconds: int,
    load: Mapping[str, Any],
    now: datetime | None = None,
    extra_fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`extra_fields` (e.g. `tls_fingerprint`) are signed with the rest; they may not
    replace a standard field."""
    issued = _now(now)
    missing = [k for k in HARDWARE_FIELDS if k not in hardware] + [k for k in LOAD_FIELDS if k not in load]
    if missing:
        raise IdentityError("bad_manifest", f"node manifest is missing {', '.join(missing)}")
    manifest = {
        "version": MANIFEST_VERSION,
        "contract_version": CONTRACT_VERSION,
        "node_id": kp.node_id_full,
        "display_name": display_name,
        "community_id": community_id,
        "profile": profile,
        "endpoints": [dict(e) for e in endpoints],
        "hardware": {k: hardware[k] for k in HARDWARE_FIELDS},
        "capabilities": [dict(c) for c in capabilities],
        "uptime_seconds": int(uptime_seconds),
        "load": {k: load[k] for k in LOAD_FIELDS},
        "issued_at": rfc3339(issued),
        "expires_at": rfc3339(issued + timedelta(seconds=MANIFEST_TTL_SECONDS)),
    }
    clash = sorted(set(extra_fields or {}) & (set(manifest) | {"signature"}))
    if clash:
        raise IdentityError("bad_manifest", f"extra manifest fields clash with {', '.join(clash)}")
    manifest.update(extra_fields or {})
    return kp.sign(manifest)


def _require(m: Any, fields: Iterable[str], what: str) -> None:
    if not isinstance(m, dict):
        raise IdentityError("bad_manifest", f"{what} is not a JSON object")
    missing = [f for f in fields if f not in m]
    if missing:
        raise IdentityError("bad_manifest", f"{what} is missing {', '.join(missing)}")


def _times(m: Mapping[str, Any], *keys: str) -> list[datetime]:
    try:
        return [parse_rfc3339(m[k]) for k in keys]
    except (ValueError, TypeError) as exc:
        raise IdentityError("bad_manifest", f"bad timestamp: {exc}") from None


def _bounded(m: dict[str, Any], what: str) -> None:
    """Plain JSON of a sane size before anything walks it recursively (the signature
    check serialises it): a hostile manifest costs at most its own size to refuse."""
    try:
        validate.plain_json(m, what, max_depth=MAX_MANIFEST_DEPTH, max_nodes=MAX_MANIFEST_VALUES)
    except validate.PeerDataError as exc:
        raise IdentityError("bad_manifest", exc.message) from None


def _check_node_id(value: Any, what: str) -> None:
    try:
        parse_node_id(value)
    except IdentityError as exc:
        raise IdentityError("bad_manifest", f"{what}: {exc.message}") from None


def verify_node_manifest(m: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Check shape (every field's type and bounds, hearthnet.validate), signature and
    expiry; returns `m`. Raises IdentityError with bad_manifest, invalid_signature or
    expired, and nothing else whatever `m` holds."""
    _require(m, NODE_MANIFEST_FIELDS, "node manifest")
    _bounded(m, "node manifest")
    if m["version"] != MANIFEST_VERSION:
        raise IdentityError("bad_manifest", f"node manifest version {m['version']!r:.40} is not {MANIFEST_VERSION}")
    _check_node_id(m["node_id"], "node_id")
    _require(m["hardware"], HARDWARE_FIELDS, "node manifest hardware")
    _require(m["load"], LOAD_FIELDS, "node manifest load")
    try:
        validate.node_manifest_fields(m)
    except validate.PeerDataError as exc:
        raise IdentityError("bad_manifest", f"node manifest of {m['node_id']}: {exc.message}") from None
    issued, expires = _times(m, "issued_at", "expires_at")
    # A manifest that claims a longer life than the TTL would outlive a revocation.
    if not timedelta(0) < expires - issued <= timedelta(seconds=MANIFEST_TTL_SECONDS):
        raise IdentityError("bad_manifest", f"manifest lifetime must be {MANIFEST_TTL_SECONDS} s")
    if not verify_payload_with_node_id(m, m["node_id"]):
        raise IdentityError("invalid_signature", f"node manifest of {m['node_id']} has a bad signature")
    if _now(now) > expires:
        raise IdentityError("expired", f"node manifest of {m['node_id']} expired at {m['expires_at']}")
    return m


# --------------------------------------------------------------------------- community manifest


def _check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(name) <= COMMUNITY_NAME_MAX:
        raise HearthNetError("bad_request", f"community name must be 1-{COMMUNITY_NAME_MAX} characters")
    return name


def community_policy(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_POLICY with `overrides` applied; unknown keys and wrong types are refused
    (shared by the genesis manifest and the ledger's genesis events)."""
    policy = dict(DEFAULT_POLICY)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_POLICY:
            raise HearthNetError("bad_request", f"policy.{key} is not a community policy field")
        if type(value) is not type(DEFAULT_POLICY[key]):
            raise HearthNetError("bad_request", f"policy.{key}: {value!r} has the wrong type")
        policy[key] = value
    return policy


def build_genesis_community_manifest(
    root_kp: KeyPair,
    name: str,
    policy: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The founder's key becomes the community id and root key; the founder is the
    sole anchor."""
    created = rfc3339(_now(now))
    founder = root_kp.node_id_full
    manifest = {
        "version": MANIFEST_VERSION,
        "community_id": founder,
        "name": _check_name(name),
        "root_key": founder,
        "created_at": created,
        "lamport_at_creation": 0,
        "policy": community_policy(policy),
        "members": [{"node_id": founder, "level": "anchor", "added_at": created, "added_by": founder}],
        "revoked": [],
        "head_lamport": 0,
    }
    return root_kp.sign(manifest)


def verify_community_manifest(m: dict[str, Any]) -> dict[str, Any]:
    """Check shape and signature; returns `m`.

    Genesis (head_lamport 0) must be signed by the root key. A later version may be
    signed by the root or any unrevoked anchor it lists; that only proves an anchor
    published it; the ledger establishes the content by replaying events."""
    _require(m, COMMUNITY_MANIFEST_FIELDS, "community manifest")
    try:
        validate.plain_json(m, "community manifest", max_depth=MAX_MANIFEST_DEPTH,
                            max_nodes=MAX_COMMUNITY_MANIFEST_VALUES)
    except validate.PeerDataError as exc:
        raise IdentityError("bad_manifest", exc.message) from None
    if m["version"] != MANIFEST_VERSION:
        raise IdentityError("bad_manifest", f"community manifest version {m['version']!r:.40} is not {MANIFEST_VERSION}")
    _check_node_id(m["root_key"], "root_key")
    if m["community_id"] != m["root_key"]:
        raise IdentityError("bad_manifest", "community_id must equal root_key")
    if not isinstance(m["members"], list) or not isinstance(m["revoked"], list):
        raise IdentityError("bad_manifest", "members and revoked must be lists")
    _times(m, "created_at")
    signers = [m["root_key"]]
    if m["head_lamport"] != 0:
        revoked = {e.get("node_id") for e in m["revoked"] if isinstance(e, dict) and isinstance(e.get("node_id"), str)}
        signers += dict.fromkeys(n for n in _member_ids(m, level="anchor")
                                 if isinstance(n, str) and n not in revoked)
    if not _signed_by_one_of(m, signers):
        raise IdentityError("invalid_signature", f"community manifest of {m['community_id']} has a bad signature")
    return m


def _signed_by_one_of(m: dict[str, Any], node_ids: Iterable[str]) -> bool:
    """Serialised once, however many anchors may have signed it."""
    try:
        data = canonical_json({k: v for k, v in m.items() if k != "signature"})
    except (TypeError, ValueError):
        return False
    for node_id in node_ids:
        try:
            key = verify_key_from_full(node_id)
        except IdentityError:
            continue
        if verify_bytes(data, m.get("signature", ""), key):
            return True
    return False


def _member_ids(m: Mapping[str, Any], level: str | None = None) -> list[str]:
    return [
        e["node_id"]
        for e in m.get("members", [])
        if isinstance(e, dict) and "node_id" in e and (level is None or e.get("level") == level)
    ]


def is_revoked(m: Mapping[str, Any], node_id: str) -> bool:
    return any(isinstance(e, dict) and e.get("node_id") == node_id for e in m.get("revoked", []))


def is_member(m: Mapping[str, Any], node_id: str) -> bool:
    return node_id in _member_ids(m) and not is_revoked(m, node_id)


def level_of(m: Mapping[str, Any], node_id: str) -> str:
    """anchor | trusted | member, or "unknown" for non-members and revoked nodes."""
    if is_revoked(m, node_id):
        return "unknown"
    for entry in m.get("members", []):
        if isinstance(entry, dict) and entry.get("node_id") == node_id:
            return str(entry.get("level", "unknown"))
    return "unknown"


def write_community_manifest(m: Mapping[str, Any], path: Path) -> None:
    """Atomic; pretty JSON for humans (signatures are over canonical JSON anyway)."""
    text = json.dumps(m, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, text.encode("utf-8"), 0o644)


def read_community_manifest(path: Path, *, verify: bool = True) -> dict[str, Any]:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HearthNetError("not_found", f"no community manifest at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IdentityError("bad_manifest", f"cannot read {path}: {exc}") from exc
    return verify_community_manifest(m) if verify else m
