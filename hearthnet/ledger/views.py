"""CommunityView: membership, invites and policy materialised from the event log
(spec core-events-discovery §5; core-identity-config §8).

The view is a function of the SET of governance events it holds, never of their arrival
order and never of a clock an author chose; every node applies the same rules, so nodes
holding the same events agree on membership and on which events are valid.

Replay: the governance events in (lamport, event_id) order; each takes effect when its
author has the authority below at that point of the order (`author_problem`). Then the
revocation rules reach back: every event authored by a revoked node whose id is not in
its revocation's `frontier`, and every join through a revoked node's invite not in that
frontier, is invalid wherever it sorts (its lamport is the author's choice). Invalid
events are excluded and the replay runs again, until nothing new is excluded (exclusions
only grow, so this ends, and the result depends only on the set). `invalid` then maps
every held event without effect to its reason; the EventLog deletes those from
events.sqlite (they never had authority), so nodes also agree on the stored event set.

Rules (who may author what):
- community.created: the root key (= community id), exactly once; founder becomes anchor.
- community.member.invited: trusted/anchor, or a member when policy.default_member_can_invite;
  never above the inviter's own level; never for a revoked node.
- community.member.joined: the invitee of an unused invite, with an `admission` signed by
  the invite's author (its node signs {invite_event_id, invitee_node_id, at} only while
  its own clock is before `expires_at`) and `admission.at <= expires_at`. The joiner's
  `wall_clock` plays no part, so a back-dated clock cannot use an expired invite.
- community.member.revoked / promoted / demoted: a trusted or anchor author plus
  co-signatures; the author's envelope signature counts as one. Needed: revoke
  policy.min_signatures_to_revoke, demote policy.min_signatures_to_demote, promote 1
  (CONTRACT §7.2). Only trusted/anchor signers count; nobody promotes above their own level.
- community.policy.updated: the root key only.
- node.manifest.updated: the node the manifest describes.
- every other type: any current member (domain rules such as "only the post's author may
  update it" belong to the domain views).
- R1 frontier: `community.member.revoked` lists in `frontier` every event authored by the
  target that the revoker's node held, plus every join that used the target's invites,
  plus every governance event the target co-signed. Once a node is revoked, an event
  authored by it is valid only if its id is in that frontier, whatever its lamport; it
  governs nothing placed after its revocation, and its co-signature counts on an event
  placed before the revocation only if that event is in the frontier.
- R2 void invites: an invite by a revoked node that is not in the frontier has no effect;
  its unused invites die with the revocation; a join through a revoked node's invite is
  valid only if the join's id is in the frontier. Whoever joined that way is no member,
  so its own events are invalid too (unknown_author).
- R4 demotion frontier: `community.member.demoted` lists in `frontier` every governance
  event the target authored or co-signed that the demoter's node held. A governance event
  the target authored or co-signed that is placed before the demotion and is not in its
  frontier is judged with the target at the demoted level (the lowest such), so a demoted
  member cannot use its old rights by back-dating, neither as author nor as co-signer.
  Events placed after the demotion are judged at the level the replay has there anyway.

R1's co-signer part and R4 are "caps": (event id, node) -> the most that node's signature
or authorship is worth on that event (a level, or nothing). A revocation or demotion puts
its caps in force when it is valid with them applied (in replay order, one at a time, a
replay after each), so the events it caps can never be what makes it invalid: a
co-signer of the revocation revoked by a back-dated event the revoked node co-signed
cannot undo it. Caps, like exclusions, only ever grow, and the replay runs until neither
changes, so the result still depends only on the set of events.
"""
from __future__ import annotations

import bisect
import copy
from datetime import datetime
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
    CO_SIGNED_TYPES,
    GOVERNANCE_TYPES,
    LEVEL_RANK,
    MANIFEST_TYPES,
    REVOKED_AUTHOR,
    UNAUTHORIZED,
    UNKNOWN_AUTHOR,
    admission_verifies,
    sort_key,
    valid_co_signers,
)

PROMOTE_SIGNATURES = 1  # CONTRACT §7.2; the policy has no field for it
SIGNING_LEVELS = ("trusted", "anchor")
JOINED = "community.member.joined"
INVITED = "community.member.invited"
REVOKED = "community.member.revoked"
DEMOTED = "community.member.demoted"
REACHES_BACK = (REVOKED, DEMOTED)  # events that change how earlier-placed events are judged
NOTHING = ""  # a cap: the signature counts for nothing
Caps = dict[str, dict[str, str]]  # event id -> node id -> the most that node counts for there


class CommunityView:
    """Members, revoked nodes, pending invites, policy and name of one community."""

    EVENT_TYPES = GOVERNANCE_TYPES

    def __init__(self, community_id: str) -> None:
        self.community_id = community_id
        self._verified_manifest: dict[str, Any] | None = None
        self.reset()

    def reset(self) -> None:
        self.head_lamport = 0
        self._log: list[dict[str, Any]] = []  # governance events held, in replay order
        self._ids: set[str] = set()
        self.invalid: dict[str, str] = {}  # held event id -> why it has no effect
        self._co_signers: dict[str, frozenset[str]] = {}  # held event id -> verified co-signers
        self._caps: Caps = {}  # R1/R4, settled by the last full replay
        self._reset_state()

    def _reset_state(self) -> None:
        self.name = ""
        self.created_at: str | None = None
        self.policy: dict[str, Any] = dict(DEFAULT_POLICY)
        self.members: dict[str, dict[str, Any]] = {}  # node_id -> level, added_at, added_by
        # node_id -> revoked_at, lamport, level, revoked_by, event_id, frontier (a set)
        self.revoked: dict[str, dict[str, Any]] = {}
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
        """Unused invites not expired at `now` (RFC 3339; default: the current time), and
        not void (R2: by a node revoked since)."""
        at = parse_rfc3339(now) if now else utcnow()
        return [{"event_id": k, **v} for k, v in sorted(self.invites.items())
                if parse_rfc3339(v["expires_at"]) >= at and v["invited_by"] not in self.revoked]

    def author_status(self, node_id: str) -> str | None:
        """What decides whether `node_id`'s non-governance events are valid: "member", the
        event id of its revocation (valid: the frontier), or None (none are)."""
        if node_id in self.members:
            return "member"
        rev = self.revoked.get(node_id)
        return rev["event_id"] if rev is not None else None

    def authors(self) -> dict[str, str]:
        """author_status of every node that has one."""
        out = {n: rev["event_id"] for n, rev in self.revoked.items()}
        out.update((n, "member") for n in self.members)
        return out

    # ------------------------------------------------------------------ authority

    def author_problem(self, ev: Mapping[str, Any]) -> str | None:
        """Why `ev`'s author may not author it in the current state (a rejection reason:
        unknown_author, revoked_author, unauthorized), or None. Shape and signature are
        checked elsewhere. For a non-governance event the current state is the final one;
        during a replay it is the state at the event's place in the order."""
        author, kind = ev["author"], ev["event_type"]
        rev = self.revoked.get(author)
        if rev is not None and ev["event_id"] not in rev["frontier"]:
            return REVOKED_AUTHOR
        if kind == "community.created":
            return self._created_problem(ev)
        if kind == JOINED:
            return self._joined_problem(ev)
        level = self.level_of(author)
        if level is None:
            if rev is None:
                return UNKNOWN_AUTHOR
            if kind in GOVERNANCE_TYPES:  # a revoked node governs nothing after its revocation
                return REVOKED_AUTHOR
            level = rev["level"]  # in the frontier: written while it was a member
        rule = _RIGHTS.get(kind)
        if rule is None:
            return None
        level = self._capped(ev["event_id"], author, level)  # R1/R4 reaching back
        return REVOKED_AUTHOR if level is None else rule(self, ev, level)

    def _capped(self, event_id: str, node_id: str, level: str | None) -> str | None:
        """`level`, lowered to what R1/R4 leave `node_id` on that event."""
        cap = self._caps.get(event_id, {}).get(node_id)
        if cap is None or level is None:
            return level
        if cap == NOTHING:
            return None
        return cap if LEVEL_RANK[cap] < LEVEL_RANK[level] else level

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
                 and _admitted(data, author, invite))
        inviter = self.revoked.get(invite["invited_by"]) if valid else None
        if valid and (inviter is None or ev["event_id"] in inviter["frontier"]):  # R2
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
        eid = ev["event_id"]
        signers = self._signers(ev)
        return sum(1 for s in signers if self._capped(eid, s, self.level_of(s)) in SIGNING_LEVELS) >= needed

    def _signers(self, ev: Mapping[str, Any]) -> frozenset[str]:
        # Every replay judges each co-signed event again: verify its signatures once. Keyed
        # by event id, safe because the view holds one (verified) event per id.
        eid = ev["event_id"]
        cached = self._co_signers.get(eid)
        if cached is None:
            cached = frozenset(valid_co_signers(ev) | {ev["author"]})
            if eid in self._ids:
                self._co_signers[eid] = cached
        return cached

    def _root_only(self, ev: Mapping[str, Any], level: str) -> str | None:
        return None if ev["author"] == self.community_id else UNAUTHORIZED

    def _own_manifest(self, ev: Mapping[str, Any], level: str) -> str | None:
        return None if ev["data"]["manifest"].get("node_id") == ev["author"] else UNAUTHORIZED

    # ------------------------------------------------------------------ materialising

    def apply(self, ev: Mapping[str, Any]) -> bool:
        """Add one event to the view; True when the community manifest may have changed.
        Events of other types only move head_lamport."""
        self.head_lamport = max(self.head_lamport, ev["lamport"])
        return self.add([ev])

    def add(self, events: list[Mapping[str, Any]]) -> bool:
        """Add governance events (others are ignored) and settle the view; True when the
        community manifest may have changed. Afterwards `invalid` names every held event
        without effect, the new ones included."""
        new = [dict(ev) for ev in events if ev["event_type"] in GOVERNANCE_TYPES and ev["event_id"] not in self._ids]
        if not new:
            return False
        new.sort(key=sort_key)
        self._ids.update(ev["event_id"] for ev in new)
        if all(ev["event_type"] not in REACHES_BACK for ev in new) and (not self._log or sort_key(new[0]) > sort_key(self._log[-1])):
            # The usual case: newer than all we hold and no revocation, so nothing before
            # it changes; stepping it in place gives what a full replay would.
            self._log.extend(new)
            for ev in new:
                self._step(ev)
        else:
            for ev in new:
                bisect.insort(self._log, ev, key=sort_key)
            self._recompute()
        return any(ev["event_type"] in MANIFEST_TYPES for ev in new)

    def forget(self, event_ids: set[str] | list[str]) -> None:
        """Drop held events that have no effect (the log deleted them); the state stays
        as it is, since they never changed it."""
        doomed = set(event_ids) & self._ids
        if not doomed:
            return
        assert doomed <= set(self.invalid), "only events without effect may be forgotten"
        self._log = [ev for ev in self._log if ev["event_id"] not in doomed]
        self._ids -= doomed
        for eid in doomed:
            self.invalid.pop(eid, None)
            self._co_signers.pop(eid, None)

    def _recompute(self) -> None:
        excluded: dict[str, str] = {}
        self._caps, in_force = {}, set()
        while True:
            self._replay(excluded)
            more = self._reached_back(excluded)
            if more:
                excluded.update(more)
            elif not self._admit_reach_back(excluded, in_force):
                break
        self.invalid.update(excluded)

    def _replay(self, excluded: Mapping[str, str]) -> None:
        self._reset_state()
        self.invalid = {}
        for ev in self._log:
            if ev["event_id"] not in excluded:
                self._step(ev)

    def _admit_reach_back(self, excluded: Mapping[str, str], in_force: set[str]) -> bool:
        """Put the next revocation or demotion in force (in replay order): add its caps
        if it is valid with them applied, so an event it caps can never be what makes it
        invalid (a co-signer revoked by a back-dated event, say). True when one was added;
        then the caller replays. On False the state is the replay with the final caps."""
        tried = False
        for ev in self._log:
            eid = ev["event_id"]
            if ev["event_type"] not in REACHES_BACK or eid in in_force or eid in excluded:
                continue
            caps = self._caps_of(ev)
            if all(self._capped(e, n, "anchor") == self._capped_with(caps, e, n) for e, n in caps):
                in_force.add(eid)  # adds nothing: no replay needed
                continue
            saved = copy.deepcopy(self._caps)
            for (e, n), cap in caps.items():
                self._add_cap(e, n, cap)
            self._replay(excluded)
            tried = True
            if eid not in self.invalid:
                in_force.add(eid)
                return True
            self._caps = saved
        if tried:
            self._replay(excluded)
        return False

    def _caps_of(self, reach: Mapping[str, Any]) -> dict[tuple[str, str], str]:
        """R1 (co-signer part; authorship too, which R1's exclusion also covers) and R4:
        what the target counts for on each governance event it wrote or co-signed that
        is placed before `reach` and not in its frontier."""
        data, at = reach["data"], sort_key(reach)
        target, frontier = data["target_node_id"], set(data["frontier"])
        cap = NOTHING if reach["event_type"] == REVOKED else data["new_level"]
        out: dict[tuple[str, str], str] = {}
        for ev in self._log:
            if sort_key(ev) >= at:
                break
            if ev["event_type"] not in GOVERNANCE_TYPES or ev["event_id"] in frontier:
                continue
            involved = self._signers(ev) if ev["event_type"] in CO_SIGNED_TYPES else {ev["author"]}
            if target in involved:
                out[(ev["event_id"], target)] = cap
        return out

    def _capped_with(self, caps: Mapping[tuple[str, str], str], event_id: str, node_id: str) -> str | None:
        """What `_capped(event_id, node_id, "anchor")` would give with `caps` added."""
        now, extra = self._capped(event_id, node_id, "anchor"), caps[(event_id, node_id)]
        if now is None or extra == NOTHING:
            return None
        return extra if LEVEL_RANK[extra] < LEVEL_RANK[now] else now

    def _add_cap(self, event_id: str, node_id: str, cap: str) -> None:
        caps = self._caps.setdefault(event_id, {})
        old = caps.get(node_id)
        if old == NOTHING or (old is not None and cap != NOTHING and LEVEL_RANK[old] <= LEVEL_RANK[cap]):
            return
        caps[node_id] = cap

    def _reached_back(self, excluded: Mapping[str, str]) -> dict[str, str]:
        """Events that took effect in this replay but break R1/R2 given the revocations
        it ended with (they sort before those revocations)."""
        if not self.revoked:
            return {}
        invite_author = {ev["event_id"]: ev["author"] for ev in self._log if ev["event_type"] == INVITED}
        out: dict[str, str] = {}
        for ev in self._log:
            eid = ev["event_id"]
            if eid in excluded or eid in self.invalid:
                continue
            rev = self.revoked.get(ev["author"])
            if rev is not None and eid not in rev["frontier"]:
                out[eid] = REVOKED_AUTHOR
            elif ev["event_type"] == JOINED:
                inviter = self.revoked.get(invite_author.get(ev["data"]["invite_event_id"], ""))
                if inviter is not None and eid not in inviter["frontier"]:
                    out[eid] = UNKNOWN_AUTHOR  # joined through a void invite: no member
        return out

    def _step(self, ev: Mapping[str, Any]) -> None:
        reason = self.author_problem(ev)
        if reason is None:
            _EFFECTS[ev["event_type"]](self, ev)
        else:  # no authority here: no effect (and the log deletes it)
            self.invalid[ev["event_id"]] = reason

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
                                "level": rec["level"], "revoked_by": ev["author"],
                                "event_id": ev["event_id"], "frontier": frozenset(ev["data"]["frontier"])}

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
            "revoked": [{"node_id": n, **r, "frontier": sorted(r["frontier"])}
                        for n, r in sorted(self.revoked.items())],
            "invites": [{"event_id": k, **v} for k, v in sorted(self.invites.items())],
            "invalid": dict(sorted(self.invalid.items())),
            "events": copy.deepcopy(self._log),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        self.reset()
        self.name, self.created_at = state["name"], state["created_at"]
        self.policy, self.head_lamport = dict(state["policy"]), int(state["head_lamport"])
        self.members = {e["node_id"]: _without(e, "node_id") for e in state["members"]}
        self.revoked = {e["node_id"]: {**_without(e, "node_id"), "frontier": frozenset(e["frontier"])}
                        for e in state["revoked"]}
        self.invites = {e["event_id"]: _without(e, "event_id") for e in state["invites"]}
        self.invalid = dict(state.get("invalid") or {})
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


def _when(text: Any) -> datetime | None:
    try:
        return parse_rfc3339(text)
    except (ValueError, TypeError, OverflowError):
        return None


def _admitted(data: Mapping[str, Any], invitee: str, invite: Mapping[str, Any]) -> bool:
    """R3: the invite's author admitted this invitee, at a time the invite was valid."""
    admission = data["admission"]
    at, expires = _when(admission["at"]), _when(invite["expires_at"])
    return (at is not None and expires is not None and at <= expires
            and admission_verifies(admission, data["invite_event_id"], invitee, invite["invited_by"]))


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
