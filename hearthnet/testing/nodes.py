"""Real nodes for integration tests and benchmarks: each with its own XDG dirs, run dir and port, driven
through the `hearthnet` CLI in subprocesses, and always stopped (every pid checked gone)."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from hearthnet.testing.waiting import wait_for
from hearthnet.unixhttp import UnixHTTPConnection

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unwrap(doc: dict[str, Any]) -> dict[str, Any]:
    """A `--json` success document without its envelope (README "JSON output")."""
    assert doc.get("ok") is True and doc.get("schema_version") == 1, doc
    return {k: v for k, v in doc.items() if k not in ("ok", "schema_version")}


class Node:
    def __init__(self, root: Path, name: str = "node", python: str = sys.executable) -> None:
        self.root = root
        self.name = name
        self.python = python  # another venv's interpreter, e.g. to test an installed wheel
        self.cwd: Path | None = None
        self.port = free_port()
        # ipc socket paths must stay short: the run dir lives directly under /tmp
        self.run_dir = Path(f"/tmp/hn-it-{os.getpid()}-{self.port}")
        self.env = dict(os.environ)
        self.env.update({
            "XDG_DATA_HOME": str(root / "data"), "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_CACHE_HOME": str(root / "cache"), "XDG_STATE_HOME": str(root / "state"),
            "HEARTHNET_RUN_DIR": str(self.run_dir),
            "HEARTHNET_TRANSPORT_HOST": "127.0.0.1",
            "HEARTHNET_TRANSPORT_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            # Network rule: single-host tests never multicast out of the machine's real
            # interfaces; nodes meet through `peer add`/invites (netns tests turn it on).
            "HEARTHNET_DISCOVERY_MDNS_ENABLED": "false",
            "HEARTHNET_DISCOVERY_UDP_ENABLED": "false",
            # ... and the emergency detector probes nothing outside (no targets: online);
            # tests that probe point it at servers of their own.
            "HEARTHNET_EMERGENCY_PROBE_TARGETS": "",
            # ... nor does `init`/`doctor` look for an LLM server on this host's usual ports.
            "HEARTHNET_MODELS_DETECT_OLLAMA_URL": "",
            "HEARTHNET_MODELS_DETECT_LLAMA_CPP_URL": "",
        })
        self.proc: subprocess.Popen | None = None
        self.seen_pids: set[int] = set()

    # ---- CLI ---------------------------------------------------------------------------

    def cli(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, "-m", "hearthnet", *args], env=self.env, cwd=self.cwd,
                              capture_output=True, text=True, input=input, timeout=timeout)

    def cli_json(self, *args: str, timeout: float = 120) -> Any:
        """A CLI command with --json that must succeed; its result's own keys (the envelope,
        `ok` and `schema_version`, is checked and left out)."""
        r = self.cli(*args, "--json", timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: hearthnet {' '.join(args)}: {r.stderr or r.stdout}")
        return unwrap(json.loads(r.stdout))

    def init(self, display_name: str | None = None) -> None:
        r = self.cli("init", "--non-interactive", "--name", display_name or self.name)
        assert r.returncode == 0, r.stderr + r.stdout

    @property
    def config_file(self) -> Path:
        return self.root / "config" / "hearthnet" / "config.toml"

    @property
    def log_dir(self) -> Path:
        return self.root / "state" / "hearthnet" / "log"

    def add_config(self, toml_text: str) -> None:
        with self.config_file.open("a") as f:
            f.write("\n" + toml_text + "\n")

    # ---- process -----------------------------------------------------------------------

    def start(self, *extra: str, wait_workers: tuple[str, ...] = ("broker", "gateway")) -> None:
        self.proc = subprocess.Popen([self.python, "-m", "hearthnet", "run", "--no-ui", *extra],
                                     env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.wait_healthy(wait_workers)

    def wait_healthy(self, programs: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        """The node's status once every program in `programs` has a healthy worker."""
        last: dict[str, Any] = {}

        def healthy() -> dict[str, Any] | None:
            assert self.proc is not None and self.proc.poll() is None, self.proc_output()  # ends the wait
            status: dict[str, Any] = self.api("/api/v1/status")
            last["status"] = status
            self._remember_pids()
            ok = {w["program"] for w in status["workers"] if w["healthy"]}
            return status if set(programs) <= ok else None

        return wait_for(healthy, timeout, 0.1, message=lambda: f"node healthy ({', '.join(programs)}); last status: "
                        f"{json.dumps(last.get('status'), indent=1)[:3000]}")

    def proc_output(self) -> str:
        """What `hearthnet run` printed (only once it has exited)."""
        if self.proc is None or self.proc.stdout is None or self.proc.poll() is None:
            return ""
        return self.proc.stdout.read()

    def token(self) -> str:
        return (self.run_dir / "api.token").read_text().strip()

    def api(self, path: str, method: str = "GET", body: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 30) -> Any:
        status, data = self.request(path, method, body, headers, timeout)
        return json.loads(data)

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "api.sock"

    def request(self, path: str, method: str = "GET", body: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 30,
                auth: bool = True, peer: bool = False) -> tuple[int, bytes]:
        """Local API over the node's unix socket, or (peer=True) the HTTPS peer port."""
        if peer:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # self-signed; pinning is the peers' business
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=ctx)
            auth = False
        else:
            conn = UnixHTTPConnection(str(self.api_socket), timeout=timeout)
        hdrs = {"Content-Type": "application/json"}
        if auth:
            hdrs["Authorization"] = f"Bearer {self.token()}"
        hdrs.update(headers or {})
        payload = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        try:
            conn.request(method, path, body=payload, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def call(self, cap: str, body: Any, timeout: float = 60) -> tuple[int, Any]:
        status, data = self.request("/bus/v1/call", "POST", body,
                                    {"X-HearthNet-Capability": cap}, timeout=timeout)
        return status, json.loads(data)

    # ---- the mesh ------------------------------------------------------------------------

    def peer_add(self, other: Any) -> None:
        """`hearthnet peer add` of another node (anything with a loopback `port`)."""
        r = self.cli("peer", "add", f"127.0.0.1:{other.port}")
        assert r.returncode == 0, r.stderr + r.stdout

    def peers(self) -> set[str]:
        """The verified peers `status` lists (empty while the node is not answering)."""
        try:
            return {p["node_id"] for p in self.api("/api/v1/status").get("peers", [])}
        except (OSError, ValueError):
            return set()

    def _remember_pids(self) -> None:
        if self.proc is None:
            return
        try:
            root = psutil.Process(self.proc.pid)
            self.seen_pids.add(root.pid)
            self.seen_pids.update(c.pid for c in root.children(recursive=True))
        except psutil.Error:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> float:
        """Stop the tree; returns seconds taken. Kills anything left so tests never leak."""
        if self.proc is None:
            return 0.0
        self._remember_pids()
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        took = time.monotonic() - t0
        self.kill_leftovers()
        return took

    def leftovers(self) -> list[int]:
        alive = []
        for pid in self.seen_pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                continue
        return alive

    def kill_leftovers(self) -> list[int]:
        left = self.leftovers()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return left

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def key_of(node: Node) -> Any:
    """The node's device key pair (hearthnet.identity.keys.KeyPair), from its keys dir."""
    from hearthnet.identity import keys

    return keys.load(node.root / "data" / "hearthnet" / "keys")


def join_by_invite(founder: Node, joiner: Node, ttl_hours: str = "2") -> str:
    """`hearthnet id` on the joiner, `invite create` on the (running) founder, `invite
    redeem` on the (stopped) joiner; returns the joiner's node id."""
    node_id = joiner.cli_json("id")["node_id"]
    invite = founder.cli_json("invite", "create", "--node-id", node_id, "--level", "member",
                              "--ttl", ttl_hours, "--out", str(joiner.root / "invite.png"))["invite"]
    joiner.cli_json("invite", "redeem", invite, "--yes")
    return node_id


def start_three(make_node: Any, workers: tuple[str, ...]) -> tuple[Node, Node, Node, dict[str, str]]:
    """alice founds, bob and carol join by invite, all run `workers` and are peered with
    each other; with {name: node id}."""
    a, b, c = make_node("alice"), make_node("bob"), make_node("carol")
    a.init()
    a.start(wait_workers=workers)
    for newcomer in (b, c):
        join_by_invite(a, newcomer)
    b.start(wait_workers=workers)
    c.start(wait_workers=workers)
    for x, y in ((a, b), (b, a), (a, c), (c, a), (b, c), (c, b)):
        x.peer_add(y)
    return a, b, c, {n.name: n.api("/api/v1/status")["node"]["node_id"] for n in (a, b, c)}
