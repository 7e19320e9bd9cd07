"""For unit tests of services that follow the event log (market, alerts): the ledger's
capabilities answered in process over a real EventLog (tests/unit/ledger/conftest.py's
Community), and a harness calling a service's handlers as its owner."""
from __future__ import annotations

import asyncio
from typing import Any

from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import KeyPair
from hearthnet.ledger.errors import LedgerError
from tests.unit.ledger.conftest import Community


class LedgerBus:
    """`community.log.append|events|ingest` on the community's log, signed with `kp`; a
    subclass answers the other capabilities its service asks for (`other`)."""

    def __init__(self, community: Community, kp: KeyPair) -> None:
        self.community, self.kp = community, kp

    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False, node: str | None = None) -> dict[str, Any]:
        inp, log = body["input"], self.community.log
        if cap == "community.log.append":
            try:
                return {"output": {"event": log.append_local(self.kp, inp["event_type"], inp["data"])}}
            except LedgerError as exc:  # what the bus hands back: the code and the message
                raise HearthNetError(exc.code, exc.message) from None
        if cap == "community.log.events":
            return {"output": {"events": log.events(inp.get("since_lamport", 0), None, inp.get("event_types"),
                                                    None, inp.get("limit"))}}
        if cap == "community.log.ingest":
            return {"output": log.append_received(inp["events"]).to_wire()}
        return await self.other(cap, body, caller=caller, node=node)

    async def other(self, cap: str, body: Any, *, caller: str, node: str | None) -> dict[str, Any]:
        raise HearthNetError("not_found", f"no provider for {cap}")


class ServiceHarness:
    """One node's service (`self.svc`, built by the subclass) called as its owner."""

    svc: Any

    def __init__(self, community: Community, kp: KeyPair) -> None:
        self.community, self.kp = community, kp

    @property
    def node_id(self) -> str:
        return self.kp.node_id_full

    async def _catch_up(self) -> None:
        """What the follower does at each subscription: the view rebuilt from the log."""
        await self.svc._rebuild(await self.svc.follower.stored())

    def call(self, cap: str, inp: dict[str, Any], caller: str | None = None) -> dict[str, Any]:
        handler = {c.name: c.handler for c in self.svc.capabilities()}[cap]
        req = Request(capability=cap, version="1.0", body={"params": {}, "input": inp},
                      caller=self.node_id if caller is None else caller)
        return asyncio.run(handler(req))
