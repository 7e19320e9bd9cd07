"""find_holders with a fake bus: file.list fan-out to the remote providers the broker
lists, the advertise index, ledger advertisements; one failing peer fails nothing."""
from __future__ import annotations

import asyncio
from typing import Any

from hearthnet.blobs.holders import find_holders
from hearthnet.errors import HearthNetError

CID = "blake3:" + "ab" * 32
OTHER = "blake3:" + "cd" * 32
SELF = "node-self"


def cap(name: str, node: str, local: bool = False) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "local": local, "node_id": node}


def advert(author: str, cid: str = CID) -> dict[str, Any]:
    return {"event_type": "file.cid.advertised", "author": author, "data": {"cid": cid, "sizes_bytes": 10}}


class FakeBus:
    def __init__(self, *, caps: list[dict[str, Any]] | None, lists: dict[str, Any], events: list[dict[str, Any]] | None):
        self.caps, self.lists, self.events = caps, lists, events
        self.calls: list[tuple[str, Any, str | None, str]] = []

    async def admin(self, op: str, **_: Any) -> dict[str, Any]:
        assert op == "caps"
        if self.caps is None:
            raise HearthNetError("partition", "the broker did not answer")
        return {"capabilities": self.caps}

    async def call(self, cap_name: str, version: str, body: Any, *, caller: str = "", node: str | None = None,
                   timeout: float | None = None, **_: Any) -> dict[str, Any]:
        self.calls.append((cap_name, body["input"], node, caller))
        if cap_name == "community.log.events":
            if self.events is None:
                raise HearthNetError("timeout", "ledger busy")
            return {"output": {"events": self.events}, "meta": {}}
        answer = self.lists[node]
        if answer == "hang":
            await asyncio.Event().wait()
        if isinstance(answer, Exception):
            raise answer
        return {"output": {"cids": answer, "entries": []}, "meta": {}}


def standard_bus(**over: Any) -> FakeBus:
    caps = [cap("file.list", SELF, local=True), cap("file.read", SELF, local=True)]
    for node in ("A", "B", "C", "H"):
        caps += [cap("file.list", node), cap("file.read", node)]
    caps.append(cap("file.read", "D"))  # reachable, offers no file.list
    lists = {"A": [CID], "B": [OTHER], "C": HearthNetError("timeout", "slow"), "H": "hang"}
    events = [advert("B"), advert("D"), advert("E"), advert(SELF), advert("F", OTHER), {"junk": 1}]
    args: dict[str, Any] = {"caps": caps, "lists": lists, "events": events}
    args.update(over)
    return FakeBus(**args)


def test_holders_best_first_and_only_reachable() -> None:
    bus = standard_bus()
    found = asyncio.run(find_holders(bus, CID, self_id=SELF, known=["C", SELF], timeout=0.1))
    # A listed it now; C is in the advertise index (its file.list failed: no evidence
    # against it); D advertised in the ledger; B answered without it; E is unreachable;
    # H hangs (timed out); F advertised another CID; self never.
    assert found == ["A", "C", "D"]
    listed = {node for name, inp, node, _ in bus.calls if name == "file.list"}
    assert listed == {"A", "B", "C", "H"}, "only remote providers of file.list are asked"
    assert all(inp == {"prefix": CID} for name, inp, _, _ in bus.calls if name == "file.list")
    ledger = [c for c in bus.calls if c[0] == "community.log.events"]
    assert ledger == [("community.log.events", {"event_types": ["file.cid.advertised"]}, SELF, SELF)]


def test_without_the_broker_caps_known_and_ledger_are_used() -> None:
    bus = standard_bus(caps=None)
    found = asyncio.run(find_holders(bus, CID, self_id=SELF, known=["K"]))
    assert found == ["K", "E", "D", "B"]
    assert not [c for c in bus.calls if c[0] == "file.list"]


def test_a_failing_ledger_still_gives_the_fan_out() -> None:
    bus = standard_bus(events=None)
    assert asyncio.run(find_holders(bus, CID, self_id=SELF, timeout=0.1)) == ["A"]
