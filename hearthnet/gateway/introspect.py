"""The local introspection documents (`/api/v1/...`): supervisord's process view merged
with the broker's heartbeat view, one record per worker."""
from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Awaitable, TypeVar

from hearthnet.bus.client import BusClient
from hearthnet.errors import HearthNetError
from hearthnet.supervisor_rpc import SupervisorRpc

_REPLICA = re.compile(r"^(?P<program>.+)_(?P<num>\d{2})$")
T = TypeVar("T")
UNHEALTHY_STATES = {"FATAL", "BACKOFF", "EXITED", "STOPPED", "UNKNOWN"}


def program_of(name: str) -> str:
    m = _REPLICA.match(name)
    return m.group("program") if m else name


async def broker_view(bus: BusClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(workers, capabilities, broker_answered)."""
    try:
        workers, caps = await asyncio.gather(bus.admin("workers"), bus.admin("caps"))
        return workers["workers"], caps["capabilities"], True
    except HearthNetError:
        return [], [], False


async def broker_first(broker_reads: Awaitable[T], thread: Awaitable[Any],
                       *calls: Awaitable[Any]) -> tuple[T, list[Any]]:
    """(what `broker_reads` gave, [the thread's result, *the calls' results]). The broker's
    views are read before the `calls` are sent: a call the broker is routing counts in
    its in-flight figures, and a status must not report itself. `thread` (supervisord's
    XML-RPC, no bus call) starts at once and overlaps the broker's reads."""
    started = asyncio.ensure_future(thread)
    try:
        first = await broker_reads
    except BaseException:  # cancelled (the client left) or failed: nothing left running, re-raised
        started.cancel()
        for c in calls:  # never awaited: closed, so no "never awaited" warning
            if asyncio.iscoroutine(c):
                c.close()
        raise
    return first, await asyncio.gather(started, *calls)


def merge_workers(processes: list[dict[str, Any]], broker_workers: list[dict[str, Any]],
                  broker_ok: bool, supervisor: SupervisorRpc) -> list[dict[str, Any]]:
    by_name = {w["name"]: w for w in broker_workers}
    out = []
    for proc in processes:
        name = proc.get("name", "")
        state = proc.get("statename", "UNKNOWN")
        bw = by_name.pop(name, None)
        running = state == "RUNNING"
        if name in ("broker", "gateway", "ui"):  # the ui is no bus worker: running is healthy
            healthy = running and (broker_ok or name != "broker")
        else:  # a service worker is healthy once the broker hears its heartbeat
            healthy = running and bool(bw and bw["alive"])
        record = {
            "name": name,
            "program": program_of(name),
            "state": state,
            "healthy": healthy,
            "pid": proc.get("pid") or None,
            "uptime_seconds": int(proc["now"] - proc["start"]) if running and proc.get("start") else 0,
            "restarts": bw["restarts"] if bw else 0,
            "last_heartbeat_ms_ago": bw["last_heartbeat_ms_ago"] if bw else None,
            "in_flight": bw["in_flight"] if bw else 0,
            "served": bw["served"] if bw else 0,
            "errors": bw["errors"] if bw else 0,
            "capabilities": bw["capabilities"] if bw else [],
            "note": (bw or {}).get("note") or _state_note(state, proc, running, bw),
            "log_tail": supervisor.log_tail(name) if state in UNHEALTHY_STATES else [],
        }
        out.append(record)
    for bw in by_name.values():  # a worker the broker knows but supervisord does not run
        out.append({"name": bw["name"], "program": program_of(bw["name"]),
                    "state": "RUNNING" if bw["alive"] else "GONE", "healthy": bw["alive"],
                    "pid": bw["pid"], "uptime_seconds": bw["uptime_seconds"],
                    "restarts": bw["restarts"], "last_heartbeat_ms_ago": bw["last_heartbeat_ms_ago"],
                    "in_flight": bw["in_flight"], "served": bw["served"], "errors": bw["errors"],
                    "capabilities": bw["capabilities"], "note": bw.get("note"), "log_tail": []})
    return out


def _state_note(state: str, proc: dict[str, Any], running: bool, bw: dict[str, Any] | None) -> str | None:
    if state == "FATAL":
        return f"crashed repeatedly at start and was given up: {proc.get('spawnerr') or 'see log_tail'}"
    if state == "BACKOFF":
        return "crashed at start; supervisord is retrying"
    if running and bw is None and program_of(proc.get("name", "")) not in ("broker", "gateway"):
        return "starting: not registered with the broker yet"
    if running and bw is not None and not bw["alive"]:
        return "restarting: no heartbeat"
    return None


def capability_entries(caps: list[dict[str, Any]], node_id: str) -> list[dict[str, Any]]:
    return [{
        "name": c["name"], "version": c["version"], "stability": c.get("stability"),
        "node_id": c.get("node_id") or node_id, "local": c.get("local", True),
        "params": c.get("params", {}),
        "health": c.get("health", "ok"), "p50_ms": c.get("p50_ms"), "p99_ms": c.get("p99_ms"),
        "success_rate": c.get("success_rate", 1.0), "in_flight": c.get("in_flight", 0),
        "max_concurrent": c.get("max_concurrent", 0), "providers": c.get("providers", 1),
        "schema_hash": c.get("schema_hash"), "workers": c.get("workers", []),
    } for c in caps]


def uptime(started: float) -> int:
    return int(time.monotonic() - started)


async def emergency_view(bus: BusClient, node_id: str, mesh: Any = None) -> dict[str, Any] | None:
    """This node's detector (`emergency.status`, never a peer's), plus what the gateway
    applies itself (the sync interval), so `status` shows the mode and its effects.
    None while the emergency worker is not running."""
    try:
        out = await bus.call("emergency.status", "1.0", {"params": {}, "input": {}},
                             caller=node_id, timeout=2, local_only=True)
    except HearthNetError:
        return None
    doc = out.get("output") or None
    if doc is not None and mesh is not None:
        doc["applied"] = {"sync_interval_seconds": mesh.sync_interval()}
    return doc
