"""A small community of in-process nodes for governance tests: each node has its own real
EventLog and GovernanceService; a fake bus serves the ledger capabilities from the
node's own log, routes targeted calls to another node's service (caller = the calling
node, as the peer API would), and delivers every appended event to every other log at
once (perfect sync)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import community_policy, rfc3339, utcnow
from hearthnet.ledger.events import build_admission
from hearthnet.ledger.store import EventLog
from hearthnet.services.governance import GovernanceService

ENDPOINT = {"transport": "https", "host": "192.168.1.20", "port": 7080}
GOVERNANCE_CAPS = {"community.invite", "community.revoke", "community.promote", "community.demote",
                   "community.members.list"}


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@dataclass
class NetNode:
    name: str
    kp: KeyPair
    log: EventLog
    service: GovernanceService
    bus: "FakeBus"

    @property
    def id(self) -> str:
        return self.kp.node_id_full

    def call(self, cap: str, inp: dict[str, Any], *, caller: str | None = None) -> dict[str, Any]:
        """A capability of this node's governance service; caller defaults to the owner."""
        handler = {c.name: c.handler for c in self.service.capabilities()}[cap]
        req = Request(capability=cap, version="1.0", body={"params": {}, "input": inp},
                      caller=caller or self.id)
        return asyncio.run(handler(req))["output"]


class FakeBus:
    def __init__(self, net: "Net", me: str) -> None:
        self.net, self.me = net, me
        self.calls: list[tuple[str, str, Any]] = []

    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]:
        where = node or self.me
        self.calls.append((cap, where, body))
        target = self.net.nodes_by_id.get(where)
        if target is None or where in self.net.offline:
            raise HearthNetError("not_found", f"node {where} does not offer {cap} here")
        inp = body["input"]
        if cap in GOVERNANCE_CAPS:
            handler = {c.name: c.handler for c in target.service.capabilities()}[cap]
            req = Request(capability=cap, version=version, body=body, caller=caller)
            return await handler(req)
        assert where == self.me, f"{cap} must stay on the node"
        if cap == "community.log.events":
            return {"output": {"events": target.log.events(inp.get("since_lamport", 0), inp.get("ids"),
                                                           inp.get("event_types"), inp.get("author"),
                                                           inp.get("limit"))}}
        if cap == "community.log.append":
            ev = target.log.append_local(target.kp, inp["event_type"], inp["data"])
            self.net.broadcast(ev, origin=target)
            return {"output": {"event": ev}}
        if cap == "community.log.frontier":
            return {"output": {"frontier": target.log.frontier(inp["target_node_id"], inp.get("action", "revoke"))}}
        if cap == "community.members.get":
            body_ = target.log.view.manifest_body()
            return {"output": {"members": body_["members"], "revoked": body_["revoked"],
                               "head_lamport": body_["head_lamport"]}}
        raise AssertionError(f"unexpected capability {cap}")


@dataclass
class Net:
    root: Path
    policy: dict[str, Any] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)
    nodes: dict[str, NetNode] = field(default_factory=dict)
    offline: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        founder = keys.generate()
        node = self._node("alice", founder)
        node.log.create_genesis(founder, "Maple Street", community_policy(self.policy), display_name="alice")

    @property
    def cid(self) -> str:
        return self.nodes["alice"].id

    @property
    def nodes_by_id(self) -> dict[str, NetNode]:
        return {n.id: n for n in self.nodes.values()}

    def __getitem__(self, name: str) -> NetNode:
        return self.nodes[name]

    def _node(self, name: str, kp: KeyPair) -> NetNode:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        cid = self.nodes["alice"].id if self.nodes else kp.node_id_full
        log = EventLog(d / "events.sqlite", cid)
        bus = FakeBus(self, kp.node_id_full)
        svc = GovernanceService(cid, kp, d, bus, endpoints=lambda: [ENDPOINT], clock=self.clock)
        node = self.nodes[name] = NetNode(name, kp, log, svc, bus)
        return node

    def broadcast(self, ev: dict[str, Any], origin: NetNode) -> None:
        for other in self.nodes.values():
            if other is not origin:
                other.log.append_received([ev])

    def join(self, name: str, level: str = "member", inviter: str = "alice") -> NetNode:
        """A new node invited by `inviter` at `level`, joined and synced everywhere."""
        kp = keys.generate()
        node = self._node(name, kp)
        node.log.append_received(self.nodes["alice"].log.events())
        by = self.nodes[inviter]
        invite = by.log.append_local(by.kp, "community.member.invited", {
            "invitee_node_id": kp.node_id_full, "display_name": name, "initial_level": level,
            "expires_at": rfc3339(utcnow() + timedelta(hours=1))})
        self.broadcast(invite, by)
        joined = node.log.append_local(kp, "community.member.joined", {
            "invite_event_id": invite["event_id"], "node_manifest": {"node_id": kp.node_id_full,
                                                                     "display_name": name},
            "admission": build_admission(by.kp, invite["event_id"], kp.node_id_full)})
        self.broadcast(joined, node)
        return node

    def close(self) -> None:
        for node in self.nodes.values():
            node.log.close()
