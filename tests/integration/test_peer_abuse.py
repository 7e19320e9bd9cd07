"""The peer port under abuse (issue 6), on a real node: a stranger's signed-request flood,
1 000 half-sent TLS requests, 48 anonymous 16 MiB bodies. Each time a member's call and
the owner's local API still answer, and the gateway's descriptors and memory stay
bounded. Loopback only; attackers use their own 127.0.x.y source addresses."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, Iterator

import psutil
import pytest

from hearthnet.testing.nodes import Node, key_of
from hearthnet.testing.peer_abuse import huge_anonymous_bodies, member_pair, non_member_flood, slow_connections
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[Node, Node]]:
    with member_pair(tmp_path_factory.mktemp("abuse")) as nodes:
        yield nodes



def gateway_process(node: Node) -> psutil.Process:
    workers = node.api("/api/v1/workers")["workers"]
    return psutil.Process(next(w["pid"] for w in workers if w["name"] == "gateway"))


class Member:
    """B's signed calls to A, from 127.0.0.1."""

    def __init__(self, a: Node, b: Node, pins: Any) -> None:
        self.a = a
        self.target = key_of(a).node_id_full
        self.client = PeerClient(key_of(b), a.api("/api/v1/status")["community"]["community_id"],
                                 PinStore(pins))

    async def call(self, i: int) -> dict[str, Any]:
        return await self.client.call(self.target, ("127.0.0.1", self.a.port), "experimental.echo", "1.0",
                                      {"params": {}, "input": {"i": i}}, timeout=20)

    async def local_status(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.a.api, "/api/v1/status", timeout=20)


def test_a_strangers_signed_flood_does_not_fail_a_members_calls(pair, tmp_path):
    a, b = pair

    async def go():
        member = Member(a, b, tmp_path / "pins.json")
        flood = asyncio.ensure_future(non_member_flood("127.0.0.1", a.port, member.target,
                                                       member.client.community_id, concurrency=32))
        try:
            await asyncio.sleep(1.0)  # the flood is running
            results = []
            for i in range(15):  # paced under the member's 10/s soft limit
                results.append(await member.call(i))
                await asyncio.sleep(0.2)
            status = await member.local_status()
        finally:
            flood.cancel()
            await asyncio.gather(flood, return_exceptions=True)
            await member.client.close()
        return results, status, flood

    results, status, _ = asyncio.run(go())
    assert [r["output"] for r in results] == [{"i": i} for i in range(15)]  # none refused (no 429)
    assert status["node"]["node_id"] == key_of(a).node_id_full


def test_strangers_get_unauthorized_not_served(pair):
    a, _ = pair

    async def go():
        from hearthnet.testing.peer_abuse import FloodStats

        stats = FloodStats()
        task = asyncio.ensure_future(non_member_flood("127.0.0.1", a.port, key_of(a).node_id_full,
                                                      a.api("/api/v1/status")["community"]["community_id"],
                                                      concurrency=4, stats=stats))
        while sum(stats.statuses.values()) < 50:
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stats

    stats = asyncio.run(go())
    assert set(stats.statuses) == {401}


def test_a_thousand_half_sent_requests_leave_the_member_and_the_owner_served(pair, tmp_path):
    a, b = pair
    gateway = gateway_process(a)

    async def go():
        member = Member(a, b, tmp_path / "pins.json")
        stats, tasks = await slow_connections("127.0.0.1", a.port, 1000, per_address=50)
        try:
            deadline = time.monotonic() + 60
            while stats.opened + stats.refused < 1000 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            fds_under_attack = gateway.num_fds()
            out = await member.call(1)
            status = await member.local_status()
            # Every half-sent request is cut by the node (header deadline or eviction).
            while any(not t.done() for t in tasks) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            unfinished = sum(not t.done() for t in tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await member.client.close()
        return stats, fds_under_attack, out, status, unfinished

    stats, fds, out, status, unfinished = asyncio.run(go())
    assert out["output"] == {"i": 1}
    assert status["node"]["node_id"] == key_of(a).node_id_full
    assert stats.opened + stats.refused == 1000
    assert fds < 1000  # the guard caps peer connections (512 by default) well below the limit
    assert unfinished == 0 and stats.holding == 0


def test_huge_anonymous_bodies_are_refused_before_they_are_read(pair):
    a, _ = pair
    gateway = gateway_process(a)
    before = gateway.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], gateway.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcomes = asyncio.run(huge_anonymous_bodies("127.0.0.1", a.port, n=48))
    finally:
        done.set()
        sampler.join()
    assert "200" not in outcomes and sum(outcomes.values()) == 48
    assert peak[0] - before < 200 * 1024 * 1024, (before, peak[0], outcomes)
    assert a.api("/api/v1/status")["node"]["node_id"] == key_of(a).node_id_full
    # a signed stranger with a body over the cap: refused from its headers too
    status, data = a.request("/bus/v1/call", "POST", b"x" * 100, {"X-HearthNet-Capability": "x.y"},
                             peer=True)
    assert status == 400 and json.loads(data)["error"] == "bad_request"
