"""Self-diagnostics (spec X03 §6; `hearthnet doctor`).

Each check returns a CheckResult: ok True (pass), False (fail, with a fix), or None
(skipped, which does not count as a failure). Doctor works on a cold disk: the checks
that need a running node ask its local API and say "skipped: node not running" when no
node answers. A `warning` check that fails is shown with its fix but does not fail the
run (a node without an LLM backend still serves everything else). recent_error_rate counts
only failures on the node's side: a caller's mistake (not_found, bad_request, ...) is not
a sign of an unhealthy node.

    run_all(cfg) -> list[CheckResult]          run_one(name, cfg) -> CheckResult
    diagnose(config_path) / exit_code(results)  (config loading folded in as config_valid)
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearthnet.errors import ConfigError, HearthNetError, IdentityError, NodeNotRunning
from hearthnet.ports import listener, try_bind

if TYPE_CHECKING:
    from hearthnet.config import Config
    from hearthnet.localapi import LocalApi

MIN_FREE_BYTES = 1_000_000_000  # 1 GB
MAX_ERROR_RATE = 0.20
# Results that say the caller asked for something wrong, not that the node failed.
CALLER_ERRORS = frozenset({"bad_request", "schema_mismatch", "not_found", "unauthorized",
                           "invalid_signature", "revoked", "expired", "rate_limited"})
TRACE_WINDOW = 100
BACKEND_PROBE_TIMEOUT_SECONDS = 2.0
NOT_RUNNING = "skipped: node not running"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool | None  # None = skipped
    detail: str
    fix: str | None = None
    warning: bool = False  # a failure that is reported but does not fail the run
    crashed: bool = False  # the check itself raised: doctor exits 2

    @property
    def status(self) -> str:
        if self.crashed:
            return "crashed"
        if self.ok is None:
            return "skipped"
        if self.ok:
            return "ok"
        return "warn" if self.warning else "fail"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status
        return d


class DoctorContext:
    """What checks share during one run: the config and one view of the node."""

    def __init__(self, cfg: "Config") -> None:
        self.cfg = cfg
        self._api: LocalApi | None = None
        self._running: bool | None = None
        self._cache: dict[str, dict[str, Any]] = {}

    @property
    def api(self) -> "LocalApi":
        """The running node's local API (its unix socket, found through the run dir like
        every other command); with none running, the configured port, to tell whose it is."""
        if self._api is None:
            from hearthnet.localapi import LocalApi

            try:
                self._api = LocalApi.for_running_node(self.cfg.paths)
            except NodeNotRunning:
                self._api = LocalApi.from_config(self.cfg)
        return self._api

    def node_running(self) -> bool:
        """A node of ours answers: its token file exists and /health says ok."""
        if self._running is None:
            self._running = self.api.token_file.exists() and self.api.health()
        return self._running

    def get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        key = path + repr(sorted((query or {}).items()))
        if key not in self._cache:
            self._cache[key] = self.api.get(path, query)
        return self._cache[key]


Check = Callable[[DoctorContext], CheckResult]
CHECKS: dict[str, Check] = {}


def register(name: str) -> Callable[[Check], Check]:
    def deco(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return deco


def check_names() -> list[str]:
    return list(CHECKS)


# ----------------------------------------------------------------------------- running


def _run(name: str, ctx: DoctorContext) -> CheckResult:
    try:
        return CHECKS[name](ctx)
    except Exception as exc:  # one broken check must not hide the others' results
        return CheckResult(name, False, f"check crashed: {type(exc).__name__}: {exc}",
                           "this is a bug in hearthnet; please report it with this line", crashed=True)


def run_all(cfg: "Config") -> list[CheckResult]:
    ctx = DoctorContext(cfg)
    return [_run(name, ctx) for name in CHECKS]


def run_one(name: str, cfg: "Config") -> CheckResult:
    _require_known(name)
    return _run(name, DoctorContext(cfg))


def _require_known(name: str) -> None:
    if name not in CHECKS:
        raise HearthNetError("usage", f"unknown check {name!r}; valid checks: {', '.join(CHECKS)}")


def diagnose(config_path: Path | None = None, only: str | None = None) -> list[CheckResult]:
    """Load the config and run every check (or `only`). A config that does not load is
    itself the finding: config_valid fails and the checks that need it are skipped."""
    from hearthnet.config import config_path_for, load_config

    if only is not None:
        _require_known(only)
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        names = [only] if only else list(CHECKS)
        where = exc.details.get("path") or str(config_path_for(config_path))
        return [
            CheckResult("config_valid", False, exc.message, f"fix {where}")
            if n == "config_valid" else CheckResult(n, None, "skipped: config does not load")
            for n in names
        ]
    return [run_one(only, cfg)] if only else run_all(cfg)


def exit_code(results: list[CheckResult]) -> int:
    """0 all pass (skips and warnings included), 1 any failure, 2 a check crashed."""
    if any(r.crashed for r in results):
        return 2
    return 1 if any(r.ok is False and not r.warning for r in results) else 0


# ----------------------------------------------------------------------------- checks


@register("config_valid")
def check_config_valid(ctx: DoctorContext) -> CheckResult:
    cfg = ctx.cfg
    source = cfg.source or cfg.paths.config_file
    if source.exists():
        return CheckResult("config_valid", True, f"{source}")
    return CheckResult("config_valid", True, f"{source} does not exist; using defaults")


def _key_file(cfg: "Config") -> Path:
    return Path(cfg.identity.keys_dir) / "device.ed25519"


@register("keys_present")
def check_keys_present(ctx: DoctorContext) -> CheckResult:
    path = _key_file(ctx.cfg)
    try:
        st = path.stat()
    except FileNotFoundError:
        return CheckResult("keys_present", False, f"no device key at {path}", "run `hearthnet init` to create this node's identity")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        return CheckResult("keys_present", False, f"{path} has mode {mode:04o}, must be 0600", f"chmod 600 {path}")
    return CheckResult("keys_present", True, f"{path} (0600)")


@register("keys_loadable")
def check_keys_loadable(ctx: DoctorContext) -> CheckResult:
    if not _key_file(ctx.cfg).exists():
        return CheckResult("keys_loadable", None, "skipped: no device key")
    from hearthnet.identity.keys import load

    try:
        kp = load(Path(ctx.cfg.identity.keys_dir))
    except IdentityError as exc:
        fix = {
            "keys_permissions": f"chmod 600 {_key_file(ctx.cfg)}",
        }.get(exc.code, "restore the key from a backup; a new key (`hearthnet init` on an empty key dir) is a new identity")
        return CheckResult("keys_loadable", False, exc.message, fix)
    return CheckResult("keys_loadable", True, f"Ed25519, 32 bytes; node {kp.node_id_short}")


@register("community_present")
def check_community_present(ctx: DoctorContext) -> CheckResult:
    cfg = ctx.cfg
    cid = cfg.community.community_id
    if not cid:
        return CheckResult("community_present", False, "this node is not in a community yet",
                           "run `hearthnet init` to create one (or join with an invite)")
    manifest = cfg.community_manifest_path or (cfg.paths.communities_dir / cid / "manifest.json")
    if not manifest.exists():
        return CheckResult("community_present", False, f"community manifest missing: {manifest}",
                           "restore it from a backup, or run `hearthnet init` again")
    label = f"{cfg.community.name} " if cfg.community.name else ""
    return CheckResult("community_present", True, f"{label}({manifest})")


@register("event_log")
def check_event_log(ctx: DoctorContext) -> CheckResult:
    """Opens read-only (the ledger is the log's only writer, and it may be running),
    passes PRAGMA quick_check + the schema check, and the ledger could write to it."""
    cfg = ctx.cfg
    if not cfg.community.community_id or cfg.community.state_dir is None:
        return CheckResult("event_log", None, "skipped: no community yet")
    path = cfg.community.state_dir / "events.sqlite"
    if not path.exists():
        return CheckResult("event_log", False, f"no event log at {path}",
                           "start the node (`hearthnet run`): the ledger creates it; if this node had "
                           "one, restore events.sqlite from a backup", warning=True)
    from hearthnet.ledger.errors import LedgerError
    from hearthnet.ledger.store import check_file

    try:
        info = check_file(path)
    except LedgerError as exc:
        return CheckResult("event_log", False, exc.message, _event_log_restore_hint(path))
    unwritable = [str(p) for p in (path, path.parent) if not os.access(p, os.W_OK)]
    if unwritable:
        return CheckResult("event_log", False, f"the ledger cannot write {', '.join(unwritable)}",
                           f"give this user write access: chmod u+w {' '.join(unwritable)}")
    return CheckResult("event_log", True, f"{path}: {info['count']} events, head lamport {info['head']}")


def _event_log_restore_hint(path: Path) -> str:
    return (f"{path} is kept untouched: HearthNet never repairs, replaces or deletes an event log.\n"
            f"Stop the node, keep a copy of the damaged file, then restore events.sqlite from a\n"
            f"file-level backup of {path.parent}. Without a backup, move the damaged file aside\n"
            "yourself: the ledger starts an empty log and the community's peers send their events\n"
            "back when the node syncs.")


@register("transport_port")
def check_transport_port(ctx: DoctorContext) -> CheckResult:
    host, port = ctx.cfg.transport.host, ctx.cfg.transport.port
    fix = "stop that process, or pick another port: transport.port in config.toml or HEARTHNET_TRANSPORT_PORT"
    err = try_bind(host, port)
    if err is None:
        return CheckResult("transport_port", True, f"port {port} is free")
    if err.errno == errno.EADDRNOTAVAIL:
        return CheckResult("transport_port", False, f"{host} is not an address of this machine",
                           "set transport.host to one of this machine's addresses, or 0.0.0.0")
    if err.errno != errno.EADDRINUSE:
        return CheckResult("transport_port", False, f"cannot listen on {host}:{port}: {err.strerror}", fix)
    if ctx.node_running():
        return CheckResult("transport_port", True, f"port {port} is held by this node (running)")
    if ctx.api.health():
        return CheckResult("transport_port", False, f"port {port} is held by another HearthNet node (not this data dir's)", fix)
    return CheckResult("transport_port", False, f"port {port} is in use by {port_holder(port)}", fix)


def port_holder(port: int) -> str:
    """'pid 123 (nginx)' for the process listening on `port`, as far as we may know."""
    pid, what = listener(port)
    if pid is None:
        return what
    return f"pid {pid} ({what})" if what else f"pid {pid}"


@register("disk_space")
def check_disk_space(ctx: DoctorContext) -> CheckResult:
    path = Path(ctx.cfg.paths.data_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    detail = f"{free / 1e9:.1f} GB free on {path}"
    if free < MIN_FREE_BYTES:
        return CheckResult("disk_space", False, detail + " (need at least 1 GB)", "free some disk space")
    return CheckResult("disk_space", True, detail)


VERIFY_SAMPLE = 32  # chunks the blob_store check re-hashes


@register("blob_store")
def check_blob_store(ctx: DoctorContext) -> CheckResult:
    """Room (free space against file.min_free_bytes) and, with the node running, a random
    sample of stored chunks re-hashed by the file worker (file.status, file.verify)."""
    min_free = ctx.cfg.file.min_free_bytes
    if not ctx.node_running():
        path = Path(ctx.cfg.file.blobs_dir)
        while not path.exists() and path != path.parent:
            path = path.parent
        free = shutil.disk_usage(path).free
        if ctx.cfg.file.capacity_bytes:
            free = min(free, ctx.cfg.file.capacity_bytes)
        room = _room_result(free, min_free, f"on {path}")
        return CheckResult("blob_store", room.ok, f"{room.detail}; chunks not re-verified: node not running",
                           room.fix)

    def body() -> CheckResult:
        status = _self_call(ctx, "file.status", {})
        verify = _self_call(ctx, "file.verify", {"sample": VERIFY_SAMPLE})
        if verify.get("bad"):
            return CheckResult("blob_store", False,
                               f"{verify['bad']} of {verify.get('checked')} sampled chunks were corrupt on disk "
                               "(removed: the files they belong to are fetched again when needed)",
                               "check the disk (dmesg, smartctl), then run `hearthnet doctor --check blob_store` "
                               "again")
        room = _room_result(int(status.get("free_bytes") or 0), min_free, "")
        stored = f"{status.get('complete')} file(s), {int(status.get('store_bytes') or 0) / 1e9:.2f} GB stored; "
        if not room.ok:
            return CheckResult("blob_store", False, stored + room.detail, room.fix)
        return CheckResult("blob_store", True,
                           f"{stored}{room.detail}; {verify.get('checked', 0)} sampled chunks verified")

    return _node_check("blob_store", ctx, body)


def _room_result(free: int, min_free: int, where: str) -> CheckResult:
    detail = f"{free / 1e9:.1f} GB free for blobs{' ' + where if where else ''} (keeps {min_free / 1e9:.1f} GB)"
    if free < min_free:
        return CheckResult("blob_store", False, f"{detail}: below file.min_free_bytes, new files are refused",
                           "free disk space, unpin files you no longer need and run `hearthnet file gc`, "
                           "or lower file.min_free_bytes / raise file.capacity_bytes in config.toml")
    return CheckResult("blob_store", True, detail)


def _self_call(ctx: DoctorContext, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    return ctx.api.output(cap, inp)


@register("llm_backend_configured")
def check_llm_backend_configured(ctx: DoctorContext) -> CheckResult:
    backends = ctx.cfg.llm.backends
    if not backends:
        from hearthnet.config import LLM_BACKEND_SNIPPET

        source = ctx.cfg.source or ctx.cfg.paths.config_file
        return CheckResult("llm_backend_configured", False,
                           "no LLM backend configured: this node offers no llm.* capability",
                           "add one: `hearthnet model add FILE.gguf`, `hearthnet model pull NAME` "
                           f"(see `hearthnet model catalogue`), or edit {source}, for example:\n"
                           f"{LLM_BACKEND_SNIPPET.rstrip()}",
                           warning=True)
    names = ", ".join(f"{b.name} ({b.url or b.model_path or b.model or '-'})" for b in backends)
    return CheckResult("llm_backend_configured", True, names)


@register("llm_backend_reachable")
def check_llm_backend_reachable(ctx: DoctorContext) -> CheckResult:
    backends = ctx.cfg.llm.backends
    if not backends:
        return CheckResult("llm_backend_reachable", None, "skipped: no backend configured")
    good, bad = [], []
    for b in backends:
        if b.name in ("openai", "ollama"):
            problem = probe_url(b.url)
            (bad if problem else good).append(f"{b.url}" + (f": {problem}" if problem else ""))
        elif b.name == "llama_cpp":
            path = Path(b.model_path).expanduser()
            ok = path.is_file() and os.access(path, os.R_OK)
            (good if ok else bad).append(f"{path}" + ("" if ok else ": model file not found or unreadable"))
    if not good and not bad:
        return CheckResult("llm_backend_reachable", None, "skipped: no backend to probe")
    if good:
        return CheckResult("llm_backend_reachable", True, "; ".join(good + [f"unreachable {x}" for x in bad]))
    return CheckResult("llm_backend_reachable", False, "; ".join(bad),
                       "start the backend server or fix llm.backends[].url / model_path in config.toml")


@register("local_llm_server")
def check_local_llm_server(ctx: DoctorContext) -> CheckResult:
    """An Ollama / llama.cpp server on this machine (loopback) that config does not use yet."""
    from hearthnet.models.detect import offers

    found = offers(ctx.cfg)
    if not found:
        return CheckResult("local_llm_server", None, "skipped: no Ollama or llama.cpp server "
                           "not yet configured answers on this machine")
    detail = "; ".join(f"{d.describe()}; add it with `{d.add_command}`" for d in found)
    if ctx.cfg.llm.backends:
        return CheckResult("local_llm_server", True, detail)
    return CheckResult("local_llm_server", False, detail, found[0].add_command, warning=True)


@register("embedding_available")
def check_embedding_available(ctx: DoctorContext) -> CheckResult:
    from hearthnet.config import embedding_model
    from hearthnet.services.embedding.available import embedding_unavailable

    emb = ctx.cfg.embedding
    why = embedding_unavailable(ctx.cfg)
    if not emb.enabled:
        return CheckResult("embedding_available", None, f"skipped: {why}")
    if why:
        return CheckResult("embedding_available", False, f"embeddings unavailable: {why}",
                           "install what is named, or set [embedding] backend = \"openai\" with the url "
                           "and model of an OpenAI-compatible server", warning=True)
    where = f" at {emb.url}" if emb.backend == "openai" else ""
    return CheckResult("embedding_available", True, f"{emb.backend}: {embedding_model(emb)}{where}")


def probe_url(url: str) -> str | None:
    """One GET to exactly `url` (2 s timeout); None if any HTTP answer came back."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    if not parts.hostname:
        return "not a URL"
    conn = conn_cls(parts.hostname, parts.port, timeout=BACKEND_PROBE_TIMEOUT_SECONDS)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", target)
        conn.getresponse().read()
    except TimeoutError:
        return "no answer within 2 s"
    except (OSError, http.client.HTTPException) as exc:
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    finally:
        conn.close()
    return None


def _node_check(name: str, ctx: DoctorContext, body: Callable[[], CheckResult]) -> CheckResult:
    if not ctx.node_running():
        return CheckResult(name, None, NOT_RUNNING)
    try:
        return body()
    except NodeNotRunning:
        return CheckResult(name, None, NOT_RUNNING)
    except HearthNetError as exc:
        return CheckResult(name, False, f"the node answered with an error: {exc.message}",
                           "see `hearthnet status` and `hearthnet log --level warning`")


@register("workers_healthy")
def check_workers_healthy(ctx: DoctorContext) -> CheckResult:
    def body() -> CheckResult:
        workers = [w for w in ctx.get("/api/v1/workers").get("workers") or [] if isinstance(w, dict)]
        if not workers:
            return CheckResult("workers_healthy", False, "the node reports no workers", "see `hearthnet log`")
        bad = [w for w in workers if w.get("state") != "RUNNING"]
        if bad:
            names = ", ".join(f"{w.get('name')} {w.get('state')}" for w in bad)
            first = bad[0].get("name")
            return CheckResult("workers_healthy", False, names,
                               f"see `hearthnet status` and `hearthnet log --component {first}`")
        return CheckResult("workers_healthy", True, f"{len(workers)} workers RUNNING")

    return _node_check("workers_healthy", ctx, body)


@register("at_least_one_capability")
def check_at_least_one_capability(ctx: DoctorContext) -> CheckResult:
    def body() -> CheckResult:
        caps = [c for c in ctx.get("/api/v1/capabilities").get("capabilities") or [] if isinstance(c, dict)]
        local = sorted({f"{c.get('name')}@{c.get('version')}" for c in caps if c.get("local")})
        if not local:
            return CheckResult("at_least_one_capability", False, "this node serves no capability",
                               "configure an LLM backend or enable a service in config.toml, then restart")
        shown = ", ".join(local[:6]) + (", …" if len(local) > 6 else "")
        return CheckResult("at_least_one_capability", True, f"{len(local)} local: {shown}")

    return _node_check("at_least_one_capability", ctx, body)


@register("recent_error_rate")
def check_recent_error_rate(ctx: DoctorContext) -> CheckResult:
    def body() -> CheckResult:
        traces = [t for t in ctx.get("/api/v1/traces", {"n": TRACE_WINDOW}).get("traces") or [] if isinstance(t, dict)]
        if not traces:
            return CheckResult("recent_error_rate", True, "no calls yet")
        results = [str(t.get("result")) for t in traces]
        errors = sum(1 for r in results if r != "ok" and r not in CALLER_ERRORS)
        refused = sum(1 for r in results if r in CALLER_ERRORS)
        detail = f"{errors}/{len(traces)} of the last calls failed ({errors / len(traces):.0%})"
        if refused:
            detail += f"; {refused} more refused as the caller's mistake (e.g. unknown capability)"
        if errors / len(traces) >= MAX_ERROR_RATE:
            return CheckResult("recent_error_rate", False, detail, "inspect `hearthnet trace recent` and `hearthnet log --level error`")
        return CheckResult("recent_error_rate", True, detail)

    return _node_check("recent_error_rate", ctx, body)


# ----------------------------------------------------------------------------- network (issue 10)
# Bind/join only: these never send a packet (joining a group is the kernel's business).

MDNS_GROUP, MDNS_PORT = "224.0.0.251", 5353
CLOCK_SKEW_WARN_SECONDS = 60.0
CLOCK_PEERS = 3  # peers asked at most
CLOCK_TIMEOUT_SECONDS = 2.0


def _join_check(name: str, cfg: "Config", group: str, port: int) -> CheckResult:
    """Open the discovery listen socket (bound to the group, joined on each configured
    interface) and close it again."""
    from hearthnet.discovery.interfaces import select
    from hearthnet.discovery.udp import open_listen_socket

    sel = select(cfg.discovery.interfaces)
    if not sel.addrs:
        missing = f" (not found: {', '.join(sel.missing)})" if sel.missing else ""
        return CheckResult(name, False, f"no IPv4 interface to join {group} on{missing}",
                           "connect to a network, or fix discovery.interfaces in config.toml", warning=True)
    failed = []
    for iface in sel.addrs:
        try:
            open_listen_socket(group, port, iface).close()
        except Exception as exc:  # noqa: BLE001 - DiscoveryError or OSError: both are the finding
            failed.append(f"{iface.name} ({iface.ip}): {getattr(exc, 'message', None) or exc}")
    if failed:
        return CheckResult(name, False, f"cannot join {group}:{port} on " + "; ".join(failed),
                           "check the firewall and that no program holds the port without SO_REUSEPORT; "
                           "or set discovery.interfaces (peers can still be added by hand)", warning=True)
    return CheckResult(name, True, f"can join {group}:{port} on {sel.describe()}")


@register("mdns_socket")
def check_mdns_socket(ctx: DoctorContext) -> CheckResult:
    if not ctx.cfg.discovery.mdns_enabled:
        return CheckResult("mdns_socket", None, "skipped: discovery.mdns_enabled is false")
    return _join_check("mdns_socket", ctx.cfg, MDNS_GROUP, MDNS_PORT)


@register("udp_multicast")
def check_udp_multicast(ctx: DoctorContext) -> CheckResult:
    d = ctx.cfg.discovery
    if not d.udp_enabled:
        return CheckResult("udp_multicast", None, "skipped: discovery.udp_enabled is false")
    return _join_check("udp_multicast", ctx.cfg, d.udp_multicast_group, d.udp_port)


@register("overlay_peers")
def check_overlay_peers(ctx: DoctorContext) -> CheckResult:
    """Peers reached over an overlay (WireGuard, Tailscale, Yggdrasil) only: multicast cannot
    find them, so say so, and whether the peer cache keeps them (hearthnet/discovery/overlay.py)."""
    def body() -> CheckResult:
        from hearthnet.discovery.cache import PeerCache
        from hearthnet.discovery.overlay import overlay_peers

        try:
            listed = _self_call(ctx, "community.peers.list", {})
        except NodeNotRunning:
            raise
        except HearthNetError as exc:  # discovery off or restarting: no verdict on overlays
            return CheckResult("overlay_peers", None, f"skipped: no peer list from discovery ({exc.message})")
        peers = [p for p in listed.get("peers") or [] if isinstance(p, dict)]
        manual = [(e.host, e.port) for e in PeerCache.for_data_dir(ctx.cfg.paths.data_dir).load() if e.manual]
        found = overlay_peers(peers, manual)
        if not found:
            return CheckResult("overlay_peers", True, "no peer is reached over an overlay only")
        detail = "; ".join(p.sentence() for p in found)
        unkept = [p.address for p in found if not p.kept]
        if unkept:
            return CheckResult("overlay_peers", False, detail,
                               "keep them across restarts: " + ", ".join(f"`hearthnet peer add {a}`" for a in unkept),
                               warning=True)
        return CheckResult("overlay_peers", True, detail)

    return _node_check("overlay_peers", ctx, body)


def peer_date_skew(url: str, timeout: float = CLOCK_TIMEOUT_SECONDS) -> float:
    """Local clock minus the `Date` header of any answer from `url` (seconds); never
    changes the clock. TLS is not verified: only the header is read."""
    import email.utils
    import ssl
    import time
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout, context=ctx) as r:
            date = r.headers.get("Date")
    except urllib.error.HTTPError as exc:  # an error answer still carries the peer's Date
        date = exc.headers.get("Date")
    if not date:
        raise ValueError("no Date header")
    return time.time() - email.utils.parsedate_to_datetime(date).timestamp()


def _peer_url(endpoint: Any) -> str | None:
    if isinstance(endpoint, dict):
        endpoint = endpoint.get("url") or (f"{endpoint.get('host')}:{endpoint.get('port')}" if endpoint.get("host") else None)
    if not isinstance(endpoint, str) or not endpoint:
        return None
    return endpoint if "://" in endpoint else f"https://{endpoint}/"


@register("clock_sanity")
def check_clock_sanity(ctx: DoctorContext) -> CheckResult:
    def body() -> CheckResult:
        peers = [p for p in ctx.get("/api/v1/status").get("peers") or [] if isinstance(p, dict)]
        urls = [u for u in (_peer_url(p.get("endpoint")) for p in peers) if u][:CLOCK_PEERS]
        if not urls:
            return CheckResult("clock_sanity", None, "skipped: no peer to compare the clock with")
        return clock_result(urls)

    return _node_check("clock_sanity", ctx, body)


def clock_result(urls: list[str]) -> CheckResult:
    skews, errors = [], []
    for url in urls:
        try:
            skews.append(peer_date_skew(url))
        except Exception as exc:  # noqa: BLE001 - an unreachable peer is no verdict on our clock
            errors.append(f"{url}: {exc}")
    if not skews:
        return CheckResult("clock_sanity", None, "skipped: no peer answered (" + "; ".join(errors) + ")")
    worst = max(skews, key=abs)
    detail = f"off by {worst:+.0f} s from {len(skews)} peer(s) (their Date header; never corrected)"
    if abs(worst) > CLOCK_SKEW_WARN_SECONDS:
        return CheckResult("clock_sanity", False, detail,
                           "set this machine's clock (NTP, `timedatectl set-ntp true`); signatures and "
                           "expiries compare times", warning=True)
    return CheckResult("clock_sanity", True, detail)
