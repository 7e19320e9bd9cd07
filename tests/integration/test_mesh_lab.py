"""Several real nodes on a private LAN of network namespaces (hearthnet.testing.netns):
`scripts/mesh-lab` end to end, the lab's isolation and teardown, and what a node does with
its neighbours — discovery by UDP and by mDNS, nodes of other communities, a capability
served by another node, the event log reaching a third node, a node killed outright, and a
partition.

Every lab here uses the prefix `hnlabt` (scripts/mesh-lab's default is `hnlab`), so a lab
someone keeps running by hand is never touched. Tests that need one community of several
nodes join them by invite (`hearthnet id`, `invite create`, `invite redeem`) and skip,
saying so, on an install without those commands. Sync rounds are read from each node's
gateway log ("sync round" records), which is where a node reports them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from hearthnet.testing.netns import (
    CORE_WORKERS,
    LabError,
    LabNode,
    MeshLab,
    found,
    forget_peers,
    form_community,
    invite_commands_missing,
    ip,
    lab_namespaces,
    lists_peers,
    remove_lab,
    sees_foreign,
    unavailable_reason,
    wait_mesh,
)
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
if unavailable_reason():
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=unavailable_reason() or "")]

REPO = Path(__file__).resolve().parents[2]
PREFIX = "hnlabt"
MESH_SECONDS = 60.0  # readiness bound, not a timing assertion: waits end as soon as it holds
SYNC_SECONDS = 45.0


def _invites_missing() -> str | None:
    missing = invite_commands_missing()
    return f"blocked: this install lacks {', '.join(missing)}" if missing else None


def _mesh_lab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / "mesh-lab"), "--prefix", PREFIX, *args],
                          capture_output=True, text=True, timeout=timeout)


def _lab_processes() -> list[int]:
    """Processes whose command line or environment names the lab's directory."""
    out = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"/tmp/{PREFIX}/".encode() in cmd + env:
            out.append(pid)
    return out


def _table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        parts = [p for p in line.split("  ") if p.strip()]
        if parts and parts[0].startswith("node") and "10.231.0." in line:
            rows[parts[0].strip()] = [p.strip() for p in parts]
    return rows


# --------------------------------------------------------------------------- scripts/mesh-lab


def test_mesh_lab_three_nodes_discover_each_other_and_leave_nothing_behind() -> None:
    if (reason := _invites_missing()):
        pytest.skip(reason)
    r = _mesh_lab("--nodes", "3", "--bench")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = _table_rows(r.stdout)
    assert set(rows) == {"node1", "node2", "node3"}, r.stdout
    assert all(row[2] == "2/2" for row in rows.values()), r.stdout
    assert "discovery time:" in r.stdout
    assert lab_namespaces(PREFIX) == []
    assert not Path(f"/tmp/{PREFIX}").exists()
    assert _lab_processes() == []


def test_mesh_lab_separate_communities_see_each_other_as_foreign() -> None:
    r = _mesh_lab("--nodes", "3", "--separate")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = _table_rows(r.stdout)
    assert set(rows) == {"node1", "node2", "node3"}, r.stdout
    assert all(row[2] == "0 (foreign 2/2)" for row in rows.values()), r.stdout
    assert lab_namespaces(PREFIX) == []
    assert _lab_processes() == []


def test_mesh_lab_keep_leaves_the_lab_running_until_cleanup() -> None:
    try:
        r = _mesh_lab("--nodes", "2", "--separate", "--keep")
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(lab_namespaces(PREFIX)) == 3
        assert _lab_processes(), "the kept nodes are not running"
        assert f"ip netns exec {PREFIX}-n1 bash -c '. /tmp/{PREFIX}/n1/env.sh" in r.stdout
        status = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-n1", "bash", "-c",
                                 f". /tmp/{PREFIX}/n1/env.sh && {sys.executable} -m hearthnet status --json"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
    finally:
        r = _mesh_lab("--cleanup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab_namespaces(PREFIX) == []
    assert _lab_processes() == []


def test_mesh_lab_cleans_up_when_interrupted() -> None:
    proc = subprocess.Popen([str(REPO / "scripts" / "mesh-lab"), "--prefix", PREFIX, "--nodes", "3", "--separate"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # interrupt once the nodes run, mid-discovery
            seen.append(line)
            if line.startswith("launched"):
                break
        else:
            raise AssertionError("".join(seen))
        assert len(lab_namespaces(PREFIX)) == 4
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, "".join(seen) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lab_namespaces(PREFIX) == []
    assert _lab_processes() == []


def test_a_new_run_removes_what_a_crashed_run_left() -> None:
    # What a crashed run leaves: namespaces, a process inside one, the lab directory.
    remove_lab(PREFIX)
    for ns in (f"{PREFIX}-hub", f"{PREFIX}-n1", f"{PREFIX}-n7"):
        ip("netns", "add", ns)
    sleeper = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-n1", "sleep", "300"])
    Path(f"/tmp/{PREFIX}/n1").mkdir(parents=True, exist_ok=True)
    try:
        with MeshLab(2, PREFIX) as lab:
            sleeper.wait(timeout=10)  # killed by the new run (else this times out)
            assert sorted(lab.leftovers()) == sorted([f"{PREFIX}-hub", f"{PREFIX}-n1", f"{PREFIX}-n2"])
            assert not (lab.root / "n1").exists()
        assert lab_namespaces(PREFIX) == []
        assert not Path(f"/tmp/{PREFIX}").exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        remove_lab(PREFIX)


def test_a_busy_prefix_is_refused_and_left_alone() -> None:
    with MeshLab(2, PREFIX) as lab:
        with pytest.raises(LabError, match="in use"):
            with MeshLab(3, PREFIX):
                pass
        r = _mesh_lab("--nodes", "2", "--separate", timeout=60)
        assert r.returncode == 1 and "in use" in r.stderr, r.stdout + r.stderr
        r = _mesh_lab("--cleanup", timeout=60)
        assert r.returncode == 1 and "in use" in r.stderr, r.stdout + r.stderr
        assert sorted(lab.leftovers()) == sorted([lab.hub, lab.ns(1), lab.ns(2)])
        lab.check_isolated()
    assert lab_namespaces(PREFIX) == []


def test_lab_namespaces_reach_each_other_and_nothing_else() -> None:
    with MeshLab(2, PREFIX) as lab:
        lab.check_isolated()
        for k in lab.ks:
            assert ip("-n", lab.ns(k), "route", "get", "10.231.0.2").returncode == 0
            outside = ip("-n", lab.ns(k), "route", "get", "1.1.1.1", check=False)
            assert outside.returncode != 0 and "unreachable" in outside.stderr.lower()
        probe = lab.run(1, [lab.python, "-c", "import socket; s=socket.create_connection(('10.231.0.2', 9), 3)"],
                        stderr=subprocess.PIPE, text=True)
        _, err = probe.communicate(timeout=10)
        assert "ConnectionRefused" in err  # node 2's kernel answered over the bridge: the LAN works
        lab.cleanup()
        lab.cleanup()  # idempotent
        assert lab.leftovers() == []
    assert lab_namespaces(PREFIX) == []


# --------------------------------------------------------------------------- nodes of separate communities


def test_nodes_of_other_communities_are_seen_but_not_added() -> None:
    with MeshLab(3, PREFIX) as lab:
        short = {k: found(lab.node(k))["node_id_short"] for k in lab.ks}
        lab.launch_all()
        state = wait_mesh(lab.nodes, sees_foreign(short), MESH_SECONDS)
        for k, d in state.items():
            assert d.done_at is not None, f"node{k}: {d.doc}"
            assert d.peers == []
            assert any("2 nodes seen from another community" in r for r in d.diagnose), d.diagnose
            status = lab.node(k).api("/api/v1/status")
            assert status["peers"] == []
            assert any("another community" in r for r in status["discovery"]["diagnose"])


# --------------------------------------------------------------------------- one community of three


@pytest.fixture(scope="module")
def community() -> Iterator[tuple[MeshLab, dict[int, str]]]:
    """Three nodes in one community (node 1 founded it, 2 and 3 joined by invite); node 2
    alone runs the experimental.echo worker. Started, but not waited for."""
    if (reason := _invites_missing()):
        pytest.skip(reason)
    with MeshLab(3, PREFIX) as lab:
        for k in lab.ks:
            lab.node(k, echo=(k == 2))
        ids = form_community(lab)
        for k in lab.ks:
            forget_peers(lab.node(k))
        lab.launch_all()
        yield lab, ids


def ensure_mesh(lab: MeshLab, ids: dict[int, str]) -> None:
    """Start the nodes that are down and wait until every node lists the two others."""
    down = [k for k in lab.ks if not lab.node(k).running()]
    if down:
        lab.launch_all(down)
    state = wait_mesh(lab.nodes, lists_peers(ids), MESH_SECONDS)
    late = {k: d.doc for k, d in state.items() if d.done_at is None}
    assert not late, f"incomplete discovery: {late}"


def advertise(node: LabNode) -> dict[str, Any]:
    return node.append("file.cid.advertised", {"cid": "blake3:" + os.urandom(32).hex(), "sizes_bytes": 1})


def sync_rounds(node: LabNode, since: float) -> list[dict[str, Any]]:
    """The node's sync rounds that began after `since` (wall clock), oldest first, as its
    gateway logs them (one "sync round" record each: peer, ok, sent, received, ms, at)."""
    lines = node.api("/api/v1/logs?n=2000&component=gateway")["lines"]
    return [r for r in lines if r.get("msg") == "sync round" and float(r.get("at") or 0) >= since]


@pytest.mark.parametrize("mechanism", ["udp", "mdns"])
def test_nodes_find_each_other_by(community: tuple[MeshLab, dict[int, str]], mechanism: str) -> None:
    lab, ids = community
    lab.stop_nodes()
    try:
        for k in lab.ks:
            forget_peers(lab.node(k))  # else the peer cache finds them first
            lab.node(k).configure(udp=mechanism == "udp", mdns=mechanism == "mdns")
        lab.launch_all()
        state = wait_mesh(lab.nodes, lists_peers(ids), MESH_SECONDS)
        for k, d in state.items():
            assert d.done_at is not None, f"node{k}: {d.doc}"
            assert d.sources() == {mechanism: 2}, d.peers
            assert {p["host"] for p in d.peers} == {lab.addr(j) for j in lab.ks if j != k}
            mechs = d.doc["discovery"]["mechanisms"]
            assert mechs[mechanism]["up"] and mechs[mechanism]["interfaces"] == [f"veth0 ({lab.addr(k)})"]
            other = "mdns" if mechanism == "udp" else "udp"
            assert not mechs[other]["enabled"]
    finally:
        for k in lab.ks:
            lab.node(k).configure(udp=True, mdns=True)  # for the next start


def test_capability_call_from_node1_is_served_by_node2(community: tuple[MeshLab, dict[int, str]]) -> None:
    lab, ids = community
    ensure_mesh(lab, ids)
    n1 = lab.node(1)

    def echo_offered() -> bool:
        caps = n1.api("/api/v1/capabilities")["capabilities"]
        return any(c["name"] == "experimental.echo" and not c["local"] for c in caps)

    wait_for(echo_offered, 30, 0.3, message="node 1 offers node 2's experimental.echo")
    out = n1.capability("experimental.echo", {"text": "across the bridge"}, timeout=20)
    assert "across the bridge" in str(out)
    traces = n1.api("/api/v1/traces?n=5&capability=experimental.echo")
    assert traces["traces"][-1]["route"] == f"remote:{ids[2]}"


def test_event_on_node1_reaches_node3_after_a_sync_round(community: tuple[MeshLab, dict[int, str]]) -> None:
    lab, ids = community
    ensure_mesh(lab, ids)
    since = time.time()
    event = advertise(lab.node(1))  # a new event triggers a gossip round with every peer
    wait_for(lambda: event["event_id"] in lab.node(3).event_ids(), SYNC_SECONDS, 0.3,
             message="node 3 has node 1's event")
    pushed = [r for r in sync_rounds(lab.node(1), since) if r["peer"] == ids[3] and r["sent"]]
    pulled = [r for r in sync_rounds(lab.node(3), since) if r["received"]]
    relayed = [r for r in sync_rounds(lab.node(2), since) if r["peer"] == ids[3] and r["sent"]]
    assert pushed or pulled or relayed, "node 3 got the event outside any logged sync round"


def test_node_killed_outright_catches_up_after_restart(community: tuple[MeshLab, dict[int, str]]) -> None:
    lab, ids = community
    ensure_mesh(lab, ids)
    n3 = lab.node(3)
    assert n3.kill_tree() >= 5
    missed = advertise(lab.node(1))
    n3.start(wait_workers=CORE_WORKERS)
    wait_for(lambda: missed["event_id"] in n3.event_ids(), SYNC_SECONDS, 0.3,
             message="node 3 caught up after kill -9")
    assert lab.node(1).event_ids() <= n3.event_ids()


def test_partition_heals_in_one_sync_round(community: tuple[MeshLab, dict[int, str]]) -> None:
    lab, ids = community
    ensure_mesh(lab, ids)
    n1, n2, n3 = (lab.node(k) for k in lab.ks)
    before = n3.event_ids()
    n3.stop()
    a, b = advertise(n1), advertise(n2)
    union = n1.event_ids() | n2.event_ids()
    assert {a["event_id"], b["event_id"]} <= union
    since = time.time()
    n3.start(wait_workers=CORE_WORKERS)
    wait_for(lambda: union <= n3.event_ids(), SYNC_SECONDS, 0.3, message="node 3 has both sides' events")
    time.sleep(1.0)  # let the gossip rounds that follow finish and log
    # One round: each event node 3 missed reached it in the first round between it and a
    # peer (its own round on finding the peer, or the peer's gossip round pushing to it,
    # whichever came first, possibly both at once); no pair needed a round after that.
    carried = [(r["peer"], r["received"], r) for r in sync_rounds(n3, since) if r["received"]]
    for k in (1, 2):
        carried += [(ids[k], r["sent"], r) for r in sync_rounds(lab.node(k), since)
                    if r["peer"] == ids[3] and r["sent"]]
    assert sum(n for _, n, _ in carried) == len(union - before), carried
    for peer in {p for p, _, _ in carried}:
        pair = sorted((r for p, _, r in carried if p == peer), key=lambda r: r["at"])
        first_end = pair[0]["at"] + pair[0]["ms"] / 1000
        assert all(r["at"] < first_end for r in pair), f"a second round was needed: {pair}"
    # ... and all three logs are equal.
    wait_for(lambda: n1.event_ids() == n2.event_ids() == n3.event_ids(), SYNC_SECONDS, 0.3,
             message="all three logs equal")
