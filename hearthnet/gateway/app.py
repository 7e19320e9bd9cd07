"""The gateway's HTTP routes (DESIGN.md §3; routes documented in README "Local API").

Two listeners share one Gateway:
- the local API, HTTP over `<run dir>/api.sock` (a 0700 dir): every route, and each
  request must carry the owner's token (`Authorization: Bearer <run dir/api.token>`);
- the peer API, HTTPS on transport.host:transport.port with the node's self-signed
  certificate (its fingerprint is in the signed node manifest): anonymous GET /health,
  /manifest, /community/manifest, and capability calls signed with the contract's
  X-HearthNet-* headers from community members (see peer_api.py).
"""
from __future__ import annotations

import asyncio
import functools
import hmac
import importlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from hearthnet.bus import flow
from hearthnet.bus import protocol as P
from hearthnet.bus.client import BusClient
from hearthnet.config import Config
from hearthnet.constants import MANIFEST_REPUBLISH_INTERVAL_SECONDS, MAX_REQUEST_BYTES
from hearthnet.errors import HearthNetError, http_status_for
from hearthnet.gateway import introspect
from hearthnet.gateway.bodybudget import BodyBudget, serve_within
from hearthnet.gateway.http import capability_headers as _capability_headers
from hearthnet.gateway.http import dumps as _dumps
from hearthnet.gateway.http import signed_json_response as _signed_json_response
from hearthnet.gateway.http import read_json
from hearthnet.transport.endpoints import advertised_endpoints
from hearthnet.services.embedding.available import embedding_unavailable
from hearthnet.transport.sse import format_frame
from hearthnet.supervisor_rpc import SupervisorRpc
from hearthnet.ids import new_ulid
from hearthnet.identity import keys as idkeys
from hearthnet.identity import manifest as idmanifest
from hearthnet.transport.ratelimit import RateLimiter
from hearthnet.transport.signing import H_TIMEOUT, ReplayCache, parse_timeout, sign_response
from hearthnet.transport.tls import ensure_tls_identity, load_tls_identity, manifest_tls_fields
from hearthnet.version import CONTRACT_VERSION, __version__

log = logging.getLogger("hearthnet.gateway")
ANONYMOUS = {("GET", "/health"), ("GET", "/manifest"), ("GET", "/community/manifest")}
CAPS_CACHE_SECONDS = 1.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Gateway:
    cfg: Config
    bus: BusClient
    supervisor: SupervisorRpc
    token: str
    kp: Any  # identity.keys.KeyPair
    tls: Any = None  # transport.tls.TlsIdentity
    mesh: Any = None  # gateway.mesh.Mesh, once started
    members: Any = None  # membership.Membership: follows the ledger's governance events
    started: float = field(default_factory=time.monotonic)
    replay: ReplayCache = field(default_factory=ReplayCache)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    guard: Any = None  # gateway.guard.ConnectionGuard of the peer listener, once serving
    bodies: BodyBudget = field(default_factory=BodyBudget)  # request bodies the peer port holds
    origin: Any = None  # the local API's copy: the main Gateway (a rename updates both)
    _manifest: dict[str, Any] | None = None
    _manifest_at: float = 0.0
    _caps: dict[str, dict[str, Any]] = field(default_factory=dict)
    _any_caps: dict[str, dict[str, Any]] = field(default_factory=dict)
    _caps_at: float = 0.0
    _members: dict[str, Any] | None = None
    _members_at: float = 0.0

    # ---- helpers ---------------------------------------------------------------------

    def community_manifest(self) -> dict[str, Any] | None:
        path = self.cfg.community_manifest_path
        if path is None:
            return None
        try:
            return idmanifest.read_community_manifest(path)
        except (OSError, ValueError, HearthNetError):
            return None

    async def node_manifest(self) -> dict[str, Any]:
        """Re-signed at most every MANIFEST_REPUBLISH_INTERVAL_SECONDS (30 s TTL)."""
        now = time.monotonic()
        if self._manifest is None or now - self._manifest_at >= MANIFEST_REPUBLISH_INTERVAL_SECONDS:
            from hearthnet.profile import detect_hardware

            _, caps, _ = await introspect.broker_view(self.bus)
            self._manifest = idmanifest.build_node_manifest(
                self.kp, display_name=self.cfg.node.display_name,
                community_id=self.cfg.community.community_id or "", profile=self.cfg.node.profile,
                endpoints=advertised_endpoints(self.cfg),
                hardware=detect_hardware(self.cfg.paths.data_dir),
                capabilities=[{k: c[k] for k in ("name", "version", "stability", "schema_hash",
                                                 "params", "max_concurrent")}
                              for c in caps if c.get("local", True)
                              and c.get("trust_required") != "self"],  # node-internal ones stay home
                uptime_seconds=introspect.uptime(self.started),
                load={"cpu": 0.0, "vram_used_gb": 0.0,
                      "in_flight_total": sum(c["in_flight"] for c in caps)},
                extra_fields=manifest_tls_fields(self.tls) if self.tls else None)
            self._manifest_at = now
        return self._manifest

    # ---- routes ----------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def manifest(self, request: web.Request) -> web.Response:
        return web.json_response(await self.node_manifest())

    async def get_community_manifest(self, request: web.Request) -> web.Response:
        m = self.community_manifest()
        if m is None:
            raise HearthNetError("not_found", "this node has no community yet")
        return web.json_response(m)

    async def call(self, request: web.Request) -> web.StreamResponse:
        """A call by the node's owner (local API)."""
        cap, version = _capability_headers(request)
        body = await read_json(request)
        trace = request.headers.get("X-HearthNet-Request-Id") or new_ulid()
        timeout = parse_timeout(request.headers.get(H_TIMEOUT))  # the owner's, unsigned
        return await self.dispatch(request, cap, version, body, caller=self.kp.node_id_full,
                                   trace=trace, timeout=timeout, node=_target_node(request),
                                   descriptor=await self.descriptor(cap, local=False))

    async def dispatch(self, request: web.Request, cap: str, version: str, body: Any, *,
                       caller: str, trace: str, local_only: bool = False, sign: bool = False,
                       timeout: float | None = None, node: str | None = None,
                       descriptor: dict[str, Any] | None = None) -> web.StreamResponse:
        """Hand an authenticated call to the broker; JSON reply or SSE stream. `node`
        (the owner's X-HearthNet-Node) targets that node's providers only."""
        if _wants_stream(request, body, descriptor):
            return await self._stream(request, cap, version, body, trace, timeout, caller,
                                      local_only, sign, node)
        result = await self.bus.call(cap, version, body, caller=caller, trace=trace,
                                     timeout=timeout, local_only=local_only, node=node)
        headers = {"X-HearthNet-Request-Id": trace}
        if sign:  # responses to peers are signed (CONTRACT §5; required for mutating calls)
            return _signed_json_response(self.kp, trace, 200, result, headers)
        return web.json_response(result, headers=headers, dumps=_dumps)

    async def _stream(self, request: web.Request, cap: str, version: str, body: Any, trace: str,
                      timeout: float | None, caller: str, local_only: bool,
                      sign: bool, node: str | None = None) -> web.StreamResponse:
        frames = self.bus.stream(cap, version, body, caller=caller, trace=trace,
                                 timeout=timeout, local_only=local_only, node=node)
        first_ev, first = await frames.__anext__()
        if first_ev == P.ERROR:  # refused before anything streamed: a plain HTTP error
            raise HearthNetError.from_wire(first)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                   "X-HearthNet-Request-Id": trace, "X-HearthNet-From": self.kp.node_id_full}
        if sign:  # the headers only (body null): which node accepted which request
            headers.update(sign_response(self.kp, trace, 200, None))
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        try:
            ev, data = first_ev, first
            while True:
                # The next frame is taken from the bus (which acknowledges this one) only
                # once this one went out to the socket: a slow HTTP reader holds the
                # producer back through TCP and the stream's credits (bus/flow.py).
                if not await _write_or_stall(request, resp, format_frame(ev, data)):
                    log.warning("stream reader stalled; connection closed",
                                extra={"capability": cap, "trace": trace})
                    break
                if ev in (P.DONE, P.ERROR):
                    break
                ev, data = await frames.__anext__()
        except ConnectionError:  # the reader left mid-write: cancel the work, no traceback
            log.debug("stream reader went away", extra={"capability": cap, "trace": trace})
        except asyncio.CancelledError:
            await frames.aclose()  # the caller left: cancel the work
            raise
        await frames.aclose()
        return resp  # aiohttp finishes a lost connection quietly

    async def status(self, request: web.Request) -> web.Response:
        # The parts run at once (each a bus round trip or supervisord's XML-RPC): the status
        # costs the slowest of them, not their sum (`hearthnet status` waits on it). Only
        # the broker's view goes first, so that status's own calls are not in its in-flight.
        (workers, caps, ok), (procs, membership, discovery, event_log, blob_store, emergency) = \
            await introspect.broker_first(
                introspect.broker_view(self.bus), asyncio.to_thread(self.supervisor.processes),
                self.membership(), self._discovery_view(), self._event_head(), self._blob_store(),
                introspect.emergency_view(self.bus, self.kp.node_id_full, self.mesh))
        merged = introspect.merge_workers(procs, workers, ok, self.supervisor)
        entries = introspect.capability_entries(caps, self.kp.node_id_full)
        cm = self.community_manifest() or {}
        members = membership.get("members", cm.get("members", []))
        notes = [w["note"] for w in merged if w.get("note") and w["program"] == "llm"][:1]
        notes += [f"{w['name']}: {w['state']}" for w in merged if not w["healthy"]
                  and w["state"] != "RUNNING"]
        if not ok:
            notes.append("broker: not answering")
        if self.cfg.embedding.enabled and (why := embedding_unavailable(self.cfg)):
            notes.append(f"embeddings unavailable: {why}")
        return web.json_response({
            "node": {"node_id": self.kp.node_id_full, "node_id_short": self.kp.node_id_short,
                     "display_name": self.cfg.node.display_name, "profile": self.cfg.node.profile,
                     "version": __version__, "contract_version": CONTRACT_VERSION,
                     "uptime_seconds": introspect.uptime(self.started),
                     "config_file": str(self.cfg.source or self.cfg.paths.config_file)},
            "community": {"community_id": self.cfg.community.community_id,
                          "name": cm.get("name") or self.cfg.community.name,
                          "member_count": len(members)},
            "workers": merged, "capabilities": entries,
            "in_flight": sum(w["in_flight"] for w in merged), "notes": notes,
            "peers": _mesh_status(self.mesh),
            "discovery": discovery, "event_log": event_log, "blob_store": blob_store,
            "emergency": emergency,
        })

    async def _discovery_view(self) -> dict[str, Any] | None:
        """How peers were found, and why there are none (from the discovery worker)."""
        try:
            out = await self.bus.call("community.peers.list", "1.0", {"params": {}, "input": {}},
                                      caller=self.kp.node_id_full, timeout=2)
        except HearthNetError:
            return None
        o = out.get("output", {})
        return {"diagnose": o.get("diagnose", []), "mechanisms": (o.get("discovery") or {}).get("mechanisms")}

    async def _event_head(self) -> dict[str, Any] | None:
        try:
            out = await self.bus.call("community.log.heads", "1.0", {"params": {}, "input": {}},
                                      caller=self.kp.node_id_full, timeout=2)
        except HearthNetError:
            return None
        o = out.get("output", {})
        return {"head": o.get("head"), "count": o.get("count")}

    async def _blob_store(self) -> dict[str, Any] | None:
        """The file worker's `file.status` (None while it is not running)."""
        try:
            out = await self.bus.call("file.status", "1.0", {"params": {}, "input": {}},
                                      caller=self.kp.node_id_full, timeout=2, local_only=True)
        except HearthNetError:
            return None
        return out.get("output") or None

    async def workers(self, request: web.Request) -> web.Response:
        workers, _, ok = await introspect.broker_view(self.bus)
        procs = await asyncio.to_thread(self.supervisor.processes)
        return web.json_response({"workers": introspect.merge_workers(procs, workers, ok,
                                                                      self.supervisor)})

    async def capabilities(self, request: web.Request) -> web.Response:
        _, caps, _ = await introspect.broker_view(self.bus)
        return web.json_response({"capabilities": introspect.capability_entries(
            caps, self.kp.node_id_full)})

    async def traces(self, request: web.Request) -> web.Response:
        n = _int_query(request, "n", 50)
        cap = request.query.get("capability") or None
        return web.json_response(await self.bus.admin("traces", n=n, capability=cap))

    async def logs(self, request: web.Request) -> web.Response:
        """The merged worker logs (same records as `hearthnet log --json`), newest last."""
        from hearthnet.logview import LEVELS, LogFilter, LogReader, normalise_level

        n = _int_query(request, "n", 200)
        level = request.query.get("level") or None
        if level is not None and normalise_level(level) not in LEVELS:
            raise HearthNetError("bad_request", f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
        comps = tuple(c for c in request.query.getall("component", []) if c)
        reader = LogReader(self.cfg.paths.log_dir, LogFilter(level, comps))
        try:
            records = await asyncio.to_thread(reader.start, n)
        finally:
            reader.close()
        return web.json_response({"lines": [r.to_dict() for r in records]})

    async def membership(self) -> dict[str, Any]:
        """{members, revoked} from the ledger's view of the event log. With the event-driven
        view (membership.Membership) a revocation counts from the moment it is stored;
        before that view has loaded: asked of the ledger (cached a second), with the
        manifest file as the fallback while the ledger is restarting."""
        if self.members is not None and self.members.loaded:
            return self.members.raw
        now = time.monotonic()
        if self._members is None or now - self._members_at > CAPS_CACHE_SECONDS:
            try:
                out = await self.bus.call("community.members.get", "1.0",
                                          {"params": {}, "input": {}},
                                          caller=self.kp.node_id_full, timeout=5)
                self._members, self._members_at = out.get("output", {}), now
            except HearthNetError:
                return self._members or self.community_manifest() or {}
        return self._members

    async def descriptor(self, cap: str, *, local: bool = True) -> dict[str, Any] | None:
        """A local capability's descriptor (trust_required, timeout_seconds, streams, …),
        cached for a second; `local=False` falls back to a remote provider's entry."""
        now = time.monotonic()
        if now - self._caps_at > CAPS_CACHE_SECONDS:
            _, caps, _ = await introspect.broker_view(self.bus)
            self._caps = {c["name"]: c for c in caps if c.get("local", True)}
            self._any_caps = {c["name"]: c for c in caps if not c.get("local", True)}
            self._caps_at = now
        found = self._caps.get(cap)
        return found if found is not None or local else self._any_caps.get(cap)

    # ---- middleware ------------------------------------------------------------------

    @web.middleware
    async def local_guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Local API: the owner's token on every route but /health."""
        async def authenticated(req: web.Request) -> web.StreamResponse:
            if (req.method, req.path) != ("GET", "/health"):
                self._authenticate(req)
            return await handler(req)

        return await self.errors(request, authenticated)

    @web.middleware
    async def peer_guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Peer API: routes authenticate by signature themselves (peer_api.py); errors
        are signed too; the connection guard learns when a request starts and ends; the
        bytes a request's body claimed in the body budget are given back when it ends,
        whatever the path (error, cancellation, the client gone)."""
        if self.guard is not None:
            self.guard.request_started(request.transport)
        try:
            return await serve_within(self.bodies, request,
                                      functools.partial(self.errors, handler=handler, signer=self.kp))
        finally:
            if self.guard is not None:
                self.guard.request_finished(request.transport)

    async def errors(self, request: web.Request, handler: Handler,
                     signer: Any = None) -> web.StreamResponse:
        """The one place that turns errors into the contract's JSON error body (signed
        with `signer`'s key on the peer API)."""
        trace = _request_id(request)
        try:
            return await handler(request)
        except HearthNetError as exc:
            return _error_response(exc.code, exc.message, trace, exc.details, signer=signer)
        except web.HTTPRequestEntityTooLarge:
            return _error_response("bad_request", f"request body over {MAX_REQUEST_BYTES} bytes",
                                   trace, {}, status=413, signer=signer)
        except web.HTTPException as exc:
            code = {404: "not_found", 405: "bad_request"}.get(exc.status, "bad_request")
            return _error_response(code, exc.reason, trace, {}, status=exc.status, signer=signer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gateway handler failed", extra={"path": request.path})
            return _error_response("internal_error", "the gateway failed; see its log", trace, {},
                                   signer=signer)

    def _authenticate(self, request: web.Request) -> None:
        supplied = request.headers.get("Authorization", "")
        expected = f"Bearer {self.token}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise HearthNetError("unauthorized", "local API needs the node owner's token")


def build_local_app(gw: Gateway) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[gw.local_guard])
    app.router.add_get("/health", gw.health)
    app.router.add_get("/manifest", gw.manifest)
    app.router.add_get("/community/manifest", gw.get_community_manifest)
    app.router.add_post("/bus/v1/call", gw.call)
    app.router.add_get("/api/v1/status", gw.status)
    app.router.add_get("/api/v1/workers", gw.workers)
    app.router.add_get("/api/v1/capabilities", gw.capabilities)
    app.router.add_get("/api/v1/traces", gw.traces)
    app.router.add_get("/api/v1/logs", gw.logs)
    from hearthnet.gateway import live

    app.router.add_get("/metrics", _on_first_request("metrics", "handle", gw))  # Prometheus, owner only

    live.install(app, gw)  # GET /api/v1/subscribe: live updates (SSE), owner only
    app.router.add_post("/api/v1/settings/name", _on_first_request("node_settings", "rename", gw))
    app.router.add_post("/api/v1/community/join", _on_first_request("node_settings", "join", gw))
    return app


def _on_first_request(module: str, handler: str, gw: Gateway) -> Callable[[web.Request], Awaitable[Any]]:
    """`hearthnet.gateway.<module>.<handler>(gw, request)`, imported by its first request:
    routes an idle node never serves cost it no memory (README "Lean processes")."""
    async def route(request: web.Request) -> Any:
        mod = importlib.import_module(f"hearthnet.gateway.{module}")
        return await getattr(mod, handler)(gw, request)
    return route


def build_peer_app(gw: Gateway) -> web.Application:
    from hearthnet.gateway import admit, peer_api

    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[gw.peer_guard])
    app.router.add_get("/health", gw.health)
    app.router.add_get("/manifest", gw.manifest)
    app.router.add_get("/community/manifest", gw.get_community_manifest)
    app.router.add_post("/bus/v1/call", functools.partial(peer_api.call, gw))
    app.router.add_get("/sync/v1/heads", functools.partial(peer_api.sync_heads, gw))
    app.router.add_post("/sync/v1/ids", functools.partial(peer_api.sync_ids, gw))
    app.router.add_post("/sync/v1/events", functools.partial(peer_api.sync_events, gw))
    app.router.add_post("/sync/v1/pull", functools.partial(peer_api.sync_pull, gw))
    app.router.add_post("/sync/v1/digest", functools.partial(peer_api.sync_digest, gw))
    app.router.add_post("/sync/v1/admit", functools.partial(admit.admit, gw))
    return app


def load_gateway(cfg: Config, bus: BusClient) -> Gateway:
    token = cfg.paths.api_token_file.read_text().strip()
    kp = idkeys.load(cfg.identity.keys_dir)
    if cfg.transport.tls_cert and cfg.transport.tls_key:
        tls = load_tls_identity(cfg.transport.tls_cert, cfg.transport.tls_key)
    else:
        tls = ensure_tls_identity(kp, cfg.paths.tls_dir, cfg.transport.host)
    return Gateway(cfg=cfg, bus=bus, supervisor=SupervisorRpc(cfg.paths.supervisor_socket),
                   token=token, kp=kp, tls=tls,
                   bodies=BodyBudget.from_mib(cfg.transport.peer_body_budget_mib,
                                              cfg.transport.peer_body_per_sender_mib))


def _mesh_status(mesh: Any) -> list[dict[str, Any]]:
    """The mesh's peers; the local API reads them from its own thread while the mesh's
    loop may change them, so a dict changing size mid-read is simply read again."""
    for _ in range(5):
        try:
            return mesh.status() if mesh else []
        except RuntimeError:
            continue
    return []


def _error_response(code: str, message: str, trace: str, details: dict[str, Any],
                    status: int | None = None, signer: Any = None) -> web.Response:
    body = P.error_body(code, message, **details)
    status = status or http_status_for(code)
    headers = {"X-HearthNet-Request-Id": trace} if trace else {}
    if signer is not None:  # peer API: errors are signed like every other reply
        return _signed_json_response(signer, trace, status, body, headers)
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _target_node(request: web.Request) -> str | None:
    """The owner's `X-HearthNet-Node`: a full node id whose providers alone may serve the
    call (a peer's, or ours), e.g. `doctor --mesh` asking each member; bad_request else."""
    node = request.headers.get("X-HearthNet-Node", "").strip()
    if not node:
        return None
    try:
        idkeys.parse_node_id(node)
    except HearthNetError as exc:
        raise HearthNetError("bad_request", f"X-HearthNet-Node: {exc.message}") from None
    return node


def _request_id(request: web.Request) -> str:
    """The request id to echo: only a well-formed one (a peer's header is hostile)."""
    rid = request.headers.get("X-HearthNet-Request-Id", "").strip()
    return rid if len(rid) == 26 and rid.isalnum() and rid.isascii() else ""


async def _write_or_stall(request: web.Request, resp: web.StreamResponse, chunk: bytes) -> bool:
    """Write one SSE frame, waiting until the socket has room for more. False when the
    frame did not go out within the stall timeout (the reader took no frame for that
    long): its connection is aborted. A slow reader is waited for; one that stopped
    reading must not hold the stream, its slot and its buffers forever."""
    try:
        await asyncio.wait_for(resp.write(chunk), flow.stall_seconds())
        return True
    except asyncio.TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        return False


def _wants_stream(request: web.Request, body: Any, descriptor: dict[str, Any] | None) -> bool:
    """SSE only when the caller accepts it, the capability streams (when its descriptor
    says; remote descriptors may not) and `input.stream` is not false — whatever else
    Accept lists (the spec's clients send `application/json, text/event-stream`)."""
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return False
    if descriptor is not None and descriptor.get("streams") is False:  # None: a remote one, unknown
        return False
    inp = body.get("input") if isinstance(body, dict) else None
    return not (isinstance(inp, dict) and inp.get("stream") is False)


def _int_query(request: web.Request, key: str, default: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        return max(0, min(int(raw), 10_000))
    except ValueError:
        raise HearthNetError("bad_request", f"query {key}={raw!r} is not an integer") from None
