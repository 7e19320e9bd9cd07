"""`node.health@1.0`, served by the gateway process itself (README "Mesh doctor").

Why the gateway and not a worker of its own: everything the summary reports is already
in this process — the facts `status` assembles (supervisord's and the broker's view of
the workers, the event log head), the mesh's sync rounds and emergency mode
(gateway/mesh.py, nowhere else), and the device key that signs the manifest. A separate
worker would need a new internal capability just to read the mesh state back out of the
gateway, plus another ~30 MiB process. So the gateway connects one more DEALER to the
broker and announces itself as worker `gateway` with this one capability (the same
runtime every worker uses, minus the signal handling the gateway keeps for itself).
The broker then routes, traces and trust-checks it like any other: peers reach it as a
`member` capability through the peer API (strangers and revoked nodes are refused there,
before the body is read), it is listed in the node manifest like the rest, and the owner
calls it through the local API, targeted with `X-HearthNet-Node` (`doctor --mesh`).

Only checks of `hearthnet doctor` that are cheap and touch nothing outside run on demand
(ON_DEMAND_CHECKS): no backend probes, no peer clock probes, no socket binding, no chunk
re-hashing. The facts are cached FACTS_CACHE_SECONDS so a burst of callers costs one
gathering; each answer is signed afresh with the caller's nonce.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from hearthnet import health
from hearthnet.bus import protocol as P
from hearthnet.bus.service import Capability, Request
from hearthnet.bus.worker import WorkerRuntime
from hearthnet.bus.zmqloop import LoopDealer
from hearthnet.errors import HearthNetError
from hearthnet.gateway import introspect
from hearthnet.version import __version__

if TYPE_CHECKING:
    from hearthnet.config import Config
    from hearthnet.gateway.app import Gateway

log = logging.getLogger("hearthnet.gateway.health")

WORKER_NAME = "gateway"
FACTS_CACHE_SECONDS = 2.0
TRACE_WINDOW = 100  # as doctor's recent_error_rate
ON_DEMAND_CHECKS = ("config_valid", "keys_present", "keys_loadable", "community_present", "disk_space",
                    "llm_backend_configured", "embedding_available", "workers_healthy",
                    "at_least_one_capability", "recent_error_rate")
REQUEST_SCHEMA = {"type": "object", "properties": {"nonce": {"type": "string",
                                                               "maxLength": health.NONCE_MAX_CHARS}},
                  "additionalProperties": False}


# --------------------------------------------------------------------------- the facts


def sync_facts(mesh: Any, now: float | None = None) -> dict[str, Any]:
    """This node's gossip state from the mesh's last round with each current peer:
    `lag_seconds` is the age of the oldest last successful round (the peer we have
    heard from least recently), `failing` the peers whose last round failed."""
    now = time.time() if now is None else now
    peers = dict(getattr(mesh, "peers", {}) or {})
    last = dict(getattr(mesh, "last_sync", {}) or {})
    ok_ages, failing, never = [], [], 0
    for node, peer in peers.items():
        result = last.get(node)
        if result is None:
            never += 1
        elif result.ok:
            ok_ages.append(max(0.0, now - result.at))
        else:
            failing.append({"peer": peer.get("node_id_short") or node, "error": (result.error or "")[:200]})
    latest = max((r.at for n, r in last.items() if n in peers), default=None)
    return {"peers": len(peers), "lag_seconds": round(max(ok_ages), 1) if ok_ages else None,
            "last_round_seconds_ago": round(max(0.0, now - latest), 1) if latest is not None else None,
            "never_synced": never, "failing": failing[:16]}


def _prefilled_context(cfg: "Config", docs: dict[str, dict[str, Any]]) -> Any:
    """A DoctorContext for a node that is running (this one): `get` answers from the
    documents this process assembled, so no check calls the local API from inside the
    gateway. hearthnet.doctor is imported by the first health call, not at start
    (README "Lean processes")."""
    from hearthnet.doctor import DoctorContext

    class PrefilledContext(DoctorContext):
        def __init__(self) -> None:
            super().__init__(cfg)
            self._docs = docs
            self._running = True

        def get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
            if path not in self._docs:
                raise HearthNetError("not_found", f"{path} is not assembled for node.health")
            return self._docs[path]

    return PrefilledContext()


def failing_checks(cfg: "Config", docs: dict[str, dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(checks run, the failing ones) of ON_DEMAND_CHECKS, each run as `hearthnet doctor`
    runs it (a check that raises is reported as crashed, never raised)."""
    from hearthnet import doctor

    ctx = _prefilled_context(cfg, docs)
    results = [doctor._run(name, ctx) for name in ON_DEMAND_CHECKS if name in doctor.CHECKS]
    failing = [{"name": r.name, "status": r.status, "message": r.detail, "fix": r.fix}
               for r in results if r.status in ("fail", "warn", "crashed")]
    return len(results), failing


async def gather_facts(gw: "Gateway") -> dict[str, Any]:
    """Everything a summary reports but its signature, from this gateway."""
    workers, caps, ok = await introspect.broker_view(gw.bus)
    merged = await asyncio.to_thread(_merged_workers, gw, workers, ok)
    try:
        traces = await gw.bus.admin("traces", n=TRACE_WINDOW)
    except HearthNetError:
        traces = {"traces": []}
    docs = {"/api/v1/workers": {"workers": merged},
            "/api/v1/capabilities": {"capabilities": introspect.capability_entries(caps, gw.kp.node_id_full)},
            "/api/v1/traces": traces}
    checks_run, failing = await asyncio.to_thread(failing_checks, gw.cfg, docs)
    mesh = gw.mesh
    return {"display_name": gw.cfg.node.display_name, "community_id": gw.cfg.community.community_id,
            "version": __version__, "profile": gw.cfg.node.profile,
            "uptime_seconds": introspect.uptime(gw.started),
            "online_state": getattr(mesh, "mode", None),
            "sync": sync_facts(mesh), "event_log": await _event_log(gw),
            "checks_run": checks_run, "failing_checks": failing}


def _merged_workers(gw: "Gateway", workers: list[dict[str, Any]], ok: bool) -> list[dict[str, Any]]:
    try:
        procs = gw.supervisor.processes()
    except Exception as exc:  # noqa: BLE001 - supervisord gone is itself the finding
        log.warning("supervisord not answering for node.health", extra={"reason": repr(exc)})
        procs = []
    return introspect.merge_workers(procs, workers, ok, gw.supervisor)


async def _event_log(gw: "Gateway") -> dict[str, Any] | None:
    try:
        out = await gw.bus.call("community.log.heads", "1.0", {"params": {}, "input": {}},
                                caller=gw.kp.node_id_full, timeout=2, local_only=True)
    except HearthNetError:
        return None  # the ledger is restarting: the summary says so (null), doctor flags it
    o = out.get("output") or {}
    return {"head": o.get("head"), "count": o.get("count")}


# --------------------------------------------------------------------------- the service


class HealthService:
    name = "health"

    def __init__(self, gw: "Gateway") -> None:
        self.gw = gw
        self._facts: dict[str, Any] | None = None
        self._facts_at = float("-inf")
        self._lock = asyncio.Lock()

    def capabilities(self) -> list[Capability]:
        return [Capability(health.CAPABILITY, self.handle, request_schema=REQUEST_SCHEMA,
                           trust_required="member", timeout_seconds=10, max_concurrent=8,
                           idempotent=True)]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {}

    async def handle(self, req: Request) -> dict[str, Any]:
        nonce = req.input.get("nonce")
        if nonce is not None and (not isinstance(nonce, str) or len(nonce) > health.NONCE_MAX_CHARS):
            raise HearthNetError("bad_request", f"nonce must be text of at most {health.NONCE_MAX_CHARS} characters")
        t0 = time.monotonic()
        facts = await self.facts()
        return {"output": health.build_summary(self.gw.kp, facts, nonce=nonce),
                "meta": {"ms": round((time.monotonic() - t0) * 1000, 1)}}

    async def facts(self) -> dict[str, Any]:
        async with self._lock:  # one gathering for a burst of callers
            if self._facts is None or time.monotonic() - self._facts_at > FACTS_CACHE_SECONDS:
                self._facts = await gather_facts(self.gw)
                self._facts_at = time.monotonic()
            return self._facts


class EmbeddedWorker(WorkerRuntime):
    """A WorkerRuntime inside a process that has its own life: no signal handlers and
    no drain (the gateway stops itself), started and closed by its owner."""

    _beat: asyncio.Task | None = None

    async def start(self) -> None:
        await self.service.start()
        self.caps = {c.name: c for c in self.service.capabilities()}
        self.dealer = LoopDealer(self.endpoint, self._on_message, linger_ms=500)
        await self._announce()
        self._beat = asyncio.ensure_future(self._heartbeat())

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        for task in list(self.tasks.values()):
            task.cancel()
        with contextlib.suppress(Exception):
            self._emit({"t": P.BYE})
        if self.dealer is not None:
            self.dealer.close()
        await self.service.stop()


async def start_health(gw: "Gateway") -> EmbeddedWorker:
    """Announce node.health to the broker from this (the gateway's) loop."""
    worker = EmbeddedWorker(HealthService(gw), gw.cfg.paths.broker_workers_endpoint, WORKER_NAME)
    await worker.start()
    return worker
