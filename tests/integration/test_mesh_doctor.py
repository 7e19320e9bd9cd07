"""`hearthnet doctor --mesh` on real nodes (issue 11 point 3): alice, bob and carol joined
by invite on one host (multicast off, peered with `peer add`). alice's doctor --mesh
shows all three verified with their version and online state; with carol stopped, carol
is "not heard from". A stranger's call to node.health is refused. dave, a member who was
invited and joined but never ran a node, is played by a small test server holding dave's
real key (hearthnet.testing.hostile_peer): it serves a manifest offering node.health and
answers with a summary it altered after signing (a failing check hidden) — alice shows
dave as "unverified" and none of what it claims. Revoked, dave is refused and no longer
asked."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hearthnet import health
from hearthnet.identity.keys import short_node_id
from hearthnet.identity.manifest import DEFAULT_POLICY
from hearthnet.testing.hostile_peer import HostilePeer, capability, refused
from hearthnet.testing.nodes import Node, join_by_invite, key_of, start_three
from hearthnet.testing.peer_abuse import wait_until_member
from hearthnet.testing.waiting import wait_for
from hearthnet.version import __version__

pytestmark = pytest.mark.integration
WORKERS = ("broker", "gateway", "ledger", "discovery", "governance", "emergency")
FAILING = [{"name": "disk_space", "status": "fail", "message": "0.1 GB free", "fix": "free some disk space"}]


class TamperingMember(HostilePeer):
    """A member's key, answering node.health with a genuine signed summary that it then
    alters (hides the failing check): what a compromised relay or a lying node would do."""

    async def _any(self, request: web.Request) -> web.Response:
        if request.path != "/bus/v1/call" or request.headers.get("X-HearthNet-Capability") != "node.health":
            return await super()._any(request)
        self.requests.append((request.method, request.path))
        nonce = (await request.json())["input"]["nonce"]
        facts = {"display_name": "dave", "community_id": self.community_id, "version": __version__,
                 "profile": "hearth", "uptime_seconds": 1, "online_state": "online",
                 "sync": {"peers": 1, "lag_seconds": 1.0}, "event_log": {"head": 1, "count": 1},
                 "checks_run": 1, "failing_checks": FAILING}
        summary = health.build_summary(self.kp, facts, nonce=nonce)
        summary.update(failing_checks=[], healthy=True)  # after signing
        return web.json_response({"output": summary, "meta": {}})


def mesh_doctor(node: Node, *extra: str) -> tuple[int, dict[str, Any]]:
    r = node.cli("doctor", "--mesh", "--json", "--timeout", "5", *extra)
    doc = json.loads(r.stdout)
    return r.returncode, doc


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """By node id (joiners' display names come from their hostname: several may share one)."""
    return {m["node_id"]: m for m in doc["members"]}


def line_of(text: str, node_id: str) -> str:
    short = short_node_id(node_id)
    return next(line for line in text.splitlines() if short in line)


def offers_health(node: Node, node_ids: set[str]) -> bool:
    caps = node.api("/api/v1/capabilities")["capabilities"]
    have = {c["node_id"] for c in caps if c["name"] == "node.health" and not c["local"]}
    return node_ids <= have


def test_doctor_mesh_verified_not_heard_from_tampered_and_refused(make_node, tmp_path: Path) -> None:
    a, b, c, ids = start_three(make_node, WORKERS)
    A, B, C = ids["alice"], ids["bob"], ids["carol"]
    community = a.api("/api/v1/status")["community"]["community_id"]
    # node.health is in every manifest like any other capability, so alice routes to both
    wait_for(lambda: offers_health(a, {B, C}), 60, message="alice routes node.health to bob and carol")
    manifest = a.api("/manifest")
    assert any(cap["name"] == "node.health" and cap["version"] == "1.0" for cap in manifest["capabilities"])
    # the owner's targeted call: a malformed X-HearthNet-Node is bad_request, never a 500
    status, raw = a.request("/bus/v1/call", "POST", {"params": {}, "input": {}},
                            {"X-HearthNet-Capability": "node.health", "X-HearthNet-Node": "ed25519:nope"})
    assert status == 400 and json.loads(raw)["error"] == "bad_request", raw

    # --- all three up: verified, with version and online state, in one table
    code, doc = wait_for(lambda: (lambda r: r if r[1]["counts"]["verified"] == 3 else None)(mesh_doctor(a)),
                         60, message="alice's doctor --mesh verifies all three")
    by = rows(doc)
    assert set(by) == {A, B, C} and doc["not_heard_from"] == []
    for node_id in (A, B, C):
        m = by[node_id]
        assert m["state"] == "verified" and m["up"] is True and m["reason"] is None, m
        assert m["version"] == __version__ and m["online_state"] == "online", m
        assert m["sync"]["peers"] == 2 and isinstance(m["event_log"]["count"], int), m
        assert all(set(f) == {"name", "status", "message", "fix"} for f in m["failing_checks"])
    assert by[A]["self"] and not by[B]["self"] and by[A]["display_name"] == "alice"
    unhealthy = [(n, m["failing_checks"]) for n, m in by.items() if not m["healthy"]]
    assert code == (1 if unhealthy else 0), (code, unhealthy)  # exit code follows the checks
    table = a.cli("doctor", "--mesh")
    assert "3 verified, 0 unverified, 0 not heard from" in table.stdout, table.stdout + table.stderr
    assert table.returncode == code

    # --- a stranger (a key of no member) asking alice's node.health is refused
    with HostilePeer(tmp_path / "stranger", community) as stranger:
        assert refused(lambda: stranger.call(A, a.port, "node.health", {"params": {}, "input": {}})) == "unauthorized"

    # --- carol stopped: not heard from, the others still verified
    c.stop()
    code, doc = mesh_doctor(a)
    assert code == 1 and doc["not_heard_from"] == [C], doc
    by = rows(doc)
    assert by[C]["state"] == "not_heard_from" and by[C]["up"] is False and by[C]["reason"]
    assert by[B]["state"] == "verified" and by[A]["state"] == "verified"
    table = a.cli("doctor", "--mesh")
    assert table.returncode == 1 and "not heard from" in line_of(table.stdout, C)

    # --- dave, a joined member played by a server that tampers with its summary: unverified
    status, reply = a.call("community.log.append", {"params": {}, "input": {
        "event_type": "community.policy.updated",
        "data": {"policy": {**DEFAULT_POLICY, "min_signatures_to_revoke": 1}}}})  # alice alone may revoke
    assert status == 200, reply
    dave = make_node("dave")
    D = join_by_invite(a, dave)
    with TamperingMember(tmp_path / "as-dave", community, [capability("node.health")], kp=key_of(dave)) as fake:
        wait_until_member(a, fake.kp)
        a.peer_add(fake)
        wait_for(lambda: offers_health(a, {D}), 60, message="alice routes node.health to dave")
        code, doc = mesh_doctor(a)
        m = rows(doc)[D]
        assert code == 1 and m["state"] == "unverified" and m["up"] is None, m
        assert "signature" in m["reason"]
        # nothing it claims is shown as a fact
        assert m["healthy"] is None and m["failing_checks"] is None and m["version"] is None
        assert m["online_state"] is None and m["sync"] is None and m["event_log"] is None
        assert fake.asked("/bus/v1/call")
        table = a.cli("doctor", "--mesh")
        dave_line = line_of(table.stdout, D)
        assert "unverified" in dave_line and "not trusted" in dave_line

        # --- revoked: dave's own node.health call is refused, and dave is no longer asked
        done = a.cli_json("member", "revoke", D, "--reason", "compromised", "--yes")
        assert done["status"] == "revoked", done
        assert refused(lambda: fake.call(A, a.port, "node.health", {"params": {}, "input": {}})) == "revoked"
        code, doc = mesh_doctor(a)
        assert D not in rows(doc) and D not in doc["not_heard_from"]
