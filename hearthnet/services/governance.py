"""The governance service: invites, revocations, promotions and demotions on the bus
(spec core-events-discovery §2 co-signatures; core-observability-cli-onboarding §6.3).
Runs in the `governance` worker. It never writes the log itself: every event goes
through the ledger (`community.log.append`), whose rules decide what takes effect.

Capabilities (all @1.0, stability beta; bodies {"params", "input"}):

    community.invite        member   {invitee_node_id, level?, ttl_seconds?, display_name?}
                                     -> {invite, invite_blob, invitee_node_id, invitee_display_name,
                                         level, expires_at, community_id, community_name, event_id,
                                         reissued}
    community.revoke        trusted  owner:  {target_node_id, reason}  -> outcome (below)
                                     peer:   {proposal}                -> {co_signer: {node_id, signature}}
    community.promote       trusted  owner:  {target_node_id, new_level?} -> outcome;  peer: {proposal}
    community.demote        trusted  owner:  {target_node_id, new_level?} -> outcome;  peer: {proposal}
    community.members.list  self     {} -> {community_id, community_name, policy, members, revoked,
                                            pending_invites, approvals}

Outcome: {status: revoked|promoted|demoted, action, target_node_id, event_id, signers}
or {status: "pending", action, target_node_id, signatures, needed, signers, waiting_for,
refused: [{node_id, error, message}]}.

Co-signing (README "Members and governance"): a call whose caller is this node (its
owner, through the local API) records the owner's approval (`<state_dir>/approvals.json`,
7 days), builds the proposal (the event's data minus `co_signers`), and asks every other
current trusted/anchor member but the target, by a targeted bus call to that node, to
co-sign it. A node co-signs only what its own owner approved (same action and target,
same new level), for a trusted/anchor caller, and only a frontier that lists events it may
list. With enough signatures (the author's own envelope signature counts as one) the
event is appended; otherwise the outcome is `pending`, and a later owner approval on
another node, which collects the signatures again, completes it.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from hearthnet.bus.service import Capability, Request
from hearthnet.errors import HearthNetError, IdentityError
from hearthnet.fsutil import atomic_write
from hearthnet.identity.keys import KeyPair, parse_node_id, short_node_id, verify_bytes, verify_key_from_full
from hearthnet.identity.manifest import parse_rfc3339, rfc3339, utcnow
from hearthnet.ledger.events import (
    GOVERNANCE_TYPES,
    LEVEL_RANK,
    MEMBER_LEVELS,
    co_sign,
    co_signature_payload,
    named_co_signers,
)
from hearthnet.ledger.views import PROMOTE_SIGNATURES, SIGNING_LEVELS, CommunityView

log = logging.getLogger("hearthnet.governance")

REVOKE_REASONS = ("compromised", "inactive", "policy_violation", "other")
PROPOSAL_KEYS = {"revoke": {"target_node_id", "reason", "frontier"},
                 "promote": {"target_node_id", "new_level"},
                 "demote": {"target_node_id", "new_level", "frontier"}}
INVITE_LEVELS = ("member", "trusted")
APPROVAL_TTL = timedelta(days=7)
APPROVALS_FILE = "approvals.json"
CO_SIGN_TIMEOUT_SECONDS = 15.0
LEDGER_TIMEOUT_SECONDS = 30.0
DEFAULT_INVITE_TTL_SECONDS = 24 * 3600
MAX_INVITE_TTL_SECONDS = 30 * 24 * 3600
MIN_REISSUE_LEFT = timedelta(minutes=10)  # a pending invite closer to expiry is not re-issued
BOOTSTRAP_MAX = 3  # endpoints carried in the invite blob (keeps the QR code small)
DISPLAY_NAME_MAX = 64


@dataclass(frozen=True)
class Action:
    name: str  # revoke | promote | demote
    capability: str
    event_type: str
    done: str  # the outcome's status once the event is appended
    verb: str  # for messages: "revoking X"


ACTIONS = {a.name: a for a in (
    Action("revoke", "community.revoke", "community.member.revoked", "revoked", "revoking"),
    Action("promote", "community.promote", "community.member.promoted", "promoted", "promoting"),
    Action("demote", "community.demote", "community.member.demoted", "demoted", "demoting"),
)}


class Bus(Protocol):
    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- approvals


class Approvals:
    """The owner's approvals of governance actions on this node (a small JSON file).
    Only this node's owner adds one (a local call); peers only read whether one exists."""

    def __init__(self, path: Path, clock: Callable[[], datetime]) -> None:
        self.path = path
        self.clock = clock

    def _load(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            log.warning("unreadable approvals file; starting afresh", extra={"path": str(self.path)})
            return []
        entries = doc.get("approvals") if isinstance(doc, dict) else None
        return [e for e in entries or [] if isinstance(e, dict) and self._live(e)]

    def _live(self, entry: Mapping[str, Any]) -> bool:
        try:
            return parse_rfc3339(entry["expires_at"]) > self.clock()
        except (KeyError, TypeError, ValueError):
            return False

    def _save(self, entries: list[dict[str, Any]]) -> None:
        data = json.dumps({"version": 1, "approvals": entries}, indent=1, sort_keys=True)
        atomic_write(self.path, data.encode("utf-8"), 0o600)

    def list(self) -> list[dict[str, Any]]:
        return sorted(self._load(), key=lambda e: (e["action"], e["target_node_id"]))

    def find(self, action: str, target: str) -> dict[str, Any] | None:
        return next((e for e in self._load() if e["action"] == action and e["target_node_id"] == target), None)

    def approve(self, action: str, target: str, **details: Any) -> dict[str, Any]:
        """Record (or renew) the owner's approval; one per action and target."""
        now = self.clock()
        entry = {"action": action, "target_node_id": target, "approved_at": rfc3339(now),
                 "expires_at": rfc3339(now + APPROVAL_TTL), **details}
        kept = [e for e in self._load() if (e["action"], e["target_node_id"]) != (action, target)]
        self._save(kept + [entry])
        return entry

    def drop(self, action: str, target: str) -> None:
        entries = self._load()
        kept = [e for e in entries if (e["action"], e["target_node_id"]) != (action, target)]
        if len(kept) != len(entries):
            self._save(kept)


# --------------------------------------------------------------------------- community state


@dataclass
class Community:
    """One consistent read of membership: levels from the ledger's own view
    (`community.members.get`, what the gateway checks peers against), everything else
    (policy, invites, who revoked whom, names) from its governance events replayed in a
    CommunityView, the same class the ledger uses."""

    levels: dict[str, dict[str, Any]]  # node_id -> {level, added_at, added_by}
    revoked: dict[str, dict[str, Any]]  # node_id -> {revoked_at, ...}
    view: CommunityView
    events: list[dict[str, Any]]  # governance events in replay order

    def level_of(self, node_id: str) -> str | None:
        rec = self.levels.get(node_id)
        return rec.get("level") if rec else None

    def signers(self) -> list[str]:
        return sorted(n for n, rec in self.levels.items() if rec.get("level") in SIGNING_LEVELS)

    def display_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for ev in self.events:  # later events win
            data = ev.get("data") or {}
            if ev["event_type"] == "community.member.invited" and data.get("display_name"):
                names.setdefault(data["invitee_node_id"], data["display_name"])
            elif ev["event_type"] == "community.member.joined":
                name = (data.get("node_manifest") or {}).get("display_name")
                if isinstance(name, str) and name:
                    names[ev["author"]] = name
        return names


def needed_signatures(action: str, policy: Mapping[str, Any]) -> int:
    if action == "revoke":
        return int(policy["min_signatures_to_revoke"])
    if action == "demote":
        return int(policy["min_signatures_to_demote"])
    return PROMOTE_SIGNATURES


def _full_id(value: Any, field: str) -> str:
    try:
        parse_node_id(value)
    except IdentityError as exc:
        raise HearthNetError("bad_request", f"input.{field}: {exc.message}") from None
    return value


def _short(node_id: str) -> str:
    try:
        return short_node_id(node_id)
    except IdentityError:
        return node_id


# --------------------------------------------------------------------------- the service


class GovernanceService:
    name = "governance"

    def __init__(self, community_id: str, kp: KeyPair, state_dir: Path, bus: Bus, *,
                 endpoints: Callable[[], list[dict[str, Any]]] = list,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.community_id = community_id
        self.kp = kp
        self.bus = bus
        self.endpoints = endpoints
        self.clock = clock
        self.approvals = Approvals(state_dir / APPROVALS_FILE, clock)

    @classmethod
    def from_config(cls, cfg: Any) -> "GovernanceService":
        from hearthnet.bus.client import BusClient
        from hearthnet.identity import keys

        cid, state_dir = cfg.community.community_id, cfg.community.state_dir
        if cid is None or state_dir is None:
            raise HearthNetError("not_initialised", "this node has no community yet; run `hearthnet init`")

        def endpoints() -> list[dict[str, Any]]:
            from hearthnet.transport.endpoints import advertised_endpoints  # what the node manifest lists

            return advertised_endpoints(cfg)

        return cls(cid, keys.load(cfg.identity.keys_dir), state_dir,
                   BusClient(cfg.paths.broker_clients_endpoint), endpoints=endpoints)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        start = getattr(self.bus, "start", None)
        if start is not None:
            await start()

    async def stop(self) -> None:
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()

    def health(self) -> dict[str, Any]:
        return {}

    def capabilities(self) -> list[Capability]:
        obj = {"type": "object"}

        def cap(name: str, handler: Any, trust: str, props: dict[str, Any], timeout: int) -> Capability:
            schema = {"type": "object", "properties": {"params": obj, "input": {"type": "object",
                                                                                "properties": props}}}
            return Capability(name=name, handler=handler, stability="beta", trust_required=trust,
                              request_schema=schema, response_schema=obj, max_concurrent=8,
                              timeout_seconds=timeout, idempotent=False)

        node, text = {"type": "string"}, {"type": "string"}
        change = {"target_node_id": node, "new_level": {"type": "string", "enum": list(MEMBER_LEVELS)},
                  "proposal": obj}
        return [
            cap("community.invite", self.invite, "member",
                {"invitee_node_id": node, "level": {"type": "string", "enum": list(INVITE_LEVELS)},
                 "ttl_seconds": {"type": "integer", "minimum": 1}, "display_name": text}, 30),
            cap("community.revoke", self.revoke, "trusted",
                {"target_node_id": node, "reason": {"type": "string", "enum": list(REVOKE_REASONS)},
                 "proposal": obj}, 60),
            cap("community.promote", self.promote, "trusted", change, 60),
            cap("community.demote", self.demote, "trusted", change, 60),
            cap("community.members.list", self.members_list, "self", {}, 30),
        ]

    # ------------------------------------------------------------------ ledger access

    async def _ledger(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        out = await self.bus.call(cap, "1.0", {"params": {}, "input": inp}, caller=self.kp.node_id_full,
                                  timeout=LEDGER_TIMEOUT_SECONDS, node=self.kp.node_id_full)
        return out.get("output") or {}

    async def _events(self, **query: Any) -> list[dict[str, Any]]:
        return list((await self._ledger("community.log.events", query)).get("events") or [])

    async def _community(self) -> Community:
        members = await self._ledger("community.members.get", {})
        events = await self._events(event_types=sorted(GOVERNANCE_TYPES))
        view = CommunityView(self.community_id)
        for ev in events:
            view.apply(ev)
        levels = {m["node_id"]: m for m in members.get("members") or [] if isinstance(m, dict)}
        revoked = {r["node_id"]: r for r in members.get("revoked") or [] if isinstance(r, dict)}
        return Community(levels, revoked, view, events)

    async def _append(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        return (await self._ledger("community.log.append", {"event_type": event_type, "data": data}))["event"]

    def _is_owner(self, req: Request) -> bool:
        """The node's owner: a local API call (the gateway passes our own id; a peer's
        request carries the peer's verified id)."""
        return req.caller == self.kp.node_id_full

    # ------------------------------------------------------------------ community.invite

    async def invite(self, req: Request) -> dict[str, Any]:
        inp = req.input
        invitee = _full_id(inp.get("invitee_node_id"), "invitee_node_id")
        level = inp.get("level", "member")
        ttl = inp.get("ttl_seconds", DEFAULT_INVITE_TTL_SECONDS)
        name = inp.get("display_name") or ""
        if level not in INVITE_LEVELS:
            raise HearthNetError("bad_request", f"input.level must be one of {', '.join(INVITE_LEVELS)}")
        if type(ttl) is not int or not 0 < ttl <= MAX_INVITE_TTL_SECONDS:
            raise HearthNetError("bad_request", f"input.ttl_seconds must be 1..{MAX_INVITE_TTL_SECONDS}")
        if not isinstance(name, str):
            raise HearthNetError("bad_request", "input.display_name must be a string")
        if invitee == self.kp.node_id_full:
            raise HearthNetError("bad_request", "that is this node's own id; give the id of the device to invite")
        community = await self._community()
        self._check_may_invite(req, community, level)
        if invitee in community.levels:
            raise HearthNetError("bad_request", f"{_short(invitee)} is already a member of this community; "
                                                "it needs no invite", reason="already_member")
        endpoints = self._bootstrap_endpoints()
        event, reissued = await self._invite_event(community, invitee, level, ttl, name[:DISPLAY_NAME_MAX])
        return {"output": self._issue(community, event, reissued, endpoints, name), "meta": {}}

    def _check_may_invite(self, req: Request, community: Community, level: str) -> None:
        """A peer asking this node to invite needs the invite right itself; the ledger
        judges this node's own right when the event is appended."""
        if self._is_owner(req):
            return
        have = community.level_of(req.caller)
        may = have in SIGNING_LEVELS or (have == "member" and community.view.policy["default_member_can_invite"])
        if have is None or not may or LEVEL_RANK[level] > LEVEL_RANK[have]:
            raise HearthNetError("unauthorized", f"{_short(req.caller)} may not invite at level {level}")

    def _bootstrap_endpoints(self) -> list[dict[str, Any]]:
        eps = [{"transport": "https", "host": e["host"], "port": e["port"]} for e in self.endpoints()
               if e.get("transport") == "https" and isinstance(e.get("host"), str)
               and isinstance(e.get("port"), int)]
        if not eps:
            raise HearthNetError("not_found", "this node advertises no address other devices can reach",
                                 hint="set transport.host in config.toml to this machine's LAN address "
                                      "(or 0.0.0.0) and restart the node")
        return eps[:BOOTSTRAP_MAX]

    async def _invite_event(self, community: Community, invitee: str, level: str, ttl: int,
                            name: str) -> tuple[dict[str, Any], bool]:
        """The pending invite to re-issue (same invitee and level, not about to expire),
        or a new `community.member.invited` appended through the ledger."""
        now = self.clock()
        pending = [p for p in community.view.pending_invites(rfc3339(now))
                   if p["invitee_node_id"] == invitee and p["initial_level"] == level
                   and parse_rfc3339(p["expires_at"]) - now >= MIN_REISSUE_LEFT]
        if pending:
            best = max(pending, key=lambda p: parse_rfc3339(p["expires_at"]))
            data = {k: best[k] for k in ("invitee_node_id", "display_name", "initial_level", "expires_at")}
            return {"event_id": best["event_id"], "data": data}, True
        data = {"invitee_node_id": invitee, "display_name": name, "initial_level": level,
                "expires_at": rfc3339(now + timedelta(seconds=ttl))}
        return await self._append("community.member.invited", data), False

    def _issue(self, community: Community, event: dict[str, Any], reissued: bool,
               endpoints: list[dict[str, Any]], name: str) -> dict[str, Any]:
        from hearthnet.onboarding.invite import encode_invite, encode_invite_contract, sign_invite

        data = event["data"]
        blob = sign_invite(self.kp, community_id=self.community_id, community_name=community.view.name,
                           invitee_node_id=data["invitee_node_id"], initial_level=data["initial_level"],
                           bootstrap_endpoints=endpoints, expires_at=data["expires_at"])
        return {"invite": encode_invite(blob), "invite_blob": encode_invite_contract(blob),
                "invitee_node_id": blob.invitee_node_id,
                "invitee_display_name": name or data["display_name"], "level": blob.initial_level,
                "expires_at": blob.expires_at, "community_id": blob.community_id,
                "community_name": blob.community_name, "event_id": event["event_id"],
                "reissued": reissued}

    # ------------------------------------------------------------------ revoke / promote / demote

    async def revoke(self, req: Request) -> dict[str, Any]:
        return await self._change(ACTIONS["revoke"], req)

    async def promote(self, req: Request) -> dict[str, Any]:
        return await self._change(ACTIONS["promote"], req)

    async def demote(self, req: Request) -> dict[str, Any]:
        return await self._change(ACTIONS["demote"], req)

    async def _change(self, action: Action, req: Request) -> dict[str, Any]:
        if "proposal" in req.input:
            if self._is_owner(req):
                raise HearthNetError("bad_request", "a proposal is what other nodes send; "
                                                    "give target_node_id to start one")
            return {"output": await self._co_sign(action, req.caller, req.input["proposal"]), "meta": {}}
        if not self._is_owner(req):
            raise HearthNetError("unauthorized", f"only this node's owner starts {action.verb} a member here; "
                                                 "other nodes send a proposal to co-sign")
        return {"output": await self._owner_change(action, req.input), "meta": {}}

    # ---- the owner's side: approve, propose, collect, append

    async def _owner_change(self, action: Action, inp: Mapping[str, Any]) -> dict[str, Any]:
        target = _full_id(inp.get("target_node_id"), "target_node_id")
        community = await self._community()
        me = self.kp.node_id_full
        if target == me:
            raise HearthNetError("bad_request", f"this node cannot take part in {action.verb} itself")
        self._check_target(community, target)
        mine = community.level_of(me)
        if mine not in SIGNING_LEVELS:
            raise HearthNetError("unauthorized", f"this node is {mine or 'not a member'}; only trusted members "
                                                 f"and anchors may take part in {action.verb} a member")
        proposal = await self._proposal(action, community, target, inp)
        self._check_level_change(action, community, proposal, signer=me)
        extra = {"new_level": proposal["new_level"]} if "new_level" in proposal else {"reason": proposal["reason"]}
        self.approvals.approve(action.name, target, **extra)
        needed = needed_signatures(action.name, community.view.policy)
        asked = [n for n in community.signers() if n not in (me, target)]
        got, refused = await self._collect(action, proposal, asked if needed > 1 else [])
        signers = [me] + sorted(got)
        base = {"action": action.name, "target_node_id": target, "signers": signers}
        if len(signers) < needed:
            log.info("governance proposal pending", extra={"action": action.name, "target": target,
                                                           "signatures": len(signers), "needed": needed})
            return {**base, "status": "pending", "signatures": len(signers), "needed": needed,
                    "waiting_for": sorted(set(asked) - set(got)), "refused": refused}
        co_signers = [{"node_id": n, "signature": got[n]} for n in sorted(got)]
        event = await self._append(action.event_type, {**proposal, "co_signers": co_signers})
        self.approvals.drop(action.name, target)
        log.info("governance event appended", extra={"action": action.name, "target": target,
                                                      "event_id": event["event_id"], "signers": len(signers)})
        return {**base, "status": action.done, "event_id": event["event_id"], "signatures": len(signers),
                "needed": needed}

    def _check_target(self, community: Community, target: str) -> None:
        if target in community.levels:
            return
        if target in community.revoked:
            raise HearthNetError("not_found", f"{_short(target)} is not a member: it was revoked at "
                                              f"{community.revoked[target].get('revoked_at')}")
        raise HearthNetError("not_found", f"{_short(target)} is not a member of this community")

    async def _proposal(self, action: Action, community: Community, target: str,
                        inp: Mapping[str, Any]) -> dict[str, Any]:
        """The event's data minus co_signers: what every signer signs."""
        if action.name == "revoke":
            reason = inp.get("reason")
            if reason not in REVOKE_REASONS:
                raise HearthNetError("bad_request", f"input.reason must be one of {', '.join(REVOKE_REASONS)}")
            return {"target_node_id": target, "reason": reason, "frontier": await self._frontier(action, target)}
        new_level = inp.get("new_level") or _next_level(action.name, community.level_of(target))
        if new_level not in MEMBER_LEVELS:
            raise HearthNetError("bad_request", f"{_short(target)} is {community.level_of(target)}: there is no "
                                                f"level to {action.name} it to")
        proposal = {"target_node_id": target, "new_level": new_level}
        if action.name == "demote":
            proposal["frontier"] = await self._frontier(action, target)
        return proposal

    async def _frontier(self, action: Action, target: str) -> list[str]:
        """What the ledger holds of the target that stays judged as it is (views.py R1, R4)."""
        out = await self._ledger("community.log.frontier", {"target_node_id": target, "action": action.name})
        return list(out.get("frontier") or [])

    def _check_level_change(self, action: Action, community: Community, proposal: Mapping[str, Any], *,
                            signer: str) -> None:
        """The ledger's rule (views.py): promote cur < new <= signer's level, demote
        new < cur <= signer's level; checked here so nobody signs what would not count."""
        if action.name == "revoke":
            return
        cur = community.level_of(proposal["target_node_id"])
        new, mine = proposal["new_level"], community.level_of(signer)
        if cur is None or mine is None:
            raise HearthNetError("not_found", f"{_short(proposal['target_node_id'])} is not a member")
        promote = action.name == "promote"
        if not (LEVEL_RANK[cur] < LEVEL_RANK[new] if promote else LEVEL_RANK[new] < LEVEL_RANK[cur]):
            raise HearthNetError("bad_request", f"{_short(proposal['target_node_id'])} is {cur}; cannot "
                                                f"{action.name} it to {new}")
        top = new if promote else cur  # nobody moves a member at or to a level above their own
        if LEVEL_RANK[top] > LEVEL_RANK[mine]:
            raise HearthNetError("unauthorized", f"{action.verb} to or from {top} needs a signer of that level; "
                                                 f"{_short(signer)} is {mine}")

    async def _collect(self, action: Action, proposal: dict[str, Any],
                       asked: list[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """Ask each node (in parallel, targeted calls) to co-sign; keep the signatures
        that verify, and say why the others did not sign."""
        results = await asyncio.gather(*(self._ask(action, proposal, n) for n in asked))
        payload = co_signature_payload(self.community_id, action.event_type, proposal)
        got: dict[str, str] = {}
        refused: list[dict[str, Any]] = []
        for node_id, (reply, error) in zip(asked, results):
            entry = (reply or {}).get("co_signer") if isinstance(reply, dict) else None
            sig = entry.get("signature") if isinstance(entry, dict) and entry.get("node_id") == node_id else None
            if isinstance(sig, str) and verify_bytes(payload, sig, verify_key_from_full(node_id)):
                got[node_id] = sig
            else:
                refused.append(error or {"node_id": node_id, "error": "invalid_signature",
                                         "message": "its co-signature does not verify"})
        return got, refused

    async def _ask(self, action: Action, proposal: dict[str, Any],
                   node_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        try:
            out = await self.bus.call(action.capability, "1.0", {"params": {}, "input": {"proposal": proposal}},
                                      caller=self.kp.node_id_full, timeout=CO_SIGN_TIMEOUT_SECONDS, node=node_id)
        except HearthNetError as exc:
            return None, {"node_id": node_id, "error": exc.code, "message": exc.message}
        return out.get("output") or {}, None

    # ---- a peer's side: co-sign what our owner approved

    async def _co_sign(self, action: Action, caller: str, proposal: Any) -> dict[str, Any]:
        community = await self._community()
        if community.level_of(caller) not in SIGNING_LEVELS:
            raise HearthNetError("unauthorized", f"{_short(caller)} is not a trusted member or anchor; "
                                                 "only they may ask for co-signatures")
        me = self.kp.node_id_full
        if community.level_of(me) not in SIGNING_LEVELS:
            raise HearthNetError("unauthorized", "this node is not trusted: its signature would not count")
        target = self._proposal_shape(action, proposal)
        if target == me:
            raise HearthNetError("unauthorized", f"this node does not co-sign {action.verb} itself")
        self._check_target(community, target)
        approval = self.approvals.find(action.name, target)
        if approval is None or ("new_level" in proposal and approval.get("new_level") != proposal["new_level"]):
            raise HearthNetError("unauthorized", f"the owner of this node has not approved {action.verb} "
                                                 f"{_short(target)}")
        if "frontier" in proposal:
            await self._check_frontier(action, target, proposal["frontier"])
        if action.name != "revoke":
            self._check_level_change(action, community, proposal, signer=me)
        log.info("co-signed a governance proposal", extra={"action": action.name, "target": target,
                                                             "for": caller})
        return {"co_signer": co_sign(self.kp, self.community_id, action.event_type, proposal)}

    def _proposal_shape(self, action: Action, proposal: Any) -> str:
        keys = PROPOSAL_KEYS[action.name]
        if not isinstance(proposal, dict) or set(proposal) != keys:
            raise HearthNetError("bad_request", f"input.proposal must hold exactly {', '.join(sorted(keys))}")
        target = _full_id(proposal["target_node_id"], "proposal.target_node_id")
        frontier = proposal.get("frontier", [])
        if not isinstance(frontier, list) or not all(isinstance(i, str) for i in frontier) \
                or frontier != sorted(set(frontier)):
            raise HearthNetError("bad_request", "proposal.frontier must be a sorted list of distinct event ids")
        if action.name == "revoke" and proposal["reason"] not in REVOKE_REASONS:
            raise HearthNetError("bad_request", f"proposal.reason must be one of {', '.join(REVOKE_REASONS)}")
        if action.name != "revoke" and proposal["new_level"] not in MEMBER_LEVELS:
            raise HearthNetError("bad_request", f"proposal.new_level must be one of {', '.join(MEMBER_LEVELS)}")
        return target

    async def _check_frontier(self, action: Action, target: str, frontier: list[str]) -> None:
        """Each listed event we hold must be one the ledger would list (store.frontier):
        the target's own (governance only, for a demotion), one it co-signed, or (revoke) a
        join through one of its invites; ids we do not know are the proposer's business
        (we may lag)."""
        known = await self._events(ids=frontier) if frontier else []
        joins = {ev["data"]["invite_event_id"]: ev for ev in known if ev["event_type"] == "community.member.joined"
                 and ev["author"] != target} if action.name == "revoke" else {}
        invites = {ev["event_id"]: ev for ev in await self._events(ids=sorted(joins))} if joins else {}
        for ev in known:
            own = ev["author"] == target and (action.name == "revoke" or ev["event_type"] in GOVERNANCE_TYPES)
            if own or target in named_co_signers(ev):
                continue
            invite = invites.get((ev.get("data") or {}).get("invite_event_id"))
            if ev["event_type"] != "community.member.joined" or invite is None or invite["author"] != target:
                raise HearthNetError("bad_request", f"the proposal's frontier lists {ev['event_id']}, which "
                                                    f"{_short(target)} neither wrote nor co-signed"
                                                    + (" nor invited" if action.name == "revoke" else ""))

    # ------------------------------------------------------------------ community.members.list

    async def members_list(self, req: Request) -> dict[str, Any]:
        community = await self._community()
        view, names = community.view, community.display_names()
        members = [{"node_id": n, "node_id_short": _short(n), "level": rec.get("level"),
                    "added_at": rec.get("added_at"), "added_by": rec.get("added_by"),
                    "display_name": names.get(n)} for n, rec in sorted(community.levels.items())]
        revoked = [{"node_id": n, "node_id_short": _short(n), "revoked_at": rec.get("revoked_at"),
                    "revoked_by": (view.revoked.get(n) or {}).get("revoked_by"), "display_name": names.get(n)}
                   for n, rec in sorted(community.revoked.items())]
        invites = [{"event_id": i["event_id"], "invitee_node_id": i["invitee_node_id"],
                    "display_name": i["display_name"], "level": i["initial_level"],
                    "expires_at": i["expires_at"], "invited_by": i["invited_by"]}
                   for i in view.pending_invites(rfc3339(self.clock()))]
        policy = dict(view.policy)
        thresholds = {"invite": policy["min_signatures_to_invite"], "promote": PROMOTE_SIGNATURES,
                      "demote": policy["min_signatures_to_demote"], "revoke": policy["min_signatures_to_revoke"],
                      "default_member_can_invite": policy["default_member_can_invite"]}
        return {"output": {"community_id": self.community_id, "community_name": view.name,
                           "node_id": self.kp.node_id_full, "members": members, "revoked": revoked,
                           "pending_invites": invites, "policy": thresholds,
                           "approvals": self.approvals.list()}, "meta": {}}


def _next_level(action: str, current: str | None) -> str | None:
    """Default new level: one step up (promote) or down (demote); None when there is none."""
    if current not in LEVEL_RANK:
        return None
    rank = LEVEL_RANK[current] + (1 if action == "promote" else -1)
    return next((lvl for lvl, r in LEVEL_RANK.items() if r == rank), None)
