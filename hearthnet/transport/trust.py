"""Caller trust levels (spec core-identity-config §6; core-bus-transport §6c).

Levels, lowest to highest: member < trusted < anchor < self. `self` is only ever our own
node id (or an owner-authenticated local client, decided by the gateway); `unknown`
(not a member) and `revoked` permit nothing. A member record with a level this code does
not know counts as `unknown`: an unknown word must not grant access.

The community manifest passed in must already be verified (the gateway reads it with
`identity.manifest.read_community_manifest`, which does).
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from hearthnet.errors import HearthNetError
from hearthnet.identity.manifest import is_revoked

Level = Literal["self", "anchor", "trusted", "member", "unknown", "revoked"]
RANK: dict[str, int] = {"member": 1, "trusted": 2, "anchor": 3, "self": 4}
MEMBER_LEVELS = ("anchor", "trusted", "member")


def level_of(node_id: str, community_manifest: Mapping[str, Any], *,
             self_node_id: str | None = None) -> Level:
    """Revocation wins over everything, including our own id: a revoked device must not
    keep acting on the community's behalf."""
    if is_revoked(community_manifest, node_id):
        return "revoked"
    if self_node_id is not None and node_id == self_node_id:
        return "self"
    for entry in community_manifest.get("members", []):
        if isinstance(entry, dict) and entry.get("node_id") == node_id:
            level = entry.get("level")
            return level if level in MEMBER_LEVELS else "unknown"  # type: ignore[return-value]
    return "unknown"


def permits(level: str, trust_required: str) -> bool:
    """True if `level` is at least `trust_required`; an unknown requirement permits
    nothing (fail closed)."""
    have, need = RANK.get(level), RANK.get(trust_required)
    return have is not None and need is not None and have >= need


def check_caller(node_id: str, community_manifest: Mapping[str, Any], trust_required: str, *,
                 self_node_id: str | None = None) -> Level:
    """The caller's level, or HearthNetError `revoked` (403) / `unauthorized` (401)."""
    level = level_of(node_id, community_manifest, self_node_id=self_node_id)
    if level == "revoked":
        raise HearthNetError("revoked", f"{node_id} has been revoked from this community")
    if level == "unknown":
        raise HearthNetError("unauthorized", f"{node_id} is not a member of this community")
    if not permits(level, trust_required):
        raise HearthNetError("unauthorized", f"this needs trust level {trust_required}; {node_id} is {level}")
    return level
