"""CommunityView: membership, invites and policy materialised from the event log
(spec core-events-discovery §5; core-identity-config §8).

Order independence: the view keeps every governance event it has seen in replay order
(lamport, event_id). An event that sorts after all others is applied in place; one that
arrives late (gossip delivers concurrent events in any order) is inserted and the state is
recomputed from that list. Governance events are few (joins, invites, revocations), so the
recompute is cheap, and the result depends only on the set of events, never on arrival.

Authority: the same rules decide whether a received event is accepted (`author_problem`,
against the current state) and whether a stored event takes effect when replayed (against
the state at its place in the order). An event that was valid when it arrived but lost its
authority in the final order (say, a promotion signed by someone revoked just before it)
stays in the log and simply has no effect.

Rules (who may author what):
- community.created: the root key (= community id), exactly once; founder becomes anchor.
- community.member.invited: trusted/anchor, or a member when policy.default_member_can_invite;
  never above the inviter's own level; never a revoked node.
- community.member.joined: the invitee of an unused invite whose `expires_at` is not before
  the joined event's own wall_clock. Judged on the event's clock, not on "now", so a node
  that syncs days later reaches the same verdict as one that saw it live (the joiner's own
  node appends with wall_clock = now, so it cannot join late locally).
- community.member.revoked / promoted / demoted: a trusted or anchor author plus
  co-signatures; the author's envelope signature counts as one. Needed: revoke
  policy.min_signatures_to_revoke, demote policy.min_signatures_to_demote, promote 1
  (CONTRACT §7.2). Only trusted/anchor signers count; nobody promotes above their own level.
- community.policy.updated: the root key only.
- node.manifest.updated: the node the manifest describes.
- every other type: any current member (domain rules such as "only the post's author may
  update it" belong to the domain views).
- an author revoked at lamport L may not author events with lamport >= L.
"""
from __future__ import annotations

import bisect
import copy
from typing import Any, Callable, Mapping

from hearthnet.errors import IdentityError
from hearthnet.identity.keys import KeyPair, verify_payload_with_node_id
from hearthnet.identity.manifest import (
    DEFAULT_POLICY,
    MANIFEST_VERSION,
    parse_rfc3339,
    utcnow,
    verify_community_manifest,
)
from hearthnet.ledger.events import (
    GOVERNANCE_TYPES,
    LEVEL_RANK,
    MANIFEST_TYPES,
    REVOKED_AUTHOR,
    UNAUTHORIZED,
    UNKNOWN_AUTHOR,
    sort_key,
    valid_co_signers,
    wall_time,
)

PROMOTE_SIGNATURES = 1  # CONTRACT §7.2; the policy has no field for it
SIGNING_LEVELS = ("trusted", "anchor")


class CommunityView:
    """Members, revoked nodes, pending invites, policy and name of one community."""

    EVENT_TYPES = GOVERNANCE_TYPES

    def __init__(self, community_id: str) -> None:
        self.community_id = community_id
        self._verified_manifest: dict[str, Any] | None = None
        self.reset()

    def reset(self) -> None:
        self.head_lamport = 0
        self._log: list[dict[str, Any]] = []  # governance events in replay order
        self._ids: set[str] = set()
        self._reset_state()

    def _reset_state(self) -> None:
        self.name = ""
        self.created_at: str | None = None
        self.policy: dict[str, Any] = dict(DEFAULT_POLICY)
        self.members: dict[str, dict[str, Any]] = {}  # node_id -> level, added_at, added_by
        self.revoked: dict[str, dict[str, Any]] = {}  # node_id -> revoked_at, lamport, level, revoked_by
        self.invites: dict[str, dict[str, Any]] = {}  # invite event_id -> unused invite

    # ------------------------------------------------------------------ queries

    def level_of(self, node_id: str) -> str | None:
        """anchor | trusted | member for a current member, else None."""
        rec = self.members.get(node_id)
        return rec["level"] if rec else None

    def is_member(self, node_id: str) -> bool:
        return node_id in self.members

    def anchors(self) -> list[str]:
        return sorted(n for n, rec in self.members.items() if rec["level"] == "anchor")

    def pending_invites(self, now: str | None = None) -> list[dict[str, Any]]:
        """Unused invites not expired at `now` (RFC 3339; default: the current time)."""
        at = parse_rfc3339(now) if now else utcnow()
        return [{"event_id": k, **v} for k, v in sorted(self.invites.items())
                if parse_rfc3339(v["expires_at"]) >= at]

    def _level_at(self, node_id: str, lamport: int) -> str | None:
        # A revoked node keeps the level it had for events before its revocation.
        level = self.level_of(node_id)
        if level is not None:
            return level
        rev = self.revoked.get(node_id)
        return rev["level"] if rev is not None and lamport < rev["lamport"] else None

    # ------------------------------------------------------------------ authority

    def author_problem(self, ev: Mapping[str, Any]) -> str | None:
        """Why `ev`'s author may not author it in the current state (a rejection reason:
        unknown_author, revoked_author, unauthorized), or None. Shape and signature are
        checked elsewhere."""
        author, lamport, kind = ev["author"], ev["lamport"], ev["event_type"]
        rev = self.revoked.get(author)
        if rev is not None and rev["lamport"] <= lamport:
            return REVOKED_AUTHOR
        if kind == "community.created":
            return self._created_problem(ev)
        if kind == "community.member.joined":
            return self._joined_problem(ev)
        level = self._level_at(author, lamport)
        if level is None:
            return UNKNOWN_AUTHOR
        rule = _RIGHTS.get(kind)
        return None if rule is None else rule(self, ev, level)

    def _created_problem(self, ev: Mapping[str, Any]) -> str | None:
        founder = ev["data"]["founder_node_id"]
        if ev["author"] != self.community_id or founder != self.community_id:
            return UNKNOWN_AUTHOR if ev["author"] not in self.members else UNAUTHORIZED
        return UNAUTHORIZED if self.created_at is not None else None

    def _joined_problem(self, ev: Mapping[str, Any]) -> str | None:
        data, author = ev["data"], ev["author"]
        invite = self.invites.get(data["invite_event_id"])
        described = data["node_manifest"].get("node_id", author)
        valid = (invite is not None and invite["invitee_node_id"] == author and described == author
                 and wall_time(ev) <= parse_rfc3339(invite["expires_at"]))
        if valid:
            return None
        return UNAUTHORIZED if author in self.members else UNKNOWN_AUTHOR

    def _invite_problem(self, ev: Mapping[str, Any], level: str) -> str | None:
        data = ev["data"]
        may_invite = level in SIGNING_LEVELS or bool(self.policy["default_member_can_invite"])
        too_high = LEVEL_RANK[data["initial_level"]] > LEVEL_RANK[level]
        if not may_invite or too_high or data["invitee_node_id"] in self.revoked:
            return UNAUTHORIZED
        return None

    def _revoke_problem(self, ev: Mapping[str, Any], level: str) -> str | None:
        target = ev["data"]["target_node_id"]
        needed = self.policy["min_signatures_to_revoke"]
        if target not in self.members or not self._enough_signers(ev, level, needed):
            return UNAUTHORIZED
        return None

    def _level_change_problem(self, ev: Mapping[str, Any], level: str) -> str | None:
        data = ev["data"]
        current = self.level_of(data["target_node_id"])
        if current is None:
            return UNAUTHORIZED
        new, cur, mine = LEVEL_RANK[data["new_level"]], LEVEL_RANK[current], LEVEL_RANK[level]
        if ev["event_type"] == "community.member.promoted":
            ok = cur < new <= mine and self._enough_signers(ev, level, PROMOTE_SIGNATURES)
        else:
            needed = self.policy["min_signatures_to_demote"]
            ok = new < cur <= mine and self._enough_signers(ev, level, needed)
        return None if ok else UNAUTHORIZED

    def _enough_signers(self, ev: Mapping[str, Any], level: str, needed: int) -> bool:
        if level not in SIGNING_LEVELS:
            return False
        signers = valid_co_signers(ev) | {ev["author"]}
        return sum(1 for s in signers if self.level_of(s) in SIGNING_LEVELS) >= needed

    def _root_only(self, ev: Mapping[str, Any], level: str) -> str | None:
        return None if ev["author"] == self.community_id else UNAUTHORIZED

    def _own_manifest(self, ev: Mapping[str, Any], level: str) -> str | None:
        return None if ev["data"]["manifest"].get("node_id") == ev["author"] else UNAUTHORIZED

    # ------------------------------------------------------------------ materialising

    def apply(self, ev: Mapping[str, Any]) -> bool:
        """Fold one stored event into the view; True when the community manifest may have
        changed. Events of other types only move head_lamport."""
        self.head_lamport = max(self.head_lamport, ev["lamport"])
        if ev["event_type"] not in GOVERNANCE_TYPES or ev["event_id"] in self._ids:
            return False
        self._ids.add(ev["event_id"])
        if not self._log or sort_key(ev) > sort_key(self._log[-1]):
            self._log.append(dict(ev))
            self._step(ev)
        else:  # arrived out of order: recompute so the result does not depend on arrival
            bisect.insort(self._log, dict(ev), key=sort_key)
            self._recompute()
        return ev["event_type"] in MANIFEST_TYPES

    def _recompute(self) -> None:
        self._reset_state()
        for ev in self._log:
            self._step(ev)

    def _step(self, ev: Mapping[str, Any]) -> None:
        if self.author_problem(ev) is None:  # no authority here: stored, but no effect
            _EFFECTS[ev["event_type"]](self, ev)

    def _on_created(self, ev: Mapping[str, Any]) -> None:
        data = ev["data"]
        self.name, self.created_at, self.policy = data["name"], ev["wall_clock"], dict(data["policy"])
        self.members[ev["author"]] = {"level": "anchor", "added_at": ev["wall_clock"], "added_by": ev["author"]}

    def _on_invited(self, ev: Mapping[str, Any]) -> None:
        data = ev["data"]
        self.invites[ev["event_id"]] = {
            "invitee_node_id": data["invitee_node_id"], "display_name": data["display_name"],
            "initial_level": data["initial_level"], "expires_at": data["expires_at"],
            "invited_by": ev["author"], "lamport": ev["lamport"]}

    def _on_joined(self, ev: Mapping[str, Any]) -> None:
        invite = self.invites.pop(ev["data"]["invite_event_id"])
        if ev["author"] not in self.members:  # the founder's own genesis join changes nothing
            self.members[ev["author"]] = {"level": invite["initial_level"], "added_at": ev["wall_clock"],
                                          "added_by": invite["invited_by"]}

    def _on_revoked(self, ev: Mapping[str, Any]) -> None:
        target = ev["data"]["target_node_id"]
        rec = self.members.pop(target)
        self.revoked[target] = {"revoked_at": ev["wall_clock"], "lamport": ev["lamport"],
                                "level": rec["level"], "revoked_by": ev["author"]}

    def _on_level(self, ev: Mapping[str, Any]) -> None:
        self.members[ev["data"]["target_node_id"]]["level"] = ev["data"]["new_level"]

    def _on_policy(self, ev: Mapping[str, Any]) -> None:
        self.policy = dict(ev["data"]["policy"])

    # ------------------------------------------------------------------ snapshots

    def snapshot_state(self) -> dict[str, Any]:
        """JSON-able and canonical (sorted lists), so equal views give equal bytes."""
        return {
            "community_id": self.community_id, "name": self.name, "created_at": self.created_at,
            "policy": dict(self.policy), "head_lamport": self.head_lamport,
            "members": [{"node_id": n, **r} for n, r in sorted(self.members.items())],
            "revoked": [{"node_id": n, **r} for n, r in sorted(self.revoked.items())],
            "invites": [{"event_id": k, **v} for k, v in sorted(self.invites.items())],
            "events": copy.deepcopy(self._log),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        self.reset()
        self.name, self.created_at = state["name"], state["created_at"]
        self.policy, self.head_lamport = dict(state["policy"]), int(state["head_lamport"])
        self.members = {e["node_id"]: _without(e, "node_id") for e in state["members"]}
        self.revoked = {e["node_id"]: _without(e, "node_id") for e in state["revoked"]}
        self.invites = {e["event_id"]: _without(e, "event_id") for e in state["invites"]}
        self._log = copy.deepcopy(list(state["events"]))
        self._ids = {ev["event_id"] for ev in self._log}

    # ------------------------------------------------------------------ manifest

    def manifest_body(self) -> dict[str, Any]:
        """The community manifest (CONTRACT §6.2) at head_lamport, unsigned."""
        return {
            "version": MANIFEST_VERSION, "community_id": self.community_id, "name": self.name,
            "root_key": self.community_id, "created_at": self.created_at, "lamport_at_creation": 0,
            "policy": dict(self.policy),
            "members": [{"node_id": n, "level": r["level"], "added_at": r["added_at"],
                         "added_by": r["added_by"]} for n, r in sorted(self.members.items())],
            "revoked": [{"node_id": n, "revoked_at": r["revoked_at"]} for n, r in sorted(self.revoked.items())],
            "head_lamport": self.head_lamport,
        }

    def manifest(self, signing_kp: KeyPair) -> dict[str, Any] | None:
        """Signed by `signing_kp` when that node is an anchor; otherwise the newest
        anchor-signed manifest this view verified (offer_manifest), or None."""
        if self.created_at is not None and self.level_of(signing_kp.node_id_full) == "anchor":
            return signing_kp.sign(self.manifest_body())
        return self._verified_manifest

    def offer_manifest(self, m: dict[str, Any]) -> bool:
        """Keep `m` as the last verified manifest when it is valid, ours, signed by the
        root or an anchor this view knows, and not older than the one we hold."""
        try:
            verify_community_manifest(m)
        except IdentityError:
            return False
        signers = self.anchors() + ([self.community_id] if self.community_id not in self.revoked else [])
        if m["community_id"] != self.community_id or not any(verify_payload_with_node_id(m, s) for s in signers):
            return False
        held = self._verified_manifest
        if held is not None and m["head_lamport"] < held["head_lamport"]:
            return False
        self._verified_manifest = m
        return True


def _without(entry: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != key}


Rule = Callable[[CommunityView, Mapping[str, Any], str], "str | None"]
_RIGHTS: dict[str, Rule] = {
    "community.member.invited": CommunityView._invite_problem,
    "community.member.revoked": CommunityView._revoke_problem,
    "community.member.promoted": CommunityView._level_change_problem,
    "community.member.demoted": CommunityView._level_change_problem,
    "community.policy.updated": CommunityView._root_only,
    "node.manifest.updated": CommunityView._own_manifest,
}
_EFFECTS: dict[str, Callable[[CommunityView, Mapping[str, Any]], None]] = {
    "community.created": CommunityView._on_created,
    "community.member.invited": CommunityView._on_invited,
    "community.member.joined": CommunityView._on_joined,
    "community.member.revoked": CommunityView._on_revoked,
    "community.member.promoted": CommunityView._on_level,
    "community.member.demoted": CommunityView._on_level,
    "community.policy.updated": CommunityView._on_policy,
}
