"""Prometheus metrics of the node (README "Metrics"): `GET /metrics` on the local API
(owner only, like every local route) and, opt-in, on a local TCP port for a scraper
(`[observability] metrics_port`, bound to `metrics_host`, 127.0.0.1 by default).

Nothing is counted across workers for this: at scrape time the gateway asks the same
sources `status` reads (the broker's worker/capability views and its call counters,
supervisord, the mesh, the ledger's heads, the file worker's `file.status`, the
emergency detector) into one snapshot, and a custom Collector turns that snapshot into
metric families. A scrape is a handful of bus round trips on the local API's own thread
and loop (local_thread.py), so it never queues in front of calls. prometheus_client is
imported only when a scrape is rendered.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator

from aiohttp import web

from hearthnet import logs
from hearthnet.errors import HearthNetError
from hearthnet.gateway import introspect

log = logging.getLogger("hearthnet.gateway.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SOURCE_TIMEOUT_SECONDS = 2.0
EMERGENCY_MODES = ("online", "degraded", "offline")  # hearthnet.emergency.state.MODES


class _NoTail:
    """merge_workers asks supervisord for the log tail of an unhealthy worker: a scrape
    has no use for it and skips that round trip."""

    def log_tail(self, name: str) -> list[str]:
        return []


async def _call(gw: Any, cap: str) -> dict[str, Any] | None:
    """One local capability's `output`, or None when its worker does not answer."""
    try:
        out = await gw.bus.call(cap, "1.0", {"params": {}, "input": {}}, caller=gw.kp.node_id_full,
                                timeout=SOURCE_TIMEOUT_SECONDS, local_only=True)
    except HearthNetError:
        return None
    o = out.get("output")
    return o if isinstance(o, dict) else None


async def _broker_metrics(gw: Any) -> dict[str, Any] | None:
    try:
        return await gw.bus.admin("metrics")
    except HearthNetError:
        return None


def _read_mesh(mesh: Any) -> dict[str, Any]:
    """The mesh's peers and sync state. The mesh lives on the gateway's main loop and this
    runs on the local API's thread: a dict changing size mid-read is simply read again."""
    if mesh is None:
        return {"peers": {}, "offered": {}, "last_sync": {}, "last_ok": {}}
    for _ in range(5):
        try:
            return {"peers": dict(mesh.peers), "offered": dict(mesh.offered),
                    "last_sync": dict(mesh.last_sync), "last_ok": dict(getattr(mesh, "last_ok", {}))}
        except RuntimeError:
            continue
    return {"peers": {}, "offered": {}, "last_sync": {}, "last_ok": {}}


def _db_bytes(state_dir: Path | None) -> int | None:
    """events.sqlite with its WAL: what the event log holds on disk."""
    if state_dir is None:
        return None
    total, found = 0, False
    for name in ("events.sqlite", "events.sqlite-wal"):
        try:
            total += os.stat(state_dir / name).st_size
            found = True
        except OSError:
            continue
    return total if found else None


async def snapshot(gw: Any) -> dict[str, Any]:
    """Everything a scrape reports, gathered concurrently from its sources (the broker's
    views first: the scrape's own calls are not counted in flight)."""
    ((workers, caps, broker_ok), calls), (procs, heads, blobs, emergency, members) = \
        await introspect.broker_first(
            asyncio.gather(introspect.broker_view(gw.bus), _broker_metrics(gw)),
            asyncio.to_thread(gw.supervisor.processes),
            _call(gw, "community.log.heads"), _call(gw, "file.status"), _call(gw, "emergency.status"),
            gw.membership())
    cfg = gw.cfg
    return {
        "now": time.time(), "version": _version(), "community": cfg.community.community_id or "",
        "broker_ok": broker_ok, "calls": calls, "capabilities": caps,
        "workers": introspect.merge_workers(procs, workers, broker_ok, _NoTail()),
        "mesh": _read_mesh(gw.mesh), "event_log": heads,
        "event_log_bytes": await asyncio.to_thread(_db_bytes, cfg.community.state_dir),
        "blob_store": blobs, "emergency": emergency,
        "members": len(members.get("members", [])) if isinstance(members, dict) else None,
        "log_lines_dropped": logs.dropped_lines(),
        "uptime_seconds": introspect.uptime(gw.started),
    }


def _version() -> str:
    from hearthnet.version import __version__

    return __version__


# ---- the collector ---------------------------------------------------------------------

class SnapshotCollector:
    """A prometheus_client Collector over one snapshot (see `snapshot`)."""

    def __init__(self, snap: dict[str, Any]) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Any]:

        for part in (self._node, self._calls, self._capabilities, self._workers, self._peers,
                     self._event_log, self._blobs, self._emergency):
            yield from part(self.snap)

    def _node(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        yield InfoMetricFamily("hearthnet_build", "This node's HearthNet version",
                               value={"version": s["version"]})
        yield GaugeMetricFamily("hearthnet_uptime_seconds", "Seconds since the gateway started",
                                value=s["uptime_seconds"])
        up = GaugeMetricFamily("hearthnet_source_up", "1 when this source answered the scrape",
                               labels=["source"])
        for source, ok in (("broker", s["broker_ok"]), ("ledger", s["event_log"] is not None),
                           ("file", s["blob_store"] is not None),
                           ("emergency", s["emergency"] is not None)):
            up.add_metric([source], 1 if ok else 0)
        yield up
        dropped = _counter("hearthnet_log_lines_dropped_total", "Log lines the gateway could not "
                                "write (full disk, closed stream) and dropped", labels=["component"])
        dropped.add_metric(["gateway"], s["log_lines_dropped"])
        yield dropped

    def _calls(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import HistogramMetricFamily

        calls = s["calls"] or {"buckets_ms": [], "capabilities": []}
        total = _counter("hearthnet_requests_total", "Calls through the broker by capability and "
                              "result (ok or the error code), since the broker started",
                              labels=["capability", "result"])
        hist = HistogramMetricFamily("hearthnet_request_duration_seconds",
                                     "Call latency through the broker, by capability",
                                     labels=["capability"])
        bounds = [b / 1000 for b in calls["buckets_ms"]]
        for c in calls["capabilities"]:
            for result, n in sorted(c["results"].items()):
                total.add_metric([c["capability"], result], n)
            running, buckets = 0, []
            for bound, n in zip([*map(_le, bounds), "+Inf"], c["buckets"]):
                running += n
                buckets.append((bound, running))
            hist.add_metric([c["capability"]], buckets, sum_value=c["sum_ms"] / 1000)
        yield total
        yield hist

    def _capabilities(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        inflight = GaugeMetricFamily("hearthnet_in_flight", "Calls running now, by capability and "
                                     "where the provider is", labels=["capability", "provider"])
        slots = GaugeMetricFamily("hearthnet_capacity", "Concurrent calls the providers take",
                                  labels=["capability", "provider"])
        rate = GaugeMetricFamily("hearthnet_capability_health_success_rate", "Success rate of the "
                                 "last calls (the routing health window)", labels=["capability", "provider"])
        agg: dict[tuple[str, str], list[float]] = {}
        for c in s["capabilities"]:
            key = (c["name"], "local" if c.get("local", True) else "remote")
            a = agg.setdefault(key, [0, 0, 1.0])
            a[0] += c.get("in_flight", 0)
            a[1] += c.get("max_concurrent", 0)
            a[2] = min(a[2], float(c.get("success_rate", 1.0)))
        for (name, where), (n, cap, ok) in sorted(agg.items()):
            inflight.add_metric([name, where], n)
            slots.add_metric([name, where], cap)
            rate.add_metric([name, where], ok)
        yield from (inflight, slots, rate)

    def _workers(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("hearthnet_worker_up", "1 when the worker runs and (bus workers) "
                               "heartbeats", labels=["worker", "program"])
        restarts = _counter("hearthnet_worker_restarts_total", "Times the worker came back after "
                                 "dying, since the broker started", labels=["worker", "program"])
        uptime = GaugeMetricFamily("hearthnet_worker_uptime_seconds", "Seconds since supervisord "
                                   "(re)started the worker", labels=["worker", "program"])
        served = _counter("hearthnet_worker_calls_total", "Calls a worker answered, by outcome",
                               labels=["worker", "program", "outcome"])
        for w in s["workers"]:
            labels = [w["name"], w["program"]]
            up.add_metric(labels, 1 if w["healthy"] else 0)
            restarts.add_metric(labels, w["restarts"])
            uptime.add_metric(labels, w["uptime_seconds"])
            served.add_metric([*labels, "ok"], w["served"])
            served.add_metric([*labels, "error"], w["errors"])
        yield from (up, restarts, uptime, served)

    def _peers(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        m = s["mesh"]
        counts: dict[tuple[str, str], int] = {}
        for node, (_kind, peer) in m["offered"].items():
            state = "member" if node in m["peers"] else "refused"
            key = (str(peer.get("source") or "unknown")[:32], state)
            counts[key] = counts.get(key, 0) + 1
        peers = GaugeMetricFamily("hearthnet_peers", "Peers discovery reported, by how they were "
                                  "found and whether they are routed (member) or refused",
                                  labels=["source", "state"])
        for (source, state), n in sorted(counts.items()):
            peers.add_metric([source, state], n)
        yield peers
        yield GaugeMetricFamily("hearthnet_nodes_online", "Member peers reachable now, plus this node",
                                value=len(m["peers"]) + 1)
        if s["members"] is not None:
            yield GaugeMetricFamily("hearthnet_community_members", "Members of the community",
                                    value=s["members"])
        yield from self._sync(s["now"], m)

    def _sync(self, now: float, m: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        age = GaugeMetricFamily("hearthnet_peer_sync_age_seconds", "Seconds since the last "
                                "successful sync round with the peer", labels=["peer"])
        ok = GaugeMetricFamily("hearthnet_peer_sync_ok", "1 when the last sync round with the "
                               "peer succeeded", labels=["peer"])
        received = GaugeMetricFamily("hearthnet_peer_sync_received_events", "Events the last "
                                     "sync round pulled from the peer (how far behind we were)",
                                     labels=["peer"])
        worst = 0.0
        for node, peer in sorted(m["peers"].items()):
            label = [str(peer.get("node_id_short") or node[:16])]
            last, at = m["last_sync"].get(node), m["last_ok"].get(node)
            if at is not None:
                age.add_metric(label, max(0.0, now - at))
                worst = max(worst, now - at)
            if last is not None:
                ok.add_metric(label, 1 if last.ok else 0)
                received.add_metric(label, last.received)
        yield from (age, ok, received)
        yield GaugeMetricFamily("hearthnet_sync_lag_seconds", "The largest time since a member "
                                "peer's last successful sync round (0 without peers)", value=max(0.0, worst))

    def _event_log(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        heads, community = s["event_log"], [s["community"]]
        if heads is not None:
            size = GaugeMetricFamily("hearthnet_event_log_size", "Events in the community log",
                                     labels=["community"])
            size.add_metric(community, int(heads.get("count") or 0))
            head = GaugeMetricFamily("hearthnet_event_log_lamport_head", "Highest lamport clock "
                                     "of the log", labels=["community"])
            head.add_metric(community, int(heads.get("head") or 0))
            yield from (size, head)
        if s["event_log_bytes"] is not None:
            size_b = GaugeMetricFamily("hearthnet_event_log_bytes", "Bytes of the event log on "
                                       "disk (SQLite with its WAL)", labels=["community"])
            size_b.add_metric(community, s["event_log_bytes"])
            yield size_b

    def _blobs(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        b = s["blob_store"]
        if b is None:
            return
        for name, key, doc in (("hearthnet_blob_storage_bytes", "store_bytes", "Bytes the blob store holds"),
                               ("hearthnet_blob_capacity_bytes", "capacity_bytes", "Bytes the blob store may use"),
                               ("hearthnet_blob_free_bytes", "free_bytes", "Free bytes on the store's disk"),
                               ("hearthnet_blobs", "blobs", "Blobs (files) stored"),
                               ("hearthnet_blobs_complete", "complete", "Blobs stored with every chunk"),
                               ("hearthnet_blobs_pinned", "pinned", "Pinned blobs (never collected)")):
            if isinstance(b.get(key), (int, float)):
                yield GaugeMetricFamily(name, doc, value=b[key])

    def _emergency(self, s: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        e = s["emergency"]
        if e is None:
            return
        mode = GaugeMetricFamily("hearthnet_emergency_mode", "1 for this node's online state "
                                 "(online, degraded, offline), 0 for the others", labels=["state"])
        for state in EMERGENCY_MODES:
            mode.add_metric([state], 1 if e.get("mode") == state else 0)
        yield mode
        if isinstance(e.get("peers_reachable"), int):
            yield GaugeMetricFamily("hearthnet_emergency_peers_reachable", "Verified peers the "
                                    "detector counted in its last round", value=e["peers_reachable"])


def _counter(name: str, doc: str, labels: list[str]) -> Any:
    """A counter family; `name` ends in `_total`, as its samples are named."""
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, doc, labels=labels)


def _le(bound: float) -> str:
    return repr(float(bound))


def render(snap: dict[str, Any]) -> bytes:
    """The Prometheus text exposition of one snapshot."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return generate_latest(registry)


# ---- HTTP ------------------------------------------------------------------------------

async def handle(gw: Any, request: web.Request) -> web.Response:
    """GET /metrics: gathered and rendered for this scrape."""
    if not gw.cfg.observability.metrics_enabled:
        raise HearthNetError("not_found", "metrics are disabled ([observability] metrics_enabled)")
    body = render(await snapshot(gw))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def build_scrape_app(gw: Any) -> web.Application:
    """The opt-in TCP listener: /metrics only, anonymous (bound to loopback by default)."""
    import functools

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        return await gw.errors(request, handler)

    app = web.Application(middlewares=[errors])
    app.router.add_get("/metrics", functools.partial(handle, gw))
    return app


async def start_scrape_port(gw: Any) -> web.AppRunner | None:
    """Listen on metrics_host:metrics_port when the owner turned it on (0: off)."""
    o = gw.cfg.observability
    if not o.metrics_port or not o.metrics_enabled:
        return None
    runner = web.AppRunner(build_scrape_app(gw), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, o.metrics_host, o.metrics_port, reuse_address=True).start()
    except OSError as exc:  # port taken, host not ours: no scrape port, the node still runs
        log.error("metrics port not opened", extra={"host": o.metrics_host, "port": o.metrics_port,
                                                    "reason": str(exc)})
        await runner.cleanup()
        return None
    log.info("metrics listening", extra={"host": o.metrics_host, "port": o.metrics_port})
    return runner
