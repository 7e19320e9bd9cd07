"""The peer port's body budget on a real node (issue 6 point 4): a member sending many
large bodies at once cannot make the gateway hold more than its budget of bodies. The
node runs with a 32 MiB budget (the one abusing member may use all of it: the per-sender
share is covered by tests/unit/gateway/test_body_budget.py); 40 signed 8 MiB calls
arrive 6 a second (under the member's rate limit), each kept 5 s by the echo worker, so
at most 3 are held at once (3 × 8 MiB fits in 32 MiB, 4 do not) and most wait past the
5 s wait: they get a signed `capacity_exceeded`, the rest are served. The gateway's
memory grows by a bounded multiple of the budget, and a member's small call and the
owner's status answer during and after the flood."""
from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from hearthnet.gateway.bodybudget import MiB
from hearthnet.testing.nodes import Node, key_of
from hearthnet.testing.rss import PeakRss
from hearthnet.testing.peer_abuse import member_large_bodies, member_pair

from tests.integration.test_peer_abuse import Member, gateway_process

pytestmark = pytest.mark.integration

BUDGET_MIB = 32
BODY = 8 * MiB
CALLS = 40
# An admitted 8 MiB call lives in the gateway as ~7 copies at its peak (the raw bytes,
# their decoded text, the parsed input, the bus message out and back, the reply object,
# its JSON, the TLS records), and large buffers go back to the system when freed
# (bodybudget.return_large_buffers_to_os), so the bodies the budget admits cost ~6-7 × the
# budget (measured: +180-200 MiB here). Bound: 10 × the budget + 64 MiB. Without the
# budget (all 40 served, ~30 in flight) the gateway grew by ~790 MiB.
RSS_BOUND = 10 * BUDGET_MIB * MiB + 64 * MiB


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[Node, Node]]:
    budget = {"HEARTHNET_TRANSPORT_PEER_BODY_BUDGET_MIB": str(BUDGET_MIB),
              "HEARTHNET_TRANSPORT_PEER_BODY_PER_SENDER_MIB": str(BUDGET_MIB)}
    with member_pair(tmp_path_factory.mktemp("bodies"), env=budget) as nodes:
        yield nodes


def test_many_large_member_bodies_stay_within_the_budget(pair, tmp_path):
    a, b = pair
    rss = PeakRss({"gateway": gateway_process(a).pid})  # the kernel's own peak (VmHWM): no sample missed

    async def go():
        member = Member(a, b, tmp_path / "pins.json")
        flood = asyncio.ensure_future(member_large_bodies(
            "127.0.0.1", a.port, key_of(b), member.target, member.client.community_id,
            n=CALLS, size=BODY, hold_ms=5000))
        try:
            await asyncio.sleep(2.0)  # the budget is full, others are waiting
            during = await member.call(1)  # a small body is never counted: served at once
            status_during = await member.local_status()
            outcomes = await flood
            after = await member.call(2)
            status_after = await member.local_status()
        finally:
            flood.cancel()
            await asyncio.gather(flood, return_exceptions=True)
            await member.client.close()
        return outcomes, during, status_during, after, status_after

    rss.start()
    try:
        outcomes, during, status_during, after, status_after = asyncio.run(go())
    finally:
        grew = rss.growth()["gateway"]
    assert sum(outcomes.values()) == CALLS
    assert outcomes["200"] >= 1, outcomes
    refused = outcomes["429:capacity_exceeded"]
    assert refused >= 1, outcomes
    # A refused upload may also see its connection closed before the reply is read.
    # Connection failures are named "<class>[:<errno>]", e.g. "ClientOSError:ECONNRESET".
    closed = sum(count for outcome, count in outcomes.items()
                 if outcome.split(":")[0] in ("ClientOSError", "ServerDisconnectedError"))
    assert outcomes["200"] + refused + closed == CALLS, outcomes
    assert grew < RSS_BOUND, (grew, RSS_BOUND, outcomes)
    assert during["output"] == {"i": 1} and after["output"] == {"i": 2}
    node_id = key_of(a).node_id_full
    assert status_during["node"]["node_id"] == node_id == status_after["node"]["node_id"]
