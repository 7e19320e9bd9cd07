"""The broker process's logic: a single-threaded ZeroMQ poll loop (no asyncio: a plain
poller keeps the per-call overhead down, see LIMITS.md).

Workers announce READY with capability descriptors and heartbeat; clients (the gateway)
send calls. A call is routed to a live, compatible worker with a free slot; when the
capability's workers are all restarting it waits until one is READY or its deadline
passes; when every worker is full it queues up to a bound, then gets
`capacity_exceeded`. A worker that dies (heartbeat silence, or its pid gone after a socket
disconnect) has its unanswered calls re-dispatched when the capability is idempotent or no
frame reached the caller yet.
"""
from __future__ import annotations

import difflib
import heapq
import itertools
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq
from zmq.backend import zmq_poll

from hearthnet.bus import protocol as P
from hearthnet.bus.flow import BrokerWindow
from hearthnet.broker.stats import OTHER, CallMetrics, Health, TraceRing
from hearthnet.errors import HTTP_STATUS
from hearthnet.ratelog import RateLimitedLog
from hearthnet.constants import (
    HEARTBEAT_DEAD_AFTER_SECONDS,
    HEARTBEAT_INTERVAL_SECONDS,
    RPC_DEFAULT_TIMEOUT_SECONDS,
)

log = logging.getLogger("hearthnet.broker")

# Plain ints: pyzmq's enum flags cost microseconds per use on the hot path.
_SNDMORE, _NOBLOCK, _POLLIN = int(zmq.SNDMORE), int(zmq.NOBLOCK), int(zmq.POLLIN)

MONITOR_CHECK_SECONDS = 0.1  # how often socket disconnects (a worker maybe gone) are looked at
STARTUP_GRACE_SECONDS = 3.0  # after a broker restart, workers need a beat to re-announce
MAX_WAITING = 10_000  # calls parked while a capability's workers restart
QUEUE_FACTOR = 2  # calls that may queue per free slot once every worker is full
SUBSCRIPTION_SECONDS = 86_400  # a stream allowed to run a day or more is a subscription
MAX_RETRIES = 2  # next-candidate retries of an idempotent call whose remote provider failed
# Errors that say the caller was wrong, not the provider: they do not hurt its health.
CALLER_FAULTS = {"bad_request", "schema_mismatch", "not_found", "not_implemented",
                 "unauthorized", "invalid_signature", "revoked", "expired", "rate_limited"}
PROVIDER_FAULTS = {"partition", "internal_error", "timeout", "capacity_exceeded"}
METRIC_RESULTS = frozenset(HTTP_STATUS) | {"ok", "cancelled"}  # result labels of call metrics
# The trust boundary (issue 6): `community.*` is the node's own business (its log, its
# membership, its peers). A peer may offer only these governance capabilities, and even
# they reach a peer only when the call names that node (a co-signature is asked of one
# particular member, never of "whoever answers"). Everything else in `community.*` — and
# anything whose trust is `self` — is served by this node's own workers or not at all: a
# dead ledger means the call waits or fails, never that a peer answers it.
REMOTE_COMMUNITY_CAPS = frozenset({"community.invite", "community.revoke",
                                   "community.promote", "community.demote"})


def remote_may_offer(desc: dict[str, Any]) -> bool:
    name = str(desc.get("name", ""))
    if desc.get("trust_required") == "self":
        return False
    return not name.startswith("community.") or name in REMOTE_COMMUNITY_CAPS


# What msgpack raises for a value it cannot encode (nested over its limit, an int over 64
# bits, a type it does not know): a frame that cannot be forwarded is refused, not fatal.
PACK_ERRORS = (ValueError, TypeError, OverflowError)


@dataclass
class Worker:
    """One worker name (e.g. `llm_00`) across its restarts."""

    name: str
    service: str = ""
    ident: bytes | None = None  # current connection; None while dead
    pid: int | None = None
    caps: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str | None = None
    ready_at: float = 0.0
    last_seen: float = 0.0
    restarts: int = 0
    served: int = 0
    errors: int = 0
    running: dict[int, "Call"] = field(default_factory=dict)
    last_dispatch: float = 0.0
    draining: bool = False  # stopping: finishes its calls, gets no new ones
    remote: bool = False  # a proxy for a peer node's capabilities (lives in the gateway)
    node_id: str = ""  # the serving node (full id); ours for local workers
    route: str = ""  # how traces name it: local:<name> or remote:<node id>

    @property
    def alive(self) -> bool:
        return self.ident is not None

    load: dict[str, int] = field(default_factory=dict)  # running calls per capability

    def in_flight(self, cap: str | None = None) -> int:
        if cap is None:
            return len(self.running)
        return self.load.get(cap, 0)

    def busy(self) -> int:
        """Calls doing work now: long-lived subscriptions (a watch stream) are not load."""
        return sum(1 for c in self.running.values()
                   if float((self.caps.get(c.cap) or {}).get("timeout_seconds") or 0) < SUBSCRIPTION_SECONDS)

    def take(self, call: "Call") -> None:
        self.running[call.id] = call
        self.load[call.cap] = self.load.get(call.cap, 0) + 1

    def release(self, call_id: Any) -> "Call | None":
        call = self.running.pop(call_id, None)
        if call is not None:
            self.load[call.cap] -= 1
        return call


@dataclass(slots=True)  # one per call: slots make it cheaper to build and to read
class Call:
    id: int
    client: bytes
    cid: Any
    cap: str
    version: str
    body: Any
    stream: bool
    caller: str
    trace: str
    deadline: float
    created: float
    worker: Worker | None = None
    dispatched_at: float = 0.0
    flow: BrokerWindow = field(default_factory=BrokerWindow)  # this stream's credit window
    redispatched: int = 0
    done: bool = False  # answered (or abandoned) towards the client
    cancelled: bool = False
    excluded: set[str] = field(default_factory=set)  # providers that already failed it
    local_only: bool = False  # a peer's call: only this node's own workers may serve it
    node: str = ""  # a targeted call: only that node's providers (full id; ours = local workers)


class Broker:
    def __init__(self, workers_endpoint: str, clients_endpoint: str, *, prefer_local: bool = True,
                 local_load_threshold: float = 0.8,
                 startup_grace: float = STARTUP_GRACE_SECONDS,
                 on_worker_death: Callable[[], None] | None = None, node_id: str = "") -> None:
        self.ctx = zmq.Context.instance()
        self.wsock = self._router(workers_endpoint)
        self.csock = self._router(clients_endpoint)
        self.monitor = self.wsock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._next_monitor_check = 0.0
        self.prefer_local = prefer_local
        self.threshold = local_load_threshold
        self.workers: dict[str, Worker] = {}
        # Workers by capability name, rebuilt when a READY changes what someone offers:
        # routing looks at a call's providers only, not every worker and peer proxy.
        self.providers: dict[str, list[Worker]] = {}
        self.by_ident: dict[bytes, Worker] = {}
        self.calls: dict[int, Call] = {}
        self.by_client: dict[tuple[bytes, Any], Call] = {}
        self.waiting: deque[Call] = deque()
        self.deadlines: list[tuple[float, int]] = []
        self.health: dict[tuple[str, str], Health] = {}
        self.traces = TraceRing()
        self.metrics = CallMetrics()
        self.announced: set[str] = set()  # capability names any worker offered: metric labels
        self.started = time.monotonic()
        self._ids = itertools.count(1)
        self._last_beat = 0.0
        self._stopping = False
        self._grace_over = False
        self.startup_grace = startup_grace
        self.on_worker_death = on_worker_death  # e.g. wake supervisord to respawn it now
        self.node_id = node_id
        self._badlog = RateLimitedLog(log)  # one line per sender and problem a minute

    def _router(self, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if endpoint.startswith("ipc://"):
            path = endpoint[len("ipc://"):]
            if os.path.exists(path):
                os.unlink(path)  # a stale socket of a killed broker
        sock.bind(endpoint)
        return sock

    # ---- main loop -------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True

    def serve_forever(self) -> None:
        log.info("broker ready")
        wsock, csock = self.wsock, self.csock
        # The disconnect monitor is not polled here but looked at by _tick: every socket
        # in a zmq poll costs a check of its own on every wake-up, i.e. on every message.
        items = [(wsock, _POLLIN), (csock, _POLLIN)]
        while not self._stopping:
            for sock, _ in zmq_poll(items, self._poll_timeout_ms()):
                if sock is wsock:
                    self._drain(wsock, self._on_worker, P.worker_problem, "worker")
                else:
                    self._drain(csock, self._on_client, P.client_problem, "client")
            self._tick()
        self.close()

    def close(self) -> None:
        for sock in (self.monitor, self.wsock, self.csock):
            sock.close(0)

    def _drain(self, sock: zmq.Socket, handler: Callable[[bytes, dict[str, Any]], None],
               check: Callable[[dict[str, Any]], str | None], side: str) -> None:
        # Read everything that is queued before going back to poll: fewer syscalls. A
        # ROUTER message is the sender's identity and at least one more frame, delivered
        # whole; a third frame (malformed) shows in the payload frame's own `more` flag,
        # cheaper than pyzmq's getsockopt, and the end of the queue is found by Again.
        recv = sock.recv
        for _ in range(256):
            try:
                ident = recv(_NOBLOCK)
                frame = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                return
            if frame.more:  # the frame's own flag: no getsockopt (microseconds in pyzmq)
                while recv(_NOBLOCK, copy=False).more:
                    pass
                self._malformed(side, ident, "not [identity, payload]")
                continue
            self._receive(side, ident, frame.buffer, handler, check)

    def _receive(self, side: str, ident: bytes, data: bytes,
                 handler: Callable[[bytes, dict[str, Any]], None],
                 check: Callable[[dict[str, Any]], str | None]) -> None:
        """One message from a socket: decoded, checked, handled; whatever it holds, the
        broker goes on (a malformed one is dropped with one log line a minute)."""
        try:
            msg = P.unpack(data)
        except Exception as exc:  # msgpack raises several types; drop the frame
            self._malformed(side, ident, f"not a msgpack map: {str(exc)[:200]}")
            return
        problem = check(msg)
        if problem is not None:
            self._malformed(side, ident, problem)
            return
        try:
            handler(ident, msg)
        except Exception:  # a bug, not input: the checks above passed. Keep serving.
            self._badlog.warning(f"bug:{side}:{str(msg.get('t'))[:20]}", "broker failed on a %s %r message",
                                 side, msg.get("t"), exc_info=True)

    def receive_worker(self, ident: bytes, data: bytes) -> None:
        """A message as if it came on the workers' socket (tests and fuzzing)."""
        self._receive("worker", ident, data, self._on_worker, P.worker_problem)

    def receive_client(self, ident: bytes, data: bytes) -> None:
        """A message as if it came on the clients' socket (tests and fuzzing)."""
        self._receive("client", ident, data, self._on_client, P.client_problem)

    def _malformed(self, side: str, ident: bytes, problem: str) -> None:
        """Drop a message, saying so once a minute per sender (a worker's name if known);
        the next line says how many more were dropped meanwhile."""
        w = self.by_ident.get(ident) if side == "worker" else None
        sender = w.name if w is not None else ident.hex()[:40]
        self._badlog.warning(f"{side}:{sender}", "malformed broker frame from %s %s dropped: %s",
                             side, sender, problem)

    def _poll_timeout_ms(self) -> int:
        now = time.monotonic()
        wake = min(self._last_beat + HEARTBEAT_INTERVAL_SECONDS, self._next_monitor_check)
        if self.deadlines:
            wake = min(wake, self.deadlines[0][0])
        return max(0, min(100, int((wake - now) * 1000) + 1))

    def _tick(self) -> None:
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, call_id = heapq.heappop(self.deadlines)
            call = self.calls.get(call_id)
            if call is not None and not call.done and call.deadline <= now:
                self._expire(call)
        if now >= self._next_monitor_check:
            self._next_monitor_check = now + MONITOR_CHECK_SECONDS
            self._on_disconnect()
        if now - self._last_beat >= HEARTBEAT_INTERVAL_SECONDS:
            self._last_beat = now
            self._beat(now)
        if not self._grace_over and now - self.started >= self.startup_grace:
            self._grace_over = True
            self._refuse_unknown_waiting()

    def _refuse_unknown_waiting(self) -> None:
        """Calls parked during the start-up grace for a capability nobody announced."""
        for call in list(self.waiting):
            problem = self._unroutable(call)
            if problem is not None:
                self._remove_waiting(call)
                code, message, extra = problem
                self._fail(call, code, message, **extra)

    def _beat(self, now: float) -> None:
        for w in list(self.workers.values()):
            if not w.alive:
                continue
            if now - w.last_seen > HEARTBEAT_DEAD_AFTER_SECONDS:
                log.warning("worker silent, declared dead", extra={"worker": w.name, "pid": w.pid})
                self._worker_died(w)
            else:
                self._send_worker(w, {"t": P.HB})

    # ---- worker side -----------------------------------------------------------------

    def _send_worker(self, w: Worker, msg: dict[str, Any]) -> None:
        if w.ident is not None:
            _send2(self.wsock, [w.ident, P.pack(msg)])

    def _on_worker(self, ident: bytes, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == P.READY:
            self._on_ready(ident, msg)
            return
        w = self.by_ident.get(ident)
        if w is None:
            if kind != P.BYE:  # a worker from before a broker restart: ask it to announce
                _send2(self.wsock, [ident, P.pack({"t": P.WHO})])
            return
        w.last_seen = time.monotonic()
        if kind == P.FRAME:
            self._on_frame(w, msg)
        elif kind == P.END:
            self._on_end(w, msg)
        elif kind == P.HB:
            if "note" in msg:
                w.note = msg.get("note")
        elif kind == P.DRAIN:
            w.draining = True
        elif kind == P.REJECT:
            call = w.release(msg.get("id"))
            if call is not None:
                call.worker = None
                if call.done:
                    self._forget(call)
                else:
                    self.waiting.appendleft(call)
                self._dispatch_waiting()
        elif kind == P.BYE:
            log.info("worker leaving", extra={"worker": w.name})
            self._worker_died(w)

    def _on_ready(self, ident: bytes, msg: dict[str, Any]) -> None:
        name = str(msg.get("worker") or ident.hex())
        w = self.workers.get(name)
        if w is None:
            w = self.workers[name] = Worker(name=name)
        elif w.alive and w.ident != ident:
            self._worker_died(w)  # the old incarnation is gone; a new one took its name
        if w.ready_at and w.ident != ident:
            w.restarts += 1
        now = time.monotonic()
        if w.ident != ident:
            self.by_ident.pop(w.ident or b"", None)
        w.ident, w.pid, w.service = ident, msg.get("pid"), str(msg.get("service", ""))
        w.remote, w.node_id = bool(msg.get("remote")), str(msg.get("node_id") or self.node_id)
        w.route = f"remote:{w.node_id}" if w.remote else f"local:{name}"
        w.caps, problems = P.ready_caps(msg.get("caps") or [])
        for problem in problems:  # the worker keeps its valid capabilities
            self._badlog.warning(f"ready:{name}:{problem[:60]}", "worker %s: descriptor dropped: %s",
                                 name, problem)
        if w.remote:
            w.caps = {n: d for n, d in w.caps.items() if remote_may_offer(d)}
        self.announced.update(w.caps)
        self._index_providers()
        w.note, w.ready_at, w.last_seen = msg.get("note"), now, now
        w.draining = False
        self.by_ident[ident] = w
        log.info("worker ready", extra={"worker": name, "pid": w.pid, "caps": sorted(w.caps)})
        self._dispatch_waiting()
        if self._grace_over and self.waiting:
            # It may have come back without a capability calls were waiting for (the llm
            # worker after `model rm` of its last model): refuse those now, not at their deadline.
            self._refuse_unknown_waiting()

    def _index_providers(self) -> None:
        providers: dict[str, list[Worker]] = {}
        for w in self.workers.values():
            for cap in w.caps:
                providers.setdefault(cap, []).append(w)
        self.providers = providers

    def _on_disconnect(self) -> None:
        """Worker sockets that disconnected since the last look (the monitor's events)."""
        events = 0
        while True:
            try:
                self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            events += 1
        if not events:
            return
        # The event names a file descriptor, not a worker: check whose process is gone.
        for w in list(self.workers.values()):
            if w.alive and w.pid and not _pid_alive(w.pid):
                log.warning("worker process gone", extra={"worker": w.name, "pid": w.pid})
                self._worker_died(w)

    def _worker_died(self, w: Worker) -> None:
        if w.ident is not None:
            self.by_ident.pop(w.ident, None)
        w.ident = None
        if self.on_worker_death is not None:
            self.on_worker_death()
        orphans = list(w.running.values())
        w.running.clear()
        w.load.clear()
        for call in orphans:
            call.worker = None
            if call.done:
                self._forget(call)
            elif self._may_redispatch(call):
                call.redispatched += 1
                self.waiting.appendleft(call)
            else:
                w.errors += 1
                self._fail(call, "partition", f"provider {w.name} stopped mid-stream; retry the call")
        self._dispatch_waiting()

    def _may_redispatch(self, call: Call) -> bool:
        desc = self._descriptor(call.cap)
        return call.flow.forwarded == 0 or bool(desc and desc.get("idempotent"))

    def _on_frame(self, w: Worker, msg: dict[str, Any]) -> None:
        call = w.running.get(msg.get("id"))
        if call is None or call.done:
            return
        if call.flow.full():  # the worker ignored the window: end it rather than buffer
            self._malformed("worker", w.ident or b"", f"{call.cap} sent past its stream window")
            self._send_worker(w, {"t": P.CANCEL, "id": call.id})
            self._reply_error(call, "internal_error", f"{w.name} broke the stream's flow control", {})
            call.done = True  # the slot is freed when the worker confirms the cancel
            return
        try:
            data = P.pack({"t": P.FRAME, "id": call.cid, "ev": msg.get("ev"), "d": msg.get("d")})
        except PACK_ERRORS as exc:
            self._malformed("worker", w.ident or b"", f"frame of {call.cap} cannot be forwarded: {exc}")
            return
        call.flow.forwarded += 1
        _send2(self.csock, [call.client, data])

    def _on_end(self, w: Worker, msg: dict[str, Any]) -> None:
        call = w.release(msg.get("id"))
        if call is None:
            return
        ev, data = msg.get("ev"), msg.get("d")
        if ev == P.ERROR and not (isinstance(data, dict) and isinstance(data.get("error", ""), str)):
            data = P.error_body("internal_error", f"{w.name} answered {call.cap} with a malformed error")
        ok = ev != P.ERROR
        ms = (time.monotonic() - call.created) * 1000
        if ok:
            w.served += 1
        else:
            w.errors += 1
        code = "ok" if ok else str(data.get("error") or "internal_error")[:64]
        # A stream ended because its reader stopped consuming is not the provider's fault.
        stalled = code == "timeout" and call.flow.full()
        if code != "cancelled" and code not in CALLER_FAULTS and not stalled:
            self._record_health(w, call.cap, ok, ms)
        if not call.done and not ok and self._should_retry_elsewhere(w, call, code):
            call.excluded.add(w.name)
        if not call.done and not ok and w.name in call.excluded and self._candidates(call):
            call.worker = None
            call.redispatched += 1
            self.waiting.appendleft(call)
            self._dispatch_waiting()
            return
        if not call.done:
            try:
                # `node`: who served it (a peer's full id for a remote provider), so a
                # caller can say where an answer came from (BusClient.call_from)
                reply = P.pack({"t": P.END, "id": call.cid, "ev": ev, "d": data, "node": w.node_id})
            except PACK_ERRORS as exc:
                self._malformed("worker", w.ident or b"", f"answer of {call.cap} cannot be forwarded: {exc}")
                code, data = "internal_error", P.error_body(
                    "internal_error", f"{w.name} answered {call.cap} with data that cannot be encoded")
                reply = P.pack({"t": P.END, "id": call.cid, "ev": P.ERROR, "d": data})
            _send2(self.csock, [call.client, reply])
            self._trace(call, code, ms, data)
            call.done = True
        self._forget(call)
        self._dispatch_waiting()

    def _record_health(self, w: Worker, cap: str, ok: bool, ms: float) -> None:
        h = self.health.get((w.name, cap)) or self._health(w.name, cap)
        if h.record(ok, ms, time.monotonic()):
            log.warning("provider quarantined", extra={"worker": w.name, "capability": cap,
                                                       "success_rate": round(h.success_rate(), 2)})

    def _should_retry_elsewhere(self, w: Worker, call: Call, code: str) -> bool:
        """An idempotent call whose REMOTE provider failed goes to the next candidate."""
        desc = w.caps.get(call.cap) or {}
        return (w.remote and code in PROVIDER_FAULTS and bool(desc.get("idempotent"))
                and call.flow.forwarded == 0 and call.redispatched < MAX_RETRIES)

    # ---- client side -----------------------------------------------------------------

    def _on_client(self, ident: bytes, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if kind == P.CALL:
            self._on_call(ident, msg)
        elif kind == P.ACK:
            self._on_ack(ident, msg)
        elif kind == P.CANCEL:
            self._on_cancel(ident, msg.get("id"))
        elif kind == P.ADMIN:
            self._on_admin(ident, msg)

    def _on_call(self, client: bytes, msg: dict[str, Any]) -> None:
        now = time.monotonic()
        cap = str(msg.get("cap", ""))
        timeout = msg.get("timeout") or self._default_timeout(cap)
        call = Call(id=next(self._ids), client=client, cid=msg.get("id"), cap=cap,
                    version=str(msg.get("v") or "1.0"), body=msg.get("body"),
                    stream=bool(msg.get("stream")), caller=str(msg.get("caller", "")),
                    trace=str(msg.get("trace", "")), deadline=now + float(timeout), created=now,
                    local_only=bool(msg.get("local_only")), node=str(msg.get("node") or ""))
        self.calls[call.id] = call
        self.by_client[(client, call.cid)] = call
        if self._try_dispatch(call):
            heapq.heappush(self.deadlines, (call.deadline, call.id))
            return
        problem = self._unroutable(call)
        if problem is not None:
            self._forget(call)
            self._reply_error(call, *problem)
            return
        heapq.heappush(self.deadlines, (call.deadline, call.id))
        self._park(call)

    def _unroutable(self, call: Call) -> tuple[str, str, dict[str, Any]] | None:
        """not_found / schema_mismatch for a capability no worker offers (or ever did)."""
        offers = [(w, w.caps[call.cap]) for w in self.providers.get(call.cap, ())
                  if call.cap in w.caps and (not call.node or w.node_id == call.node)]
        if not offers:
            if time.monotonic() - self.started < self.startup_grace:
                return None
            if call.node:  # a targeted call: that node is not a peer now, or lacks the capability
                return "not_found", f"node {call.node} does not offer {call.cap} here", {}
            known = sorted({c for w in self.workers.values() for c in w.caps})
            close = difflib.get_close_matches(call.cap, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            return "not_found", f"no provider for {call.cap}@{call.version}{hint}", {
                "alt_capabilities": [f"{c}@1.0" for c in close] or None}
        corpus = _requested_corpus(call.body)
        if corpus and any(_lists_corpora(d) for _, d in offers) \
                and not any(not w.remote or _holds_corpus(d, corpus) for w, d in offers):
            return "not_found", f"no node holds corpus {corpus!r} ({call.cap})", {}
        if not any(P.version_matches(call.version, d.get("version", "")) for _, d in offers):
            versions = sorted({d.get("version", "") for _, d in offers})
            return "schema_mismatch", f"{call.cap}@{call.version} is not offered; offered: " + \
                ", ".join(versions), {"alt_capabilities": [f"{call.cap}@{v}" for v in versions],
                                      "schema_hash_expected": offers[0][1].get("schema_hash")}
        return None

    def _park(self, call: Call) -> None:
        live = self._candidates(call)
        if live:  # every live provider is full: bounded queue, then capacity_exceeded
            slots = sum(int(w.caps[call.cap].get("max_concurrent") or 1) for w in live)
            queued = sum(1 for c in self.waiting if c.cap == call.cap)
            if queued >= slots * QUEUE_FACTOR:
                p50 = min((self._health(w.name, call.cap).p50() or 500.0) for w in live)
                self._fail(call, "capacity_exceeded", f"all providers of {call.cap} are busy",
                           retry_after_ms=int(p50 * (1 + queued / max(slots, 1))))
                return
        elif len(self.waiting) >= MAX_WAITING:
            self._fail(call, "capacity_exceeded", "broker queue is full", retry_after_ms=1000)
            return
        self.waiting.append(call)

    def _on_ack(self, client: bytes, msg: dict[str, Any]) -> None:
        """The client consumed `upto` frames of a stream: relay it to the worker (in that
        worker's own count), which may then send that many more."""
        call = self.by_client.get((client, msg.get("id")))
        if call is None or call.done:
            return
        upto = call.flow.ack(msg.get("upto"))
        if upto is not None and call.worker is not None:
            self._send_worker(call.worker, {"t": P.ACK, "id": call.id, "upto": upto})

    def _on_cancel(self, client: bytes, cid: Any) -> None:
        call = self.by_client.get((client, cid))
        if call is None or call.done:
            return
        call.done = call.cancelled = True
        self._trace(call, "cancelled", (time.monotonic() - call.created) * 1000, None)
        if call.worker is not None:
            self._send_worker(call.worker, {"t": P.CANCEL, "id": call.id})
        else:
            self._remove_waiting(call)
            self._forget(call)

    def _expire(self, call: Call) -> None:
        if call.worker is not None:
            self._send_worker(call.worker, {"t": P.CANCEL, "id": call.id})
            self._reply_error(call, "timeout", f"{call.cap} did not answer before its deadline", {})
            call.done = True  # the slot is freed when the worker confirms the cancel
        else:
            self._remove_waiting(call)
            self._fail(call, "timeout", f"no provider of {call.cap} became available in time")

    def _fail(self, call: Call, code: str, message: str, **extra: Any) -> None:
        self._reply_error(call, code, message, extra)
        call.done = True
        self._forget(call)

    def _reply_error(self, call: Call, code: str, message: str, extra: dict[str, Any]) -> None:
        body = P.error_body(code, message, **extra)
        _send2(self.csock, [call.client, P.pack({"t": P.END, "id": call.cid, "ev": P.ERROR,
                                                        "d": body})])
        self._trace(call, code, (time.monotonic() - call.created) * 1000, None)

    def _forget(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        if self.by_client.get((call.client, call.cid)) is call:
            del self.by_client[(call.client, call.cid)]

    def _remove_waiting(self, call: Call) -> None:
        try:
            self.waiting.remove(call)
        except ValueError:
            pass  # not queued: already dispatched or answered

    # ---- routing ---------------------------------------------------------------------

    def _candidates(self, call: Call) -> list[Worker]:
        now = time.monotonic()
        cap, health = call.cap, self.health
        return [w for w in self.providers.get(cap, ())
                if w.ident is not None and not w.draining and cap in w.caps
                and P.version_matches(call.version, w.caps[cap].get("version", ""))
                and w.name not in call.excluded and not (call.local_only and w.remote)
                and (not call.node or w.node_id == call.node)
                and not (w.remote and cap.startswith("community.") and call.node != w.node_id)
                and not _quarantined(health.get((w.name, cap)), now)]

    def _pick(self, call: Call) -> Worker | None:
        """Spec routing (core-bus-transport §4): among free providers, the least loaded one
        under the local load threshold; otherwise the best score. Ties go to the provider
        that waited longest, so replicas share the work."""
        cands = self._candidates(call)
        if _has_params(call.body):  # params.model / params.corpus narrow the choice
            model = _requested_model(call.body)
            if model:
                offering = [w for w in cands if _offers_model(w.caps[call.cap], model)]
                cands = offering or cands  # nobody has it: let a worker say not_implemented
            cands = _by_corpus(call, cands)
        best: tuple[float, float] | None = None
        pick: Worker | None = None
        scored: list[tuple[float, float, Worker]] = []
        for w in cands:
            limit = int(w.caps[call.cap].get("max_concurrent") or 1)
            running = w.load.get(call.cap, 0)
            if running >= limit:
                continue
            load = running / limit
            if self.prefer_local and not w.remote and load < self.threshold:
                key = (load, w.last_dispatch)
                if best is None or key < best:
                    best, pick = key, w
            elif pick is None:
                h = self._health(w.name, call.cap)
                score = (h.p50() or 500.0) * (1 + load) + (1 - h.success_rate()) * 1000
                score -= 0 if w.remote else 50
                scored.append((score, w.last_dispatch, w))
        if pick is None and scored:
            pick = min(scored, key=lambda t: (t[0], t[1]))[2]
        return pick

    def _try_dispatch(self, call: Call) -> bool:
        """True when the call is taken care of: sent to a worker, or refused because its
        body cannot be encoded (then it is answered `bad_request`)."""
        w = self._pick(call)
        if w is None or w.ident is None:
            return False
        now = time.monotonic()
        try:
            req = P.pack({"t": P.REQ, "id": call.id, "cap": call.cap, "v": call.version,
                          "body": call.body, "stream": call.stream, "caller": call.caller,
                          "trace": call.trace, "ttl": max(call.deadline - now, 0.001)})
        except PACK_ERRORS as exc:
            self._fail(call, "bad_request", f"the body of the {call.cap} call cannot be encoded: {exc}")
            return True
        call.worker, call.dispatched_at = w, now
        call.flow.dispatched()
        w.take(call)
        w.last_dispatch = now
        _send2(self.wsock, [w.ident, req])
        return True

    def _dispatch_waiting(self) -> None:
        if not self.waiting:
            return
        still: deque[Call] = deque()
        while self.waiting:
            call = self.waiting.popleft()
            if call.done:
                self._forget(call)
            elif not self._try_dispatch(call):
                still.append(call)
        self.waiting = still

    # ---- bookkeeping -----------------------------------------------------------------

    def _health(self, worker: str, cap: str) -> Health:
        key = (worker, cap)
        h = self.health.get(key)
        if h is None:
            h = self.health[key] = Health()
        return h

    def _descriptor(self, cap: str) -> dict[str, Any] | None:
        for w in self.providers.get(cap, ()):
            if cap in w.caps:
                return w.caps[cap]
        return None

    def _default_timeout(self, cap: str) -> float:
        desc = self._descriptor(cap)
        return float((desc or {}).get("timeout_seconds") or RPC_DEFAULT_TIMEOUT_SECONDS)

    def _trace(self, call: Call, result: str, ms: float, data: Any) -> None:
        # Labels only from names this broker knows: a caller (a peer) picks the names it
        # calls and a remote provider the codes it answers with.
        self.metrics.record(call.cap if call.cap in self.announced else OTHER,
                            result if result in METRIC_RESULTS else OTHER, ms)
        meta = {}
        if isinstance(data, dict):
            meta = data.get("meta") if isinstance(data.get("meta"), dict) else data
        w = call.worker
        self.traces.add((time.time(), call.trace, call.cap, call.version, call.caller,
                         w.route if w else "broker",
                         w.name if w else None, result,
                         round(ms, 3), _count(meta.get("tokens_in")), _count(meta.get("tokens_out")),
                         call.redispatched))

    # ---- introspection (admin ops) ---------------------------------------------------

    def _on_admin(self, client: bytes, msg: dict[str, Any]) -> None:
        op, args = msg.get("op"), msg.get("args") or {}
        if op == "workers":
            data: Any = {"workers": self.worker_stats()}
        elif op == "caps":
            data = {"capabilities": self.capability_stats()}
        elif op == "metrics":
            data = self.metrics.snapshot()
        elif op == "traces":
            data = {"traces": self.traces.recent(int(args.get("n", 50)), args.get("capability"))}
        else:
            data = P.error_body("bad_request", f"unknown admin op {op!r}")
        ev = P.ERROR if "error" in data else P.RESULT
        _send2(self.csock, [client, P.pack({"t": P.END, "id": msg.get("id"), "ev": ev,
                                                   "d": data})])

    def worker_stats(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{
            "name": w.name, "service": w.service, "alive": w.alive, "pid": w.pid,
            "uptime_seconds": int(now - w.ready_at) if w.alive else 0,
            "restarts": w.restarts,
            "last_heartbeat_ms_ago": int((now - w.last_seen) * 1000) if w.alive else None,
            "in_flight": w.busy(), "served": w.served, "errors": w.errors,
            "capabilities": [f"{d['name']}@{d.get('version')}" for d in w.caps.values()],
            "note": w.note, "remote": w.remote, "node_id": w.node_id,
        } for w in self.workers.values()]

    def capability_stats(self) -> list[dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for w in self.workers.values():
            if not w.alive:
                continue
            for name, d in w.caps.items():
                key = (name, str(d.get("version")), w.node_id)
                h = self._health(w.name, name)
                entry = out.setdefault(key, {
                    "name": name, "version": d.get("version"), "stability": d.get("stability"),
                    "params": d.get("params", {}), "schema_hash": d.get("schema_hash"),
                    "trust_required": d.get("trust_required", "member"), "local": not w.remote,
                    "streams": d.get("streams"), "timeout_seconds": d.get("timeout_seconds"),
                    "node_id": w.node_id, "in_flight": 0, "max_concurrent": 0, "providers": 0,
                    "workers": [], "_samples": []})
                entry["in_flight"] += w.in_flight(name)
                entry["max_concurrent"] += int(d.get("max_concurrent") or 1)
                entry["providers"] += 1
                entry["workers"].append(w.name)
                entry["_samples"].extend(h.samples)
        result = []
        for entry in out.values():
            h = Health()
            h.samples.extend(entry.pop("_samples")[-h.samples.maxlen:])
            rate = h.success_rate()
            quarantined = all(self._health(n, entry["name"]).quarantined(time.monotonic())
                              for n in entry["workers"])
            entry.update(p50_ms=h.p50(), p99_ms=h.p99(), success_rate=round(rate, 3),
                         health="quarantined" if quarantined else "ok" if rate >= 0.9 else "degraded")
            result.append(entry)
        return sorted(result, key=lambda e: (e["name"], e["version"], not e["local"], e["node_id"]))


def _send2(sock: zmq.Socket, frames: list[bytes]) -> None:
    """[identity, payload] to a ROUTER peer, without send_multipart's per-call overhead."""
    sock.send(frames[0], _SNDMORE)
    sock.send(frames[1])


def _count(value: Any) -> int | None:
    """A token count from a provider's meta, or None: traces keep only what they expect."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _quarantined(h: Health | None, now: float) -> bool:
    return h is not None and now < h.quarantined_until


def _has_params(body: Any) -> bool:
    """A non-empty `params` map: most calls have none, and then skip the model/corpus rules."""
    return body.__class__ is dict and bool(body.get("params"))


def _requested_model(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("params"), dict):
        model = body["params"].get("model")
        return model if isinstance(model, str) and model else None
    return None


def _offers_model(desc: dict[str, Any], model: str) -> bool:
    params = desc.get("params") or {}
    if params.get("model") == model:
        return True
    models = params.get("models")
    for entry in models if isinstance(models, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if name == model:
            return True
    return False


def _requested_corpus(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("params"), dict):
        corpus = body["params"].get("corpus")
        return corpus if isinstance(corpus, str) and corpus else None
    return None


def _lists_corpora(desc: dict[str, Any]) -> bool:
    return isinstance((desc.get("params") or {}).get("corpora"), list)


def _holds_corpus(desc: dict[str, Any], corpus: str) -> bool:
    return _lists_corpora(desc) and corpus in desc["params"]["corpora"]


def _by_corpus(call: Any, cands: list[Any]) -> list[Any]:
    """A call naming `params.corpus` of a capability whose providers list their corpora
    (`params.corpora`, e.g. rag.query) goes to a provider that holds it; when none does,
    only to this node's own providers, which answer `not_found` or serve a corpus they
    never advertise (`personal`): the query text never leaves the node for nothing."""
    corpus = _requested_corpus(call.body)
    if corpus is None or not any(_lists_corpora(w.caps[call.cap]) for w in cands):
        return cands
    holding = [w for w in cands if _holds_corpus(w.caps[call.cap], corpus)]
    return holding or [w for w in cands if not w.remote]


def _pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie awaiting its parent's reap."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
