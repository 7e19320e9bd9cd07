"""gateway/health.py: the facts of node.health (sync state, the on-demand doctor checks)
and the capability itself, with a stand-in gateway (no processes)."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from hearthnet import health
from hearthnet.bus.service import Request
from hearthnet.config import load_config
from hearthnet.errors import HearthNetError
from hearthnet.gateway import health as gwhealth
from hearthnet.identity import keys
from hearthnet.sync import SyncResult
from tests.unit.xdg_fixture import isolated_xdg  # noqa: F401 - autouse


def mesh(peers: dict[str, Any], last: dict[str, SyncResult], mode: str | None = "online") -> SimpleNamespace:
    return SimpleNamespace(peers=peers, last_sync=last, mode=mode)


def test_sync_facts_report_the_oldest_good_round_failures_and_peers_never_synced() -> None:
    now = 1000.0
    peers = {"a": {"node_id_short": "A"}, "b": {"node_id_short": "B"}, "c": {}, "d": {}}
    last = {"a": SyncResult(peer="a", ok=True, at=990.0), "b": SyncResult(peer="b", ok=True, at=700.0),
            "c": SyncResult(peer="c", ok=False, error="connection refused", at=995.0),
            "gone": SyncResult(peer="gone", ok=True, at=1.0)}  # no longer a peer: ignored
    s = gwhealth.sync_facts(mesh(peers, last), now=now)
    assert s == {"peers": 4, "lag_seconds": 300.0, "last_round_seconds_ago": 5.0, "never_synced": 1,
                 "failing": [{"peer": "c", "error": "connection refused"}]}


def test_sync_facts_without_a_mesh_or_peers() -> None:
    assert gwhealth.sync_facts(None)["peers"] == 0
    assert gwhealth.sync_facts(mesh({}, {}))["lag_seconds"] is None


def docs(workers: list[dict[str, Any]] | None = None, caps: list[dict[str, Any]] | None = None,
         traces: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"/api/v1/workers": {"workers": workers if workers is not None else
                                [{"name": "ledger", "state": "RUNNING"}]},
            "/api/v1/capabilities": {"capabilities": caps if caps is not None else
                                     [{"name": "node.health", "version": "1.0", "local": True}]},
            "/api/v1/traces": {"traces": traces or []}}


def test_only_cheap_checks_run_and_node_checks_read_the_given_documents() -> None:
    cfg = load_config()  # no key, no community: those checks fail with their fix
    run, failing = gwhealth.failing_checks(cfg, docs())
    assert run == len(gwhealth.ON_DEMAND_CHECKS)
    names = {c["name"] for c in failing}
    assert {"keys_present", "community_present"} <= names
    assert not names & {"workers_healthy", "at_least_one_capability", "recent_error_rate"}
    assert all(c["fix"] for c in failing if c["status"] == "fail")
    # probes, socket binds and chunk re-hashing are never on demand
    assert not set(gwhealth.ON_DEMAND_CHECKS) & {"llm_backend_reachable", "clock_sanity", "mdns_socket",
                                                  "udp_multicast", "blob_store", "transport_port"}


def test_a_stopped_worker_and_an_error_rate_show_as_failing_checks() -> None:
    cfg = load_config()
    traces = [{"result": "internal_error"}] * 5 + [{"result": "ok"}] * 5
    _, failing = gwhealth.failing_checks(cfg, docs(workers=[{"name": "llm_00", "state": "FATAL"}], traces=traces))
    by_name = {c["name"]: c for c in failing}
    assert by_name["workers_healthy"]["status"] == "fail" and "llm_00 FATAL" in by_name["workers_healthy"]["message"]
    assert "hearthnet log --component llm_00" in by_name["workers_healthy"]["fix"]
    assert by_name["recent_error_rate"]["status"] == "fail"


class FakeBus:
    def __init__(self) -> None:
        self.calls = 0

    async def admin(self, op: str, **args: Any) -> dict[str, Any]:
        if op == "workers":
            return {"workers": []}
        if op == "caps":
            return {"capabilities": []}
        return {"traces": []}

    async def call(self, cap: str, version: str, body: Any, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        assert cap == "community.log.heads"
        return {"output": {"head": 9, "count": 14}}


def fake_gateway() -> SimpleNamespace:
    cfg = load_config()
    supervisor = SimpleNamespace(processes=lambda: [], log_tail=lambda name: [])
    return SimpleNamespace(cfg=cfg, bus=FakeBus(), supervisor=supervisor, kp=keys.generate(),
                           mesh=mesh({}, {}, mode="offline"), started=time.monotonic())


def test_the_capability_answers_a_signed_summary_with_the_callers_nonce() -> None:
    gw = fake_gateway()
    svc = gwhealth.HealthService(gw)
    [cap] = svc.capabilities()
    assert (cap.name, cap.version, cap.trust_required) == ("node.health", "1.0", "member")

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        one = await svc.handle(Request("node.health", "1.0", {"input": {"nonce": "abc"}}))
        two = await svc.handle(Request("node.health", "1.0", {"input": {"nonce": "def"}}))
        return one, two

    one, two = asyncio.run(go())
    doc = one["output"]
    assert health.verify_summary(doc, node_id=gw.kp.node_id_full, community_id=None, nonce="abc").verified
    assert doc["online_state"] == "offline" and doc["event_log"] == {"head": 9, "count": 14}
    assert doc["healthy"] is False  # no key, no community in this config
    assert two["output"]["nonce"] == "def" and gw.bus.calls == 1  # facts cached, signed afresh


@pytest.mark.parametrize("nonce", [7, "x" * 129, ["n"]])
def test_a_bad_nonce_is_bad_request(nonce: Any) -> None:
    svc = gwhealth.HealthService(fake_gateway())
    with pytest.raises(HearthNetError) as err:
        asyncio.run(svc.handle(Request("node.health", "1.0", {"input": {"nonce": nonce}})))
    assert err.value.code == "bad_request"
