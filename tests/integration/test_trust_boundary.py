"""The membership boundary through real nodes (issue 6): a stranger that claims our
community (its id is public) is never a peer, a route or a sync partner, and node-internal
capabilities never leave the node, even while the local ledger is stopped."""
from __future__ import annotations

import os
import signal
import time

import pytest

from hearthnet.testing.hostile_peer import HostilePeer, capability, refused
from hearthnet.testing.nodes import Node
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
ALL = ("broker", "gateway", "ledger", "discovery")


@pytest.fixture
def founder(tmp_path):
    node = Node(tmp_path / "a", "a")
    node.env["HEARTHNET_WORKERS_ECHO"] = "true"
    node.init()
    node.start(wait_workers=ALL)
    try:
        yield node
    finally:
        node.cleanup()


def worker_pid(node: Node, program: str) -> int:
    return next(w["pid"] for w in node.api("/api/v1/workers")["workers"] if w["program"] == program)


def test_a_stranger_claiming_our_community_gets_nothing(founder, tmp_path):
    status = founder.api("/api/v1/status")
    our_id, community = status["node"]["node_id"], status["community"]["community_id"]
    caps = [capability("community.members.get"), capability("experimental.echo"), capability("llm.chat")]
    with HostilePeer(tmp_path / "stranger", community, caps) as stranger:
        r = founder.cli("peer", "add", f"127.0.0.1:{stranger.port}")
        assert r.returncode == 0, r.stderr + r.stdout

        def refusal_noted():
            lines = founder.api("/api/v1/status").get("discovery", {}).get("diagnose", [])
            return [ln for ln in lines if "not a member" in ln]

        assert wait_for(refusal_noted, timeout=30, message="discovery to refuse the stranger")
        time.sleep(2)  # room for anything that would follow a (wrong) acceptance
        status = founder.api("/api/v1/status")
        assert status["peers"] == []
        entries = founder.api("/api/v1/capabilities")["capabilities"]
        assert all(e.get("node_id") != stranger.kp.node_id_full for e in entries)
        assert all(e.get("local", True) for e in entries)
        assert stranger.asked("/sync") == [] and stranger.asked("/bus") == []  # nothing pushed or pulled

        # Its own signed requests are refused too.
        echo = {"params": {}, "input": {"x": 1}}
        assert refused(lambda: stranger.call(our_id, founder.port, "experimental.echo", echo)) == "unauthorized"
        assert refused(lambda: stranger.sync_heads(our_id, founder.port)) == "unauthorized"

        # With the ledger stopped, nobody else decides who is a member.
        ledger = worker_pid(founder, "ledger")
        os.kill(ledger, signal.SIGSTOP)
        try:
            assert refused(lambda: stranger.call(our_id, founder.port, "experimental.echo", echo)) == "unauthorized"
            assert founder.api("/api/v1/status")["node"]["node_id"] == our_id  # the owner still gets answers
        finally:
            os.kill(ledger, signal.SIGCONT)
