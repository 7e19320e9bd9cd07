"""`hearthnet run`: render the supervisord config, start supervisord in the foreground,
wait for the tree to come up, and stop all of it on SIGINT/SIGTERM (DESIGN.md §2).

Kept apart from the workers it supervises (uvicorn's supervisor/server split): this module
only deals with processes, files and signals.
"""
from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from hearthnet.config import Config
from hearthnet.errors import HearthNetError
from hearthnet.logs import LOG_UMASK, prune_logs, secure_log_dir
from hearthnet.paths import ensure_private_dir
from hearthnet.ports import listener, try_bind
from hearthnet.services.embedding.available import embedding_unavailable
from hearthnet.sdnotify import Notifier, watchdog_interval
from hearthnet.supervisor_rpc import SupervisorRpc
from hearthnet.unixhttp import UnixHTTPConnection

STOP_BUDGET_SECONDS = 9.0  # SIGTERM to gone; the issue allows 10 s for the whole tree
STARTUP_WAIT_SECONDS = 60.0
SYSTEMD_ONLY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
STATUS_EVERY_SECONDS = 5.0  # how often the STATUS line is refreshed without a watchdog

COMMON = """autostart=true
autorestart=true
startsecs=1
startretries=3
stopsignal=TERM
stopwaitsecs=5
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3"""


class NotInitialised(HearthNetError):
    """This node has no keys or no community yet."""

    code = "not_initialised"


class PortInUse(HearthNetError):
    """The gateway's port is held by another process."""

    code = "port_in_use"


@dataclass(frozen=True)
class Program:
    name: str
    replicas: int = 1


def programs_for(cfg: Config, no_ui: bool) -> list[Program]:
    """The programs this node runs; later issues add theirs here."""
    progs = [Program("broker"), Program("gateway"), Program("ledger"), Program("governance"),
             Program("file"), Program("discovery"), Program("llm", cfg.workers.llm_replicas)]
    if embedding_unavailable(cfg) is None:  # else status and doctor say why not
        progs.append(Program("embedding"))
    if cfg.rag.enabled and knowledge_installed():
        progs.append(Program("rag"))
    if cfg.chat.enabled:
        progs.append(Program("chat"))
    if cfg.market.enabled:
        progs.append(Program("market"))
    if cfg.alerts.enabled:
        progs.append(Program("alerts"))
    if cfg.emergency.enabled:
        progs.append(Program("emergency"))
    if cfg.workers.echo:
        progs.append(Program("echo"))
    if cfg.ui.enabled and not no_ui and ui_installed():
        progs.append(Program("ui"))
    return progs


def ui_installed() -> bool:
    """The `ui` extra (gradio): a node without it runs headless rather than a FATAL ui."""
    import importlib.util

    return importlib.util.find_spec("gradio") is not None


def knowledge_installed() -> bool:
    """The `knowledge` extra (numpy, pypdf, usearch) is installed: a core install has no
    rag worker rather than a FATAL one."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("numpy", "pypdf", "usearch"))


def template_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "supervisor.conf", here.parent / "supervisor.conf"):
        if candidate.exists():
            return candidate
    raise HearthNetError("internal_error", "supervisor.conf template is missing from the install")


def render_supervisor_conf(cfg: Config, progs: list[Program], *, debug: bool) -> str:
    blocks = _split_blocks(template_path().read_text())
    wanted = {p.name: p for p in progs}
    kept = []
    for header, text in blocks:
        if header.startswith("program:"):
            prog = wanted.get(header.split(":", 1)[1])
            if prog is None:
                continue
            text = text.replace("{{llm_replicas}}", str(prog.replicas))
            if prog.replicas > 1 or "numprocs" in text:
                text = _set_numprocs(text, prog.replicas)
        kept.append(text)
    kept.append(f"[group:hearthnet]\nprograms={','.join(p.name for p in progs)}\n")
    out = "".join(kept).replace("{{common}}", COMMON)
    values = {"python": sys.executable, "run_dir": str(cfg.paths.run_dir),
              "log_dir": str(cfg.paths.log_dir),
              "supervisor_loglevel": "debug" if debug else "info"}
    for key, value in values.items():
        out = out.replace("{{%s}}" % key, value.replace("%", "%%"))
    return out


def _split_blocks(text: str) -> list[tuple[str, str]]:
    """Split an ini text into (section header, text) blocks; the preamble has header ''."""
    blocks: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines(keepends=True):
        if line.startswith("[") and "]" in line:
            blocks.append((line[1:line.index("]")], []))
        blocks[-1][1].append(line)
    return [(h, "".join(lines)) for h, lines in blocks]


def _set_numprocs(text: str, replicas: int) -> str:
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith("numprocs=")]
    lines.insert(1, f"numprocs={replicas}\n")
    return "".join(lines)


# ---- preflight -----------------------------------------------------------------------

def check_initialised(cfg: Config, config_flag: Path | None) -> None:
    key = cfg.identity.keys_dir / "device.ed25519"
    cid = cfg.community.community_id
    manifest = cfg.community_manifest_path if cid else None
    if key.exists() and manifest is not None and manifest.exists():
        return
    cmd = "hearthnet init" + (f" --config {config_flag}" if config_flag else "")
    missing = "keys" if not key.exists() else "a community"
    raise NotInitialised(message=f"this node has no {missing} yet; run: {cmd}")


def check_port_free(host: str, port: int) -> None:
    if try_bind(host, port) is None:
        return
    raise PortInUse(message=f"port {port} is in use by {port_holder(port)}; stop it or set "
                            f"transport.port (or HEARTHNET_TRANSPORT_PORT)")


def port_holder(port: int) -> str:
    pid, what = listener(port)
    if pid is None:
        return what
    return f"PID {pid} ({what})" if what else f"PID {pid}"


def check_not_running(cfg: Config) -> None:
    pidfile = cfg.paths.run_dir / "supervisord.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if psutil.pid_exists(pid) and "supervisord" in " ".join(_cmdline(pid)):
        raise HearthNetError("already_running", f"this node is already running (supervisord PID {pid}); "
                                                "stop it first")


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


# ---- the run itself -------------------------------------------------------------------

def prepare(cfg: Config, *, no_ui: bool, debug: bool) -> Path:
    """Write the run dir (0700), a fresh owner token (0600) and supervisord.conf."""
    run_dir = ensure_private_dir(cfg.paths.run_dir)
    secure_log_dir(cfg.paths.log_dir)
    prune_logs(cfg.paths.log_dir)  # rotated files past LOG_RETENTION_DAYS (the gateway prunes hourly)
    token = cfg.paths.api_token_file
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    os.chmod(token, 0o600)
    endpoint = {"socket": str(cfg.paths.api_socket), "peer_port": cfg.transport.port}
    cfg.paths.api_endpoint_file.write_text(json.dumps(endpoint))
    conf = cfg.paths.supervisor_conf
    conf.write_text(render_supervisor_conf(cfg, programs_for(cfg, no_ui), debug=debug))
    return run_dir


def _child_setup() -> None:
    """In supervisord's child: own session (the terminal's Ctrl-C reaches only us), die
    with us if we are killed outright (Linux PR_SET_PDEATHSIG), and create files private
    (supervisord in the foreground keeps our umask: its log, the worker logs and their
    rotations come out 0600; `umask=` in its config applies only when it daemonizes)."""
    os.setsid()
    os.umask(LOG_UMASK)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass  # not Linux/glibc: the stop path below still cleans up


def start_supervisord(cfg: Config, env: dict[str, str]) -> subprocess.Popen:
    # supervisord itself, hardened against a full log disk (hearthnet/supervisord_main.py).
    # -P here and in every program: the owner's working directory is not on sys.path (a
    # stray attr.py in ~/Downloads would otherwise shadow aiohttp's and stop the gateway).
    cmd = [sys.executable, "-P", "-m", "hearthnet.supervisord_main", "-n", "-c", str(cfg.paths.supervisor_conf)]
    with open(_supervisord_out(cfg), "wb") as out:  # config errors land here, not on a tty
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_child_setup, close_fds=True)


def _supervisord_out(cfg: Config) -> Path:
    return cfg.paths.run_dir / "supervisord.out"


def gateway_healthy(socket_path: Path) -> bool:
    conn = UnixHTTPConnection(str(socket_path), timeout=0.5)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def local_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def stop_tree(proc: subprocess.Popen, rpc: SupervisorRpc | None = None,
              budget: float = STOP_BUDGET_SECONDS) -> list[int]:
    """SIGTERM supervisord (it stops its group), then kill whatever is left. Returns the
    pids that had to be killed."""
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = [proc.pid]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        if rpc is not None:  # wake its loop so it acts on the signal now, not in a second
            rpc.poke_in_background(budget)
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    killed = []
    for pid in family:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
                killed.append(pid)
        except psutil.Error:
            continue
    return killed


def run_node(cfg: Config, *, no_ui: bool = False, debug: bool = False,
             config_flag: Path | None = None, on_event=None) -> int:
    """Blocks until SIGINT/SIGTERM; returns the exit code. `on_event(kind, data)` lets the
    CLI render progress ('starting', 'ready', 'stopping', 'stopped')."""
    check_initialised(cfg, config_flag)
    check_not_running(cfg)
    check_port_free(cfg.transport.host, cfg.transport.port)
    prepare(cfg, no_ui=no_ui, debug=debug)
    notifier = Notifier()  # a no-op unless systemd started us (Type=notify)
    # Only `run` (the unit's main process) talks to systemd: the tree must not inherit it.
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ONLY_ENV}
    env["HEARTHNET_CONFIG"] = str(cfg.source or cfg.paths.config_file)
    if debug:
        env["HEARTHNET_OBSERVABILITY_LOG_LEVEL"] = "debug"
    emit = on_event or (lambda kind, data: None)
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame) -> None:
        stop_requested.append(signum)

    old = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    proc = start_supervisord(cfg, env)
    rpc = SupervisorRpc(cfg.paths.supervisor_socket)
    try:
        emit("starting", {"pid": proc.pid})
        notifier.status("starting the workers")
        ui = any(p.name == "ui" for p in programs_for(cfg, no_ui))
        _wait_ready(cfg, proc, rpc, stop_requested, emit, ui_url=ui_address(cfg) if ui else None)
        link = SystemdLink(cfg, notifier, watchdog_interval()) if notifier.enabled else None
        while not stop_requested and proc.poll() is None:
            if link is not None:
                link.tick()
            time.sleep(0.2)
        notifier.stopping("stopping every process")
        emit("stopping", {})
        code = 0 if stop_requested else 1
        killed = stop_tree(proc, rpc)
        emit("stopped", {"killed": killed, "supervisord_exit": proc.returncode})
        return code
    finally:
        if proc.poll() is None:
            stop_tree(proc, rpc)
        for s, handler in old.items():
            signal.signal(s, handler)
        cfg.paths.api_token_file.unlink(missing_ok=True)
        cfg.paths.api_endpoint_file.unlink(missing_ok=True)


def ui_address(cfg: Config) -> str:
    host = cfg.ui.host if cfg.ui.lan_access else "127.0.0.1"
    return f"http://{local_host(host)}:{cfg.ui.port}"


def _wait_ready(cfg: Config, proc: subprocess.Popen, rpc: SupervisorRpc,
                stop_requested: list[int], emit, ui_url: str | None = None) -> None:
    deadline = time.monotonic() + STARTUP_WAIT_SECONDS
    while time.monotonic() < deadline and not stop_requested and proc.poll() is None:
        rpc.poke()  # supervisord spawns on its next loop pass: make that pass come now
        if gateway_healthy(cfg.paths.api_socket):
            # The local API is the unix socket; the TCP port is the peer API (other nodes).
            emit("ready", {"socket": str(cfg.paths.api_socket), "peer_host": cfg.transport.host,
                           "peer_port": cfg.transport.port, "ui": ui_url})
            return
        time.sleep(0.05)
    if proc.poll() is not None:
        tail = _supervisord_out(cfg).read_text(errors="replace").strip().splitlines()[-5:]
        raise HearthNetError("internal_error", "supervisord stopped at start (exit "
                             f"{proc.returncode}): " + " / ".join(tail) +
                             f"; logs in {cfg.paths.log_dir}")
    elif not stop_requested:
        emit("slow", {"log": str(cfg.paths.log_dir)})


# ---- under systemd (Type=notify) -----------------------------------------------------

class SystemdLink:
    """Tells systemd how the tree is doing: READY=1 once every worker is healthy (or,
    for one that supervisord gave up on, FATAL: the anchor's ledger and sync must not stay
    down because the LLM cannot load), STATUS= lines, and WATCHDOG=1 at the asked pace
    only while the local API answers and reports the broker healthy, so systemd restarts
    a node whose gateway or broker hangs."""

    def __init__(self, cfg: Config, notifier: Notifier, watchdog: float | None) -> None:
        from hearthnet.localapi import LocalApi

        self.notifier = notifier
        self.watchdog = watchdog
        probe_timeout = min(5.0, watchdog) if watchdog else 2.0
        self.api = LocalApi("localhost", 0, cfg.paths.api_token_file, socket_path=str(cfg.paths.api_socket),
                            connect_timeout=probe_timeout, get_timeout=probe_timeout)
        self.ready = False
        self.next_probe = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now < self.next_probe:
            return
        workers = self.probe()
        if not self.ready:
            self.next_probe = now + 0.2
            if workers is not None and self.all_settled(workers):
                self.ready = True
                self.notifier.ready(self.describe(workers))
            else:
                self.notifier.status(self.describe(workers, starting=True))
            return
        self.next_probe = now + (self.watchdog or STATUS_EVERY_SECONDS)
        if workers is not None and self.core_answers(workers):
            if self.watchdog:
                self.notifier.watchdog()
        self.notifier.status(self.describe(workers))

    def probe(self) -> list[dict] | None:
        """The gateway's /api/v1/workers, or None when the local API does not answer."""
        try:
            doc = self.api.get("/api/v1/workers")
        except (HearthNetError, OSError):
            return None
        workers = doc.get("workers")
        return workers if isinstance(workers, list) else None

    @staticmethod
    def all_settled(workers: list[dict]) -> bool:
        return bool(workers) and all(w.get("healthy") or w.get("state") == "FATAL" for w in workers)

    @staticmethod
    def core_answers(workers: list[dict]) -> bool:
        """The gateway answered (we have the list) and it reaches a live broker."""
        return any(w.get("name") == "broker" and w.get("healthy") for w in workers)

    @staticmethod
    def describe(workers: list[dict] | None, *, starting: bool = False) -> str:
        if workers is None:
            return "starting: the local API does not answer yet" if starting else \
                "the local API does not answer"
        bad = [f"{w.get('name')} {w.get('state')}" for w in workers if not w.get("healthy")]
        healthy = len(workers) - len(bad)
        if starting:
            return f"starting: {healthy}/{len(workers)} workers healthy"
        if not bad:
            return f"running: {healthy} workers healthy"
        return f"degraded: {healthy}/{len(workers)} workers healthy; not: {', '.join(bad)}"
