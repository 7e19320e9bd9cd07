"""A throw-away LAN of network namespaces with one real HearthNet node in each: for the
multi-node integration tests, the discovery benchmark and `scripts/mesh-lab`.

Topology (N nodes, prefix P; every link lives inside namespaces made here):

    P-hub : br0 (bridge, multicast snooping off) + p1 .. pN
    P-nK  : lo, veth0 10.231.0.K/24  <->  pK in P-hub

Each veth pair is created by `ip -n P-hub link add pK type veth peer name veth0 netns P-nK`,
so neither end ever exists in the host namespace, and `build()` checks that each namespace
holds exactly those links: a node can reach the other nodes' 10.231.0.0/24 addresses and
nothing else (no default route, no link to the host). Nodes are additionally restricted to
veth0 (`discovery.interfaces`) and bind their peer port to 10.231.0.K.

Cleanup (`cleanup()`, idempotent, also on `__exit__` and by `MeshLab.remove_leftovers`)
stops the nodes, SIGKILLs whatever still runs inside a namespace of the prefix (by pid,
from `ip netns pids`), deletes every namespace named `P-hub` / `P-n<digits>` and the lab's
directory `/tmp/P`. A run re-using a prefix first removes what a crashed run left behind;
a lock file (`/tmp/P.lock`) keeps two live labs from sharing one prefix.

    with MeshLab(3, "hnlab") as lab:
        nodes = [lab.node(k) for k in lab.ks]
        ...

`loopback_namespace(P)` is the smallest case: one namespace `P-n1` holding only `lo`, for a
run with the outside really gone (`in_netns` builds the `ip netns exec` argv); the same
lock and cleanup apply, and `remove_stale(stem)` removes what crashed `<stem><pid>` runs left.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence

import psutil

from hearthnet.testing.nodes import Node

SUBNET = "10.231.0"
PEER_PORT = 7080
MAX_NODES = 200  # 10.231.0.K with K in 1..200; the hub needs no address
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,11}$")  # no '-': "P-" must never match another prefix
IP_TIMEOUT_SECONDS = 20.0
STOP_SECONDS = 15.0
CORE_WORKERS = ("broker", "gateway", "ledger", "discovery")


class LabError(RuntimeError):
    """The lab cannot be built or torn down (not root, no `ip`, prefix busy, leftovers)."""


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS)
    if check and r.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def namespaces() -> list[str]:
    """Every named network namespace (`ip netns list` prints `name (id: N)`)."""
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def lab_namespaces(prefix: str) -> list[str]:
    """The namespaces a lab with this prefix creates: `P-hub` and `P-n<digits>`."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(hub|n\d+)$")
    return [ns for ns in namespaces() if pattern.match(ns)]


def _check_prefix(prefix: str) -> None:
    if not PREFIX_RE.match(prefix):
        raise LabError(f"prefix {prefix!r}: use 2-12 lowercase letters/digits, starting with a letter, no '-'")


def _links(ns: str) -> set[str]:
    out = ip("-n", ns, "-o", "link", "show").stdout
    # "2: veth0@if5: <...>" -> "veth0"
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}


def _kill_pids(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what is left after `grace` seconds. Only pids we were given."""
    procs = []
    for pid in set(pids):
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def remove_lab(prefix: str, root: Path | None = None) -> list[str]:
    """Kill every process inside the prefix's namespaces, delete the namespaces and the
    lab's directory. Returns the namespaces that could not be deleted (normally none)."""
    _check_prefix(prefix)
    found = lab_namespaces(prefix)
    pids: list[int] = []
    for ns in found:
        pids += [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
    _kill_pids(pids)
    for ns in found:
        ip("netns", "del", ns, check=False)
    shutil.rmtree(root or Path("/tmp") / prefix, ignore_errors=True)
    return lab_namespaces(prefix)


class PrefixLock:
    """`/tmp/P.lock`, held (flock) while a lab of prefix P is being built, used or removed,
    so one lab never removes another's namespaces. The kernel drops it when its holder
    dies, so a crashed run's prefix can be cleaned up by the next one."""

    def __init__(self, prefix: str) -> None:
        _check_prefix(prefix)
        self.prefix = prefix
        self.path = Path("/tmp") / f"{prefix}.lock"
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        if self._file is not None:
            return
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise LabError(f"a lab with prefix {self.prefix!r} is in use (pid {holder}); "
                           "pick another prefix or wait for it to end") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def remove_leftovers(prefix: str) -> list[str]:
    """`remove_lab` under the prefix's lock: refuses (LabError) while a lab of that prefix
    is in use, so it only ever removes what a finished or crashed run left."""
    lock = PrefixLock(prefix)
    lock.acquire()
    try:
        return remove_lab(prefix)
    finally:
        lock.release()


def in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside namespace `ns` (`ip netns exec` keeps the environment)."""
    return ["ip", "netns", "exec", ns, *argv]


def check_loopback_only(ns: str) -> None:
    """LabError unless `ns` holds `lo` and nothing else, and every route in every table
    goes through `lo`: nothing run in it can reach anything outside the namespace."""
    if (got := _links(ns)) != {"lo"}:
        raise LabError(f"{ns} has links {sorted(got)}, expected lo only")
    for family in ("-4", "-6"):
        routes = ip("-n", ns, family, "route", "show", "table", "all").stdout.splitlines()
        if off := [r for r in routes if r.strip() and " dev lo " not in f" {r} "]:
            raise LabError(f"{ns} has routes not through lo: {off}")


@contextlib.contextmanager
def loopback_namespace(prefix: str) -> Iterator[str]:
    """A fresh namespace `P-n1` holding only `lo` (up), no other link and no route off it,
    for a test that must run with the outside really gone (tests/integration/
    test_ui_offline_netns.py). The prefix is locked (PrefixLock) while it lives; what a
    crashed run of the prefix left is removed first; on exit, also after an error, every
    process still in it is killed and it is deleted (`remove_lab`)."""
    reason = unavailable_reason()
    if reason:
        raise LabError(reason)
    lock = PrefixLock(prefix)
    lock.acquire()
    ns = f"{prefix}-n1"
    try:
        if left := remove_lab(prefix):
            raise LabError(f"namespaces of an earlier run could not be removed: {', '.join(left)}")
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        check_loopback_only(ns)
        yield ns
    finally:
        left = remove_lab(prefix)
        if not left:  # else keep the prefix locked: a later remove_leftovers may still succeed
            lock.path.unlink(missing_ok=True)
            lock.release()
    if left:
        raise LabError(f"namespaces left behind: {', '.join(left)}")


def remove_stale(stem: str) -> list[str]:
    """`remove_leftovers` for every prefix `<stem><digits>` (a per-process prefix such as
    `hnui<pid>`) that still has namespaces and whose lock nobody holds: what crashed runs
    left. Prefixes in use are skipped. Returns the prefixes removed."""
    pattern = re.compile(rf"^({re.escape(stem)}\d+)-(hub|n\d+)$")
    removed = []
    for prefix in sorted({m.group(1) for ns in namespaces() if (m := pattern.match(ns))}):
        with contextlib.suppress(LabError):  # a live run holds it
            remove_leftovers(prefix)
            removed.append(prefix)
    return removed


# --------------------------------------------------------------------------- nodes


class LabNode(Node):
    """One real HearthNet node inside namespace K: its own XDG dirs under the lab's
    directory, run dir `/tmp/P/nK/run`, peer port 10.231.0.K:7080, discovery (UDP +
    mDNS by default) restricted to veth0. Every CLI run and `hearthnet run` happens inside
    the namespace (`ip netns exec`); the local API is reached from here through the unix
    socket (a file, so it crosses namespaces)."""

    def __init__(self, lab: "MeshLab", k: int, *, udp: bool = True, mdns: bool = True,
                 echo: bool = False, env: Mapping[str, str] | None = None) -> None:
        super().__init__(lab.root / f"n{k}", f"node{k}", python=lab.python)
        self.lab, self.k = lab, k
        self.netns = lab.ns(k)
        self.host = lab.addr(k)
        self.port = PEER_PORT
        self.run_dir = self.root / "run"
        self.out_path = self.root / "run.out"  # what `hearthnet run` prints
        self.launched_at: float | None = None
        self._out: IO[bytes] | None = None
        self.env.update({
            "HEARTHNET_RUN_DIR": str(self.run_dir),
            "HEARTHNET_TRANSPORT_HOST": self.host,
            "HEARTHNET_TRANSPORT_PORT": str(self.port),
            "HEARTHNET_NODE_DISPLAY_NAME": self.name,
            "HEARTHNET_DISCOVERY_INTERFACES": "veth0",
        })
        self.configure(udp=udp, mdns=mdns, echo=echo)
        self.env.update(env or {})
        self.root.mkdir(parents=True, exist_ok=True)

    def configure(self, *, udp: bool | None = None, mdns: bool | None = None, echo: bool | None = None) -> None:
        """Discovery mechanisms and the echo worker for the next start."""
        for key, value in (("DISCOVERY_UDP_ENABLED", udp), ("DISCOVERY_MDNS_ENABLED", mdns),
                           ("WORKERS_ECHO", echo)):
            if value is not None:
                self.env[f"HEARTHNET_{key}"] = "true" if value else "false"

    # ---- commands inside the namespace ---------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return in_netns(self.netns, [self.python, "-m", "hearthnet", *args])

    def cli(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        # cwd: a command given a relative path (`--out x.png`) writes it here
        return subprocess.run(self.argv(*args), env=self.env, cwd=self.root, capture_output=True, text=True,
                              input=input, timeout=timeout)

    def cli_json(self, *args: str, timeout: float = 60) -> Any:
        r = self.cli(*args, "--json", timeout=timeout)
        if r.returncode != 0:
            raise LabError(f"{self.name}: hearthnet {' '.join(args)} --json exited {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[-2000:]}")
        from hearthnet.testing.nodes import unwrap

        return unwrap(json.loads(r.stdout))

    def shell_env(self) -> str:
        """`export ...` lines that make `hearthnet` in a shell talk to this node."""
        keys = sorted(k for k in self.env if k.startswith(("HEARTHNET_", "XDG_")))
        return "".join(f"export {k}={shlex.quote(self.env[k])}\n" for k in keys)

    # ---- the node process ----------------------------------------------------------------

    def launch(self) -> None:
        """Start `hearthnet run --no-ui` in the namespace without waiting for it. Own
        session: a Ctrl-C on the lab's terminal reaches the lab, which stops the nodes."""
        self._close_out()
        self._out = open(self.out_path, "ab")
        self.seen_pids.clear()
        self.proc = subprocess.Popen(self.argv("run", "--no-ui"), env=self.env, cwd=self.root, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self.launched_at = time.monotonic()

    def start(self, *extra: str, wait_workers: tuple[str, ...] = CORE_WORKERS) -> None:
        if extra:
            raise ValueError("LabNode.start takes no extra `run` arguments")
        self.launch()
        self.wait_healthy(wait_workers)

    def proc_output(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill_tree(self) -> int:
        """SIGKILL every process of this node at once (a power cut, as far as the node can
        tell). Returns how many were killed."""
        procs = self.tree()
        self.seen_pids.update(p.pid for p in procs)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(procs, timeout=10)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        self.kill_leftovers()
        self._close_out()
        return len(procs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_SECONDS) -> float:
        if self.proc is not None:
            self._remember_pids()
        took = super().stop(sig, timeout)
        self._close_out()
        return took

    def _close_out(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    # ---- the local API -------------------------------------------------------------------

    def capability(self, cap: str, inp: Any = None, timeout: float = 10) -> dict[str, Any]:
        """Call through the local API; the output, or LabError with the wire error."""
        status, data = self.request("/bus/v1/call", "POST", {"params": {}, "input": inp or {}},
                                    {"X-HearthNet-Capability": cap, "X-HearthNet-Timeout": str(timeout)},
                                    timeout=timeout + 5)
        body = json.loads(data)
        if status != 200:
            raise LabError(f"{self.name}: {cap} -> {status} {body}")
        return body["output"]

    def peer_list(self, timeout: float = 3) -> dict[str, Any]:
        """`community.peers.list`: {peers, discovery, diagnose}."""
        return self.capability("community.peers.list", {}, timeout=timeout)

    def peers_or_none(self) -> dict[str, Any] | None:
        """peer_list, or None while the node (its gateway, broker or discovery) is not up."""
        if not self.running():
            return None
        try:
            return self.peer_list()
        except (OSError, ValueError, LabError):
            return None

    def node_id(self) -> str:
        return self.api("/api/v1/status")["node"]["node_id"]

    def event_ids(self) -> set[str]:
        out = self.capability("community.log.events", {"since_lamport": 0}, timeout=30)
        return {e["event_id"] for e in out["events"]}

    def append(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.capability("community.log.append", {"event_type": event_type, "data": data})["event"]


# --------------------------------------------------------------------------- the lab


@dataclass
class MeshLab:
    """N namespaces on one bridge, and the nodes started in them (see the module doc)."""

    n: int
    prefix: str = "hnlab"
    python: str = sys.executable
    keep: bool = False  # cleanup() leaves everything running (scripts/mesh-lab --keep)
    nodes: dict[int, LabNode] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_prefix(self.prefix)
        if not 1 <= self.n <= MAX_NODES:
            raise LabError(f"a lab has 1 to {MAX_NODES} nodes, not {self.n}")
        self.root = Path("/tmp") / self.prefix
        self.hub = f"{self.prefix}-hub"
        self.lock = PrefixLock(self.prefix)

    @property
    def ks(self) -> range:
        return range(1, self.n + 1)

    def ns(self, k: int) -> str:
        return f"{self.prefix}-n{k}"

    def addr(self, k: int) -> str:
        return f"{SUBNET}.{k}"

    # ---- build / teardown ------------------------------------------------------------

    def __enter__(self) -> "MeshLab":
        try:
            self.build()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def build(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise LabError(reason)
        self.lock.acquire()  # before anything is removed or made: the prefix is ours now
        left = remove_lab(self.prefix, self.root)  # what a crashed run with this prefix left
        if left:
            raise LabError(f"namespaces of an earlier run could not be removed: {', '.join(left)}")
        self.root.mkdir(mode=0o700, parents=True)
        for ns in (self.hub, *(self.ns(k) for k in self.ks)):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for k in self.ks:
            ip("-n", self.hub, "link", "add", f"p{k}", "type", "veth", "peer", "name", "veth0", "netns", self.ns(k))
            ip("-n", self.hub, "link", "set", f"p{k}", "master", "br0", "up")
            ip("-n", self.ns(k), "addr", "add", f"{self.addr(k)}/24", "dev", "veth0")
            ip("-n", self.ns(k), "link", "set", "veth0", "up")
        self.check_isolated()

    def check_isolated(self) -> None:
        """Each namespace holds exactly the links of the topology, so nothing a node sends
        can leave through the host's interfaces."""
        want_hub = {"lo", "br0", *(f"p{k}" for k in self.ks)}
        if (got := _links(self.hub)) != want_hub:
            raise LabError(f"{self.hub} has links {sorted(got)}, expected {sorted(want_hub)}")
        for k in self.ks:
            if (got := _links(self.ns(k))) != {"lo", "veth0"}:
                raise LabError(f"{self.ns(k)} has links {sorted(got)}, expected lo and veth0 only")
            routes = ip("-n", self.ns(k), "-4", "route", "show").stdout.split("\n")
            if any(r.startswith("default") for r in routes):
                raise LabError(f"{self.ns(k)} has a default route")

    def leftovers(self) -> list[str]:
        """Namespaces of this prefix that still exist."""
        return lab_namespaces(self.prefix)

    def cleanup(self) -> list[str]:
        """Stop every node (all at once), kill what is left in the namespaces, delete them
        and the lab directory, release the prefix. Idempotent; does nothing unless this lab
        holds the prefix (so a lab that failed to start never removes another's). With
        keep=True it only releases the prefix. Raises LabError if namespaces are left."""
        if not self.lock.held:
            return self.leftovers()
        if self.keep:
            self.lock.release()
            return self.leftovers()
        self.stop_nodes()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        left = remove_lab(self.prefix, self.root)
        if left:  # keep the prefix: a retry may still remove them
            raise LabError(f"namespaces left behind: {', '.join(left)}")
        self.lock.release()
        return left

    # ---- processes ---------------------------------------------------------------------

    def run(self, k: int, argv: Sequence[str], env: Mapping[str, str] | None = None,
            **popen: Any) -> subprocess.Popen:
        """Start `argv` inside namespace K; the lab kills it at cleanup if still running."""
        proc = subprocess.Popen(in_netns(self.ns(k), argv),
                                env=dict(env) if env is not None else None, **popen)
        self.procs.append(proc)
        return proc

    def node(self, k: int, **opts: Any) -> LabNode:
        """Node K (created on first use; `opts` as LabNode's)."""
        if k not in self.ks:
            raise LabError(f"node {k} is not in this lab (1..{self.n})")
        if k not in self.nodes:
            self.nodes[k] = LabNode(self, k, **opts)
        return self.nodes[k]

    def stop_nodes(self, ks: Iterable[int] | None = None, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM the chosen nodes together, wait, then SIGKILL anything left."""
        chosen = [self.nodes[k] for k in (ks if ks is not None else list(self.nodes)) if k in self.nodes]
        for node in chosen:
            if node.running():
                node._remember_pids()
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in chosen:
            if node.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            node.kill_leftovers()
            node._close_out()

    def launch_all(self, ks: Iterable[int] | None = None) -> float:
        """Launch the chosen nodes back to back; returns the monotonic time of the last launch."""
        for k in (ks if ks is not None else self.ks):
            self.nodes[k].launch()
        return time.monotonic()


# --------------------------------------------------------------------------- communities


def invite_commands_missing(python: str = sys.executable) -> list[str]:
    """The `hearthnet` commands a shared community needs that this install lacks."""
    missing = []
    for cmd in (("id",), ("invite", "create"), ("invite", "redeem"), ("peer", "add")):
        r = subprocess.run([python, "-m", "hearthnet", *cmd, "--help"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            missing.append("hearthnet " + " ".join(cmd))
    return missing


def found(node: LabNode) -> dict[str, Any]:
    """`hearthnet init` (a new community with this node as its founder): init's JSON
    (node_id, community_id, ...)."""
    return node.cli_json("init", "--non-interactive", "--name", node.name)


def join(founder: LabNode, joiner: LabNode, ttl_hours: int = 24) -> str:
    """Bring `joiner` into the founder's community the way a person would: `hearthnet id`
    (on a fresh device it creates the key and nothing else), `invite create` on the
    (running) founder, `invite redeem` on the joiner (inside its namespace, so it reaches
    the founder over the lab's bridge). Returns the joiner's node id."""
    node_id = joiner.cli_json("id")["node_id"]
    invite = founder.cli_json("invite", "create", "--node-id", node_id, "--level", "member",
                              "--ttl", str(ttl_hours))["invite"]
    joiner.cli_json("invite", "redeem", invite, "--yes", timeout=120)
    return node_id


def form_community(lab: "MeshLab", log: Callable[[str], None] = lambda text: None) -> dict[int, str]:
    """Node 1 founds the community and runs; every other node joins by invite (`join`).
    Leaves every node stopped; returns k -> full node id."""
    founder = lab.node(1)
    ids = {1: found(founder)["node_id"]}
    log(f"node1  founded the community ({ids[1]})")
    founder.start(wait_workers=CORE_WORKERS)
    try:
        for k in lab.ks:
            if k != 1:
                t0 = time.monotonic()
                ids[k] = join(founder, lab.node(k))
                log(f"node{k}  joined by invite in {time.monotonic() - t0:.1f} s ({ids[k]})")
    finally:
        lab.stop_nodes([1])
    return ids


@dataclass
class Discovered:
    """When and how one node came to see the others (see `wait_mesh`)."""

    k: int
    done_at: float | None = None  # monotonic
    discovery_up_at: float | None = None  # monotonic, from the discovery worker's uptime
    doc: dict[str, Any] = field(default_factory=dict)  # the last community.peers.list output

    @property
    def peers(self) -> list[dict[str, Any]]:
        return list(self.doc.get("peers") or [])

    @property
    def foreign(self) -> list[dict[str, Any]]:
        return list((self.doc.get("discovery") or {}).get("foreign") or [])

    @property
    def diagnose(self) -> list[str]:
        return list(self.doc.get("diagnose") or [])

    def sources(self, foreign: bool = False) -> dict[str, int]:
        """How the peers (or the foreign nodes) were found: {mechanism: count}."""
        out: dict[str, int] = {}
        if foreign:
            for f in self.foreign:
                for s in f.get("sources") or ["?"]:
                    out[s] = out.get(s, 0) + 1
        else:
            for p in self.peers:
                out[p.get("source", "?")] = out.get(p.get("source", "?"), 0) + 1
        return out


def lists_peers(expected: Mapping[int, str]) -> Callable[[int, dict[str, Any]], bool]:
    """Done when node k lists exactly the other nodes' full ids as peers."""
    def done(k: int, doc: dict[str, Any]) -> bool:
        others = {v for j, v in expected.items() if j != k}
        return {p.get("node_id_full") for p in doc.get("peers") or []} == others
    return done


def sees_foreign(expected_short: Mapping[int, str]) -> Callable[[int, dict[str, Any]], bool]:
    """Done when node k has no peers and has seen every other node (short ids) as a node
    of another community."""
    def done(k: int, doc: dict[str, Any]) -> bool:
        others = {v for j, v in expected_short.items() if j != k}
        seen = {f.get("node_id_short") for f in (doc.get("discovery") or {}).get("foreign") or []}
        return not doc.get("peers") and seen == others
    return done


def wait_mesh(nodes: Mapping[int, LabNode], done: Callable[[int, dict[str, Any]], bool], timeout: float,
              every: float = 0.1) -> dict[int, Discovered]:
    """Poll `community.peers.list` on every node until `done(k, output)` holds for each.
    Returns per node when that happened (done_at None: not within `timeout`) and the last
    output seen."""
    state = {k: Discovered(k) for k in nodes}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [k for k, d in state.items() if d.done_at is None]
        if not pending:
            break
        for k in pending:
            doc = nodes[k].peers_or_none()
            now = time.monotonic()
            if doc is None:
                continue
            d = state[k]
            d.doc = doc
            uptime = (doc.get("discovery") or {}).get("uptime_seconds")
            if d.discovery_up_at is None and isinstance(uptime, (int, float)):
                d.discovery_up_at = now - uptime
            if done(k, doc):
                d.done_at = now
        time.sleep(every)
    return state


def forget_peers(node: LabNode) -> None:
    """Delete the node's peer cache (<DATA>/peers.json), so its next start has to discover
    its peers again rather than find them in the cache. The node must be stopped."""
    from hearthnet.discovery.cache import PeerCache

    PeerCache.for_data_dir(node.root / "data" / "hearthnet").path.unlink(missing_ok=True)
