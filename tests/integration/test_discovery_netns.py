"""Discovery between real processes over real multicast, inside throw-away network
namespaces, so no packet can reach this machine's own interfaces.

Topology (all names carry this test run's pid; every link lives inside our namespaces):

    hn-t-<pid>-<n>-hub:  br0 (bridge, multicast snooping off) + p1 p2 p3
    hn-t-<pid>-<n>-a:    veth0 10.231.<x>.1/24 <-> p1
    hn-t-<pid>-<n>-b:    veth0 10.231.<x>.2/24 <-> p2
    hn-t-<pid>-<n>-c:    veth0 10.231.<x>.3/24 <-> p3

Each veth pair is created by `ip -n <hub> link add pN type veth peer name veth0 netns <node>`,
so neither end ever exists in the host namespace. Teardown (always, in `finally`) stops
the runner processes, then deletes every namespace, which deletes the veths and the bridge.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READY_SECONDS = 30.0
FIND_SECONDS = 60.0  # readiness bound, not a timing assertion: we stop as soon as it holds
_lab_numbers = itertools.count(1)


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    return None


if _skip_reason():
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=_skip_reason() or "")]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


class NodeProc:
    """One `hearthnet.testing.discovery_node` process inside a namespace."""

    def __init__(self, name: str, netns: str, seed: str, community_seed: str, workdir: Path, extra: list[str]) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.stderr.log"
        cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "hearthnet.testing.discovery_node",
               "--name", name, "--seed-hex", seed, "--community-seed-hex", community_seed,
               "--interface", "veth0", "--http-port", "7080", "--data-dir", str(workdir / name), *extra]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "w") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         cwd=REPO, env=env, text=True, bufsize=1)
        self.lines: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.history: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.ready: dict[str, Any] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except json.JSONDecodeError:
                self.lines.put({"event": "garbage", "line": line})

    def _drain(self, timeout: float) -> dict[str, Any] | None:
        try:
            doc = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        self.history.append(doc)
        return doc

    def wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The first output line, seen so far or arriving within `timeout`, that matches."""
        def matched() -> dict[str, Any] | None:
            while self._drain(0) is not None:
                pass
            match = next((doc for doc in self.history if pred(doc)), None)
            assert match is not None or self.proc.poll() is None or not self.lines.empty(), (
                f"{self.name} exited ({self.proc.returncode}) before {what}\n{self.debug()}")
            return match

        return wait_for(matched, timeout, 0.05, message=lambda: f"{self.name}: {what}\n{self.debug()}")

    def peers(self) -> dict[str, dict[str, Any]]:
        """node_id -> peer, replaying added/removed events seen so far."""
        while self._drain(0) is not None:
            pass
        out: dict[str, dict[str, Any]] = {}
        for doc in self.history:
            if doc["event"] in ("added", "updated"):
                out[doc["peer"]["node_id_full"]] = doc["peer"]
            elif doc["event"] == "removed":
                out.pop(doc["peer"]["node_id_full"], None)
        return out

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def diagnose(self) -> list[str]:
        self.history = [d for d in self.history if d["event"] != "diagnose"]
        self.command("diagnose")
        return list(self.wait_event(lambda d: d["event"] == "diagnose", 10, "diagnose answer")["reasons"])

    def debug(self) -> str:
        tail = self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
        return f"events: {self.history[-20:]}\nstderr tail:\n{tail}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):  # stdin already closed: terminate/kill below
                self.command("quit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class Lab:
    def __init__(self, names: tuple[str, ...], workdir: Path) -> None:
        n = next(_lab_numbers)
        prefix = f"hn-t-{os.getpid()}-{n}"
        self.hub = f"{prefix}-hub"
        self.netns = {name: f"{prefix}-{name}" for name in names}
        self.subnet = f"10.231.{n % 250 + 1}"
        self.workdir = workdir
        self.created: list[str] = []
        self.nodes: dict[str, NodeProc] = {}

    def build(self) -> None:
        for ns in (self.hub, *self.netns.values()):
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.netns.values(), start=1):
            port = f"p{i}"
            _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "veth0", "netns", ns)
            _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.subnet}.{i}/24", "dev", "veth0")
            _ip("-n", ns, "link", "set", "veth0", "up")

    def start(self, name: str, seed: str, community_seed: str, *extra: str) -> NodeProc:
        node = NodeProc(name, self.netns[name], seed, community_seed, self.workdir, list(extra))
        self.nodes[name] = node
        return node

    def teardown(self) -> None:
        # Processes first: a namespace with a live process in it would outlive `ip netns del`.
        for node in self.nodes.values():
            node.stop()
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
        left = set(_ip("netns", "list").stdout.split()) & set(self.created)
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def make(*names: str) -> Lab:
        new = Lab(names, tmp_path)
        labs.append(new)
        new.build()
        return new

    try:
        yield make
    finally:
        for one in labs:
            one.teardown()


def _seed() -> str:
    return os.urandom(32).hex()


def _start_all(lab: Lab, community: dict[str, str], *extra: str) -> dict[str, NodeProc]:
    nodes = {name: lab.start(name, _seed(), community[name], *extra) for name in community}
    for node in nodes.values():
        node.ready = node.wait_event(lambda d: d["event"] == "ready", READY_SECONDS, "ready")
    return nodes


def _wait_until_found(node: NodeProc, expected: set[str]) -> dict[str, dict[str, Any]]:
    return wait_for(lambda: (peers := node.peers()).keys() >= expected and peers, FIND_SECONDS, 0.2,
                    message=lambda: f"{node.name} finds {sorted(expected)} (found {sorted(node.peers())})\n"
                                    f"diagnose: {node.diagnose()}\n{node.debug()}")


def _assert_full_mesh(nodes: dict[str, NodeProc], source: str) -> None:
    ids = {name: n.ready["node_id"] for name, n in nodes.items()}
    for name, node in nodes.items():
        others = {i for other, i in ids.items() if other != name}
        peers = _wait_until_found(node, others)
        assert set(peers) == others, f"{name} has unexpected peers {set(peers) - others}"
        assert {p["source"] for p in peers.values()} == {source}
        hosts = {p["host"] for p in peers.values()}
        assert hosts == {nodes[o].ready["host"] for o in nodes if o != name}


def test_three_nodes_find_each_other_by_udp(lab: Callable[..., Lab]) -> None:
    net = lab("a", "b", "c")
    community = _seed()
    nodes = _start_all(net, dict.fromkeys(("a", "b", "c"), community), "--no-mdns")
    _assert_full_mesh(nodes, "udp")
    nodes["a"].command("status")
    status = nodes["a"].wait_event(lambda d: d["event"] == "status", 10, "status")
    mech = status["status"]["mechanisms"]
    assert mech["udp"]["up"] and not mech["mdns"]["enabled"]
    assert mech["udp"]["interfaces"] == [f"veth0 ({nodes['a'].ready['host']})"]


def test_three_nodes_find_each_other_by_mdns(lab: Callable[..., Lab]) -> None:
    net = lab("a", "b", "c")
    community = _seed()
    nodes = _start_all(net, dict.fromkeys(("a", "b", "c"), community), "--no-udp")
    _assert_full_mesh(nodes, "mdns")


def test_node_of_another_community_is_seen_but_not_added(lab: Callable[..., Lab]) -> None:
    net = lab("a", "b", "c")
    ours, theirs = _seed(), _seed()
    nodes = _start_all(net, {"a": ours, "b": theirs, "c": theirs})
    b_id, c_id = nodes["b"].ready["node_id"], nodes["c"].ready["node_id"]
    # Positive control: b and c (same community) do find each other meanwhile.
    assert set(_wait_until_found(nodes["b"], {c_id})) == {c_id}
    assert set(_wait_until_found(nodes["c"], {b_id})) == {b_id}
    wait_for(lambda: any("2 nodes seen from another community" in r for r in nodes["a"].diagnose()),
             FIND_SECONDS, 0.5, message=lambda: f"a's diagnose reports the foreign nodes: {nodes['a'].diagnose()}\n"
                                                f"{nodes['a'].debug()}")
    assert nodes["a"].peers() == {}
    assert nodes["b"].ready["node_id"] not in nodes["a"].peers()
    assert nodes["a"].ready["node_id"] not in set(nodes["b"].peers()) | set(nodes["c"].peers())
