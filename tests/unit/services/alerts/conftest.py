"""AlertService on a real EventLog (the ledger's domain rules judge every append and every
pushed event), with a fake bus: the ledger capabilities on that log, the member list from
the log's view, and a peer list the test sets."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import KeyPair
from hearthnet.services.alerts.service import AlertService
from tests.unit.ledger.conftest import Community, community, root  # noqa: F401 - fixtures
from tests.unit.services.ledger_bus import LedgerBus, ServiceHarness


class AlertsBus(LedgerBus):
    def __init__(self, community: Community, kp: KeyPair) -> None:
        super().__init__(community, kp)
        self.peers: dict[str, Any] = {}  # node id -> the AlertService that answers its alert.deliver
        self.members_fail = False

    async def other(self, cap: str, body: Any, *, caller: str, node: str | None) -> dict[str, Any]:
        log = self.community.log
        if cap == "community.members.list":
            if self.members_fail:
                raise HearthNetError("not_found", "no governance worker")
            return {"output": {"members": [{"node_id": n, "display_name": f"name-{n[8:12]}"}
                                           for n in log.view.members]}}
        if cap == "community.peers.list":
            return {"output": {"peers": [{"node_id_full": n} for n in self.peers]}}
        if cap == "alert.deliver" and self.peers.get(node) is not None:
            handler = {c.name: c.handler for c in self.peers[node].capabilities()}[cap]
            return await handler(Request(capability=cap, version="1.0", body=body, caller=caller))
        return await super().other(cap, body, caller=caller, node=node)


class Alerts(ServiceHarness):
    """One node's alert service + helpers to call it as its owner (or as someone else)."""

    def __init__(self, community: Community, kp: KeyPair) -> None:
        super().__init__(community, kp)
        self.bus = AlertsBus(community, kp)
        self.svc = AlertService(self.bus, kp.node_id_full)

    def catch_up(self) -> None:
        asyncio.run(self._catch_up())

    def send(self, **inp: Any) -> dict[str, Any]:
        return self.call("alert.send", {"headline": "Flood on Maple Street", **inp})["output"]

    def alerts(self, **inp: Any) -> list[dict[str, Any]]:
        return self.call("alert.list", inp)["output"]["alerts"]


@pytest.fixture
def make_alerts(community: Community):
    def make(kp: KeyPair | None = None) -> Alerts:
        a = Alerts(community, kp or community.root)
        a.catch_up()
        return a
    return make


@pytest.fixture
def anchor(make_alerts) -> Alerts:
    return make_alerts()
