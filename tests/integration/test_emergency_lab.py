"""The emergency detector end to end: three nodes in one community, each in its own
network namespace (hearthnet.testing.netns), plus a fourth namespace as the "internet"
(DNS on UDP 53, a generate_204 server and HTTPS on 443 with a certificate from the test's
own CA, which the nodes trust through `emergency.https_ca_file`:
hearthnet.testing.internet). Node 1's only internet probe is that HTTPS URL, so its mode
rests on a verified TLS handshake alone; nodes 2 and 3 probe all three. The internet's link
is taken down and brought back; every node goes degraded then offline and back online
within the spec's bounds, `status` shows it, the sync interval becomes 30 s and the
internet-only LLM model leaves the descriptor, and both are restored.

Probes point only at 10.231.0.4 (inside the lab). Waits are bounds (wait_for), not timed
assertions: online cadence 10 s + timeout 2 s, debounce 30 s, recovery 10 s of all-pass.
"""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from hearthnet.testing.netns import (CORE_WORKERS, MeshLab, forget_peers, form_community, invite_commands_missing,
                                     ip, lists_peers, unavailable_reason, wait_mesh)
from hearthnet.testing.waiting import wait_for
from hearthnet.testing.tlscerts import make_pki

pytestmark = pytest.mark.integration
if unavailable_reason():
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=unavailable_reason() or "")]

PREFIX = "hnemt"
NODES = (1, 2, 3)
NET = 4  # the "internet" namespace: no node runs there
NET_IP = "10.231.0.4"
LAN_LLM = "http://10.231.0.1:8080/v1"  # served in node 1's namespace: a LAN model
HTTPS = f"https:https://{NET_IP}/"
TARGETS = {1: f"{HTTPS},peers:any"}  # node 1: the https probe decides alone
DEFAULT_TARGETS = f"dns:{NET_IP},http204:http://{NET_IP}/generate_204,{HTTPS},peers:any"
BACKENDS = f"""
[[llm.backends]]
name = "openai"
url = "{LAN_LLM}"
model = "lan-model"

[[llm.backends]]
name = "openai"
url = "https://api.example.com/v1"
model = "cloud-model"
"""
MESH_SECONDS = 60.0
DOWN_SECONDS = 12 + 30 + 2 + 2 + 15  # first failing round, debounce, a round, timeout, slack
UP_SECONDS = 2 + 2 + 10 + 2 + 15  # next round, timeout, 10 s all-pass, a round, slack


def _server(lab: MeshLab, k: int, host: str, *extra: str) -> subprocess.Popen:
    proc = lab.run(k, [sys.executable, "-m", "hearthnet.testing.internet", "--host", host, *extra],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=lab.node(1).env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshLab]:
    if (missing := invite_commands_missing()):
        pytest.skip(f"blocked: this install lacks {', '.join(missing)}")
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    cert, key = pki.server("internet", (NET_IP,))
    with MeshLab(4, PREFIX) as lab:
        for k in NODES:
            lab.node(k, env={"HEARTHNET_EMERGENCY_PROBE_TARGETS": TARGETS.get(k, DEFAULT_TARGETS),
                             "HEARTHNET_EMERGENCY_HTTPS_CA_FILE": str(pki.ca_file)})
        ids = form_community(SimpleNamespace(node=lab.node, ks=NODES, stop_nodes=lab.stop_nodes))
        for k in NODES:
            forget_peers(lab.node(k))
            lab.node(k).add_config(BACKENDS)
        _server(lab, NET, NET_IP, "--tls-cert", str(cert), "--tls-key", str(key))
        _server(lab, 1, "10.231.0.1", "--llm")
        lab.launch_all(NODES)
        for k in NODES:
            lab.node(k).wait_healthy(CORE_WORKERS + ("emergency", "llm"))
        state = wait_mesh({k: lab.node(k) for k in NODES}, lists_peers(ids), MESH_SECONDS)
        assert all(d.done_at is not None for d in state.values()), {k: d.doc for k, d in state.items()}
        yield lab


def _status(lab: MeshLab, k: int) -> dict[str, Any]:
    return lab.node(k).cli_json("status")


def _em(lab: MeshLab, k: int) -> dict[str, Any]:
    return _status(lab, k).get("emergency") or {}


def _llm_models(doc: dict[str, Any]) -> list[str]:
    for c in doc.get("capabilities") or []:
        if c.get("name") == "llm.chat" and c.get("local"):
            return [m["name"] for m in c["params"]["models"]]
    return []


def _all(lab: MeshLab, mode: str, timeout: float) -> None:
    for k in NODES:
        wait_for(lambda: _em(lab, k).get("mode") == mode, timeout=timeout, interval=1.0,
                 message=lambda: f"node{k} {mode}: {_em(lab, k)}")


def test_internet_taken_away_and_brought_back(lab: MeshLab) -> None:
    _all(lab, "online", UP_SECONDS)  # a node starts online; its first rounds must agree
    for k in NODES:
        doc = _status(lab, k)
        em = doc["emergency"]
        assert em["mode"] == "online" and em["effects"]["sync_interval_seconds"] == 300, em
        assert all(p["ok"] for p in em["probes"] if p["deciding"]), em["probes"]
        assert [p["ok"] for p in em["probes"] if p["target"] == HTTPS] == [True], em["probes"]
        # counted in the detector's last round, which may have run before the mesh formed:
        # the next round (10 s cadence + 2 s timeout) counts both peers
        wait_for(lambda: _em(lab, k).get("peers_reachable") == 2, timeout=10 + 2 + 10, interval=1.0,
                 message=lambda: f"node{k} counts both peers: {_em(lab, k)}")
        wait_for(lambda: _llm_models(_status(lab, k)) == ["lan-model", "cloud-model"], timeout=30,
                 message=f"node{k}'s llm descriptor")

    ip("-n", lab.ns(NET), "link", "set", "veth0", "down")
    try:
        _all(lab, "degraded", 12 + 2 + 10)  # the first failing round degrades (debounce to offline)
        _all(lab, "offline", DOWN_SECONDS)
        for k in NODES:
            doc = _status(lab, k)
            em = doc["emergency"]
            assert em["applied"]["sync_interval_seconds"] == 30
            assert em["effects"]["llm_internet_backends"] == "withdrawn"
            assert em["peers_reachable"] == 2  # the LAN is still there: reported beside the mode
            # A dead link times out, or is unreachable once the neighbour entry has failed.
            assert {p["error"] for p in em["probes"] if p["deciding"]} <= {"timeout", "unreachable"}, em
            wait_for(lambda: _llm_models(_status(lab, k)) == ["lan-model"], timeout=30,
                     message=f"node{k} withdraws the internet-only model")
            human = lab.node(k).cli("status").stdout
            assert "offline" in human and "sync every 30 s" in human
    finally:
        ip("-n", lab.ns(NET), "link", "set", "veth0", "up")

    _all(lab, "online", UP_SECONDS)
    for k in NODES:
        em = _em(lab, k)
        assert em["applied"]["sync_interval_seconds"] == 300
        wait_for(lambda: _llm_models(_status(lab, k)) == ["lan-model", "cloud-model"], timeout=30,
                 message=f"node{k} restores the internet-only model")
