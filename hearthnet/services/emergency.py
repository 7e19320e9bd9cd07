"""The emergency detector service (spec svc-emergency-ui §1; issue 10; README "Emergency
detector"): the `emergency` worker.

    emergency.status  member  {} -> {mode, since, last_probe, interval_seconds, flap_hold,
                                     probes: [{target, kind, ok, ms, error, deciding}],
                                     peers_reachable, effects: {...}}
    emergency.watch   self    stream: "state" frames with the same document, the current one
                              first, then one per mode change

Each round probes every configured target concurrently (each cut at
EMERGENCY_PROBE_TIMEOUT_SECONDS), feeds the internet probes' results to the state machine
(hearthnet/emergency/state.py) and sleeps 10 s while online, 2 s otherwise. The number of
verified peers (`community.peers.list`) is asked every round and reported as
`peers_reachable`; it never decides the mode (a LAN without internet is `offline` with
peers). The mode is this node's own and never goes on the wire.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, AsyncIterator, Sequence

from hearthnet.bus.service import Capability, Request
from hearthnet.constants import (EMERGENCY_PROBE_INTERVAL_OFFLINE, EMERGENCY_PROBE_INTERVAL_ONLINE,
                                 EMERGENCY_PROBE_TIMEOUT_SECONDS)
from hearthnet.emergency.effects import effects
from hearthnet.emergency.probes import Probe, ProbeResult, parse_target, run_round, tls_context
from hearthnet.emergency.state import ONLINE, StateMachine, rfc3339
from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.emergency")

PEERS_TIMEOUT_SECONDS = 2.0
WATCH_QUEUE = 64  # a watcher this far behind gets the newest state only (states are whole documents)

STATE_SCHEMA = {"type": "object", "required": ["mode", "since"], "properties": {
    "mode": {"type": "string", "enum": ["online", "degraded", "offline"]}, "since": {"type": "string"}}}


class EmergencyService:
    name = "emergency"

    def __init__(self, probes: Sequence[Probe], bus: Any = None, node_id: str = "",
                 machine: StateMachine | None = None, timeout: float = EMERGENCY_PROBE_TIMEOUT_SECONDS,
                 tls: ssl.SSLContext | None = None) -> None:
        self.probes = list(probes)
        self.tls = tls  # https probes' trust (emergency.https_ca_file); None = the system store
        self.bus = bus
        self.node_id = node_id
        self.machine = machine or StateMachine()
        self.timeout = timeout
        self.results: list[ProbeResult] = []
        self.last_probe: float | None = None
        self.peers_reachable: int | None = None
        self.watchers: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> "EmergencyService":
        from hearthnet.bus.client import BusClient
        from hearthnet.identity import keys

        try:
            probes = [parse_target(t) for t in cfg.emergency.probe_targets]
        except ValueError as exc:
            raise HearthNetError("bad_request", f"emergency.probe_targets: {exc}") from exc
        try:
            tls = tls_context(cfg.emergency.https_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise HearthNetError("bad_request", f"emergency.https_ca_file: {exc}") from exc
        node_id = keys.load(cfg.identity.keys_dir).node_id_full
        return cls(probes, BusClient(cfg.paths.broker_clients_endpoint), node_id, tls=tls)

    def capabilities(self) -> list[Capability]:
        return [
            Capability(name="emergency.status", handler=self.status, stability="beta", idempotent=True,
                       request_schema={"type": "object"}, response_schema=STATE_SCHEMA,
                       trust_required="member", timeout_seconds=10, max_concurrent=16),
            Capability(name="emergency.watch", handler=self.watch, stability="beta",
                       request_schema={"type": "object"}, stream_schema=STATE_SCHEMA,
                       trust_required="self", timeout_seconds=10 ** 7, max_concurrent=64),
        ]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        start = getattr(self.bus, "start", None)
        if start is not None:
            await start()
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        close = getattr(self.bus, "close", None)
        if close is not None:
            await close()

    def health(self) -> dict[str, Any]:
        return {"note": f"{self.machine.mode} since {rfc3339(self.machine.since)}"}

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the detector must outlive a bug in one round
                log.exception("emergency probe round failed")
            await asyncio.sleep(self.interval())

    def interval(self) -> float:
        return EMERGENCY_PROBE_INTERVAL_ONLINE if self.machine.mode == ONLINE else EMERGENCY_PROBE_INTERVAL_OFFLINE

    async def tick(self) -> None:
        """One probe round; a transition is logged and sent to every watcher."""
        peers_task = asyncio.ensure_future(self._peers())
        self.results = await run_round(self.probes, self.timeout, self._peer_count(peers_task), self.tls)
        self.peers_reachable = await peers_task
        self.last_probe = time.time()
        change = self.machine.feed([r.ok for r, p in zip(self.results, self.probes) if p.deciding])
        if change is not None:
            log.warning("emergency mode changed", extra={
                "from": change.old, "to": change.new,
                "failing": [r.target for r in self.results if not r.ok]})
            self._publish()

    def _peer_count(self, task: asyncio.Future):
        async def count() -> int:
            n = await asyncio.shield(task)
            return n or 0
        return count

    async def _peers(self) -> int | None:
        """Verified peers from discovery; None when it does not answer."""
        if self.bus is None:
            return None
        try:
            out = await self.bus.call("community.peers.list", "1.0", {"params": {}, "input": {}},
                                      caller=self.node_id, node=self.node_id, timeout=PEERS_TIMEOUT_SECONDS)
        except HearthNetError:
            return None
        peers = (out.get("output") or {}).get("peers")
        return len(peers) if isinstance(peers, list) else None

    # ------------------------------------------------------------------ capabilities

    def state(self) -> dict[str, Any]:
        mode = self.machine.mode
        by_target = {p.target: p for p in self.probes}
        return {
            "mode": mode, "since": rfc3339(self.machine.since),
            "last_probe": rfc3339(self.last_probe) if self.last_probe is not None else None,
            "interval_seconds": self.interval(), "flap_hold": self.machine.held(),
            "probes": [dict(r.to_json(), deciding=by_target[r.target].deciding) for r in self.results],
            "peers_reachable": self.peers_reachable, "effects": effects(mode)}

    async def status(self, req: Request) -> dict[str, Any]:
        return {"output": self.state(), "meta": {}}

    def _publish(self) -> None:
        doc = self.state()
        for q in list(self.watchers):
            if q.full():
                q.get_nowait()
            q.put_nowait(doc)

    async def watch(self, req: Request) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        queue: asyncio.Queue = asyncio.Queue(WATCH_QUEUE)
        self.watchers.add(queue)
        return self._watch(queue)

    async def _watch(self, queue: asyncio.Queue) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            yield "state", self.state()
            while True:
                yield "state", await queue.get()
        finally:
            self.watchers.discard(queue)
