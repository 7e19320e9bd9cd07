"""A fake mesh for the chat service: each node has a tiny in-memory ledger (signed envelopes
built by the real build_event, the domain rules of hearthnet/ledger/domain.py applied on
every append) and a bus that routes `community.*` to it and `chat.deliver` to the other
node's ChatService when that node is "online". Gossip is `Mesh.gossip()`: every online
node's events copied to every other online node."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.ledger.domain import domain_problem
from hearthnet.ledger.events import build_event
from hearthnet.services.chat.service import ChatService
from hearthnet.bus.service import Request

COMMUNITY = "ed25519:" + "A" * 43


class FakeLedger:
    def __init__(self, kp: KeyPair, members: set[str]) -> None:
        self.kp = kp
        self.members = members
        self.events: list[dict[str, Any]] = []
        self.lamport = 0
        self.subscribers: list[asyncio.Queue] = []

    def lookup(self, event_id: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event_id"] == event_id), None)

    def _store(self, ev: dict[str, Any]) -> str | None:
        if self.lookup(ev["event_id"]) is not None:
            return "duplicate"
        if ev["author"] not in self.members:
            return "unknown_author"
        if not keys.verify_payload_with_node_id(ev, ev["author"]):
            return "invalid_signature"
        problem = domain_problem(ev, self.lookup, lambda n: "member" if n in self.members else None)
        if problem is not None:
            return problem[0]
        self.events.append(ev)
        self.lamport = max(self.lamport, ev["lamport"])
        for q in self.subscribers:
            q.put_nowait(ev)
        return None

    def append(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        ev = build_event(self.kp, COMMUNITY, self.lamport + 1, event_type, data)
        problem = self._store(ev)
        if problem is not None:
            raise HearthNetError("not_found" if problem in ("unknown_recipient", "unknown_target") else "unauthorized",
                                 problem)
        return ev

    def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": 0, "rejected": 0, "rejected_reasons": [], "duplicates": 0}
        for ev in events:
            problem = self._store(ev)
            if problem == "duplicate":
                out["duplicates"] += 1
            elif problem is not None:
                out["rejected"] += 1
                out["rejected_reasons"].append({"event_id": ev["event_id"], "reason": problem})
            else:
                out["accepted"] += 1
        return out


class FakeBus:
    def __init__(self, mesh: "Mesh", node: str) -> None:
        self.mesh = mesh
        self.node = node
        self.calls: list[str] = []

    @property
    def ledger(self) -> FakeLedger:
        return self.mesh.ledgers[self.node]

    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", timeout: float | None = None,
                   node: str | None = None, **_: Any) -> dict[str, Any]:
        self.calls.append(cap)
        inp = body.get("input") or {}
        if node is not None and node != self.node:
            if cap != "chat.deliver" or node not in self.mesh.online:
                raise HearthNetError("partition", f"{node} is not reachable")
            return await self.mesh.services[node].deliver(Request(cap, version, body, caller=self.node))
        if cap == "community.log.append":
            return {"output": {"event": self.ledger.append(inp["event_type"], inp["data"])}}
        if cap == "community.log.ingest":
            return {"output": self.ledger.ingest(inp["events"])}
        if cap == "community.log.events":
            types = set(inp.get("event_types") or [])
            since, limit = inp.get("since_lamport", 0), inp.get("limit") or 10 ** 9
            found = sorted((e for e in self.ledger.events if e["event_type"] in types and e["lamport"] > since),
                           key=lambda e: (e["lamport"], e["event_id"]))
            return {"output": {"events": found[:limit]}}
        if cap == "community.peers.list":
            return {"output": {"peers": [{"node_id_full": n} for n in self.mesh.online if n != self.node]}}
        raise HearthNetError("not_found", cap)

    def stream(self, cap: str, version: str, body: Any, **_: Any) -> AsyncIterator[tuple[str, Any]]:
        assert cap == "community.log.subscribe"
        return self._subscription()

    async def _subscription(self) -> AsyncIterator[tuple[str, Any]]:
        q: asyncio.Queue = asyncio.Queue()
        self.ledger.subscribers.append(q)
        try:
            yield "subscribed", {}
            while True:
                yield "event", await q.get()
        finally:
            self.ledger.subscribers.remove(q)


class Mesh:
    def __init__(self, names: tuple[str, ...] = ("a", "b", "c")) -> None:
        self.kps = {n: keys.generate() for n in names}
        self.ids = {n: kp.node_id_full for n, kp in self.kps.items()}
        members = set(self.ids.values())
        self.ledgers = {self.ids[n]: FakeLedger(kp, members) for n, kp in self.kps.items()}
        self.services: dict[str, ChatService] = {}
        self.online: set[str] = set()

    async def start(self, name: str) -> ChatService:
        node = self.ids[name]
        svc = ChatService(FakeBus(self, node), self.kps[name])
        self.services[node] = svc
        self.online.add(node)
        await svc.start()
        await asyncio.wait_for(svc._ready.wait(), 5)
        return svc

    async def stop(self, name: str) -> None:
        node = self.ids[name]
        self.online.discard(node)
        await self.services.pop(node).stop()

    async def gossip(self) -> None:
        """One round between every pair of online nodes; then let the workers react."""
        for _ in range(3):
            for x in list(self.online):
                for y in list(self.online):
                    if x != y:
                        self.ledgers[y].ingest(list(self.ledgers[x].events))
            await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def req(cap: str, inp: dict[str, Any], caller: str) -> Request:
    return Request(cap, "1.0", {"params": {}, "input": inp}, caller=caller)
