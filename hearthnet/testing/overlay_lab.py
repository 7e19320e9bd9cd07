"""Two streets joined by WireGuard: two LAN segments of namespaces that are not routed to
each other, except through a WireGuard tunnel (userspace `wireguard-go`, so no kernel
module is needed) between one node namespace on each side. For
tests/integration/test_overlay_netns.py.

    P-hub : br0 (street A: p1, p2)   br1 (street B: p3)      no addresses, no routing
    P-n1  : veth0 10.231.0.1/24 (A)  up0 172.30.0.1/30  wg1 10.99.0.1/24   "router" of A
    P-n2  : veth0 10.231.0.2/24 (A)
    P-n3  : veth0 10.232.0.3/24 (B)  up0 172.30.0.2/30  wg3 10.99.0.3/24   "router" of B

`up0` is a veth pair straight between n1 and n3 (the "internet" between the streets): it
carries only the tunnel's UDP. Nothing is forwarded (ip_forward stays 0), so node 2 reaches
node 3 only through node 1's gossip. Every link is created inside the lab's namespaces
(never in the host namespace), and MeshLab's cleanup kills the wireguard-go processes (they
run inside the namespaces) and deletes everything. wireguard-go's control sockets live in
the shared /var/run/wireguard, so the tunnel interfaces get distinct names (wg1, wg3).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from hearthnet.testing.netns import LabError, LabNode, MeshLab, _links, ip, remove_lab, unavailable_reason

STREET = {1: "a", 2: "a", 3: "b"}
SUBNETS = {"a": "10.231.0", "b": "10.232.0"}
BRIDGES = {"a": "br0", "b": "br1"}
ROUTERS = (1, 3)  # the node namespaces that hold the tunnel
UPLINK = {1: "172.30.0.1", 3: "172.30.0.2"}
OVERLAY = {1: "10.99.0.1", 3: "10.99.0.3"}
WG_PORT = 51820
WG_RUN_DIR = Path("/var/run/wireguard")
WG_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}  # wireguard-go refuses otherwise
SOCKET_WAIT_SECONDS = 10.0


def overlay_unavailable_reason() -> str | None:
    """Why the overlay lab cannot run here, or None."""
    if (reason := unavailable_reason()):
        return reason
    for tool, package in (("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install {package}; scripts/test does it as root)"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (wireguard-go needs TUN devices)"
    return None


def wg_name(k: int) -> str:
    return f"wg{k}"


class OverlayLab(MeshLab):
    """Three namespaces on two unrouted streets joined by WireGuard (see the module doc)."""

    def __init__(self, prefix: str = "hnwg") -> None:
        super().__init__(3, prefix)
        self.wg_procs: dict[int, subprocess.Popen] = {}

    def addr(self, k: int) -> str:
        return f"{SUBNETS[STREET[k]]}.{k}"

    def overlay_addr(self, k: int) -> str:
        return OVERLAY[k]

    def build(self) -> None:
        if (reason := overlay_unavailable_reason()):
            raise LabError(reason)
        self.lock.acquire()
        if (left := remove_lab(self.prefix, self.root)):
            raise LabError(f"namespaces of an earlier run could not be removed: {', '.join(left)}")
        self._remove_stale_sockets()
        self.root.mkdir(mode=0o700, parents=True)
        for ns in (self.hub, *(self.ns(k) for k in self.ks)):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for bridge in BRIDGES.values():
            ip("-n", self.hub, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
            ip("-n", self.hub, "link", "set", bridge, "up")
        for k in self.ks:
            ip("-n", self.hub, "link", "add", f"p{k}", "type", "veth", "peer", "name", "veth0", "netns", self.ns(k))
            ip("-n", self.hub, "link", "set", f"p{k}", "master", BRIDGES[STREET[k]], "up")
            ip("-n", self.ns(k), "addr", "add", f"{self.addr(k)}/24", "dev", "veth0")
            ip("-n", self.ns(k), "link", "set", "veth0", "up")
        a, b = ROUTERS
        ip("-n", self.ns(a), "link", "add", "up0", "type", "veth", "peer", "name", "up0", "netns", self.ns(b))
        for k in ROUTERS:
            ip("-n", self.ns(k), "addr", "add", f"{UPLINK[k]}/30", "dev", "up0")
            ip("-n", self.ns(k), "link", "set", "up0", "up")
        self._tunnel()
        self.check_isolated()

    # ---- WireGuard -------------------------------------------------------------------

    def _keys(self) -> dict[int, tuple[Path, str]]:
        """k -> (private key file, public key), made with `wg genkey` / `wg pubkey`."""
        out = {}
        for k in ROUTERS:
            private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
            path = self.root / f"wg{k}.key"
            path.touch(mode=0o600)
            path.write_text(private)
            public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True,
                                    check=True).stdout.strip()
            out[k] = (path, public)
        return out

    def _tunnel(self) -> None:
        keys = self._keys()
        for k in ROUTERS:
            log = open(self.root / f"wg{k}.log", "ab")
            self.wg_procs[k] = self.run(k, ["wireguard-go", "-f", wg_name(k)], env={**os.environ, **WG_ENV},
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
        for k in ROUTERS:
            self._wait_socket(k)
        for k, other in (ROUTERS, ROUTERS[::-1]):
            self.exec(k, "wg", "set", wg_name(k), "private-key", str(keys[k][0]), "listen-port", str(WG_PORT),
                      "peer", keys[other][1], "endpoint", f"{UPLINK[other]}:{WG_PORT}",
                      "allowed-ips", f"{OVERLAY[other]}/32", "persistent-keepalive", "5")
            ip("-n", self.ns(k), "addr", "add", f"{OVERLAY[k]}/24", "dev", wg_name(k))
            ip("-n", self.ns(k), "link", "set", wg_name(k), "up")

    def _wait_socket(self, k: int) -> None:
        sock = WG_RUN_DIR / f"{wg_name(k)}.sock"
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while not sock.exists():
            proc = self.wg_procs[k]
            if proc.poll() is not None or time.monotonic() > deadline:
                out = (self.root / f"wg{k}.log").read_text(errors="replace")[-1000:]
                raise LabError(f"wireguard-go {wg_name(k)} did not start (exit {proc.poll()}): {out}")
            time.sleep(0.05)

    def exec(self, k: int, *argv: str) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.ns(k), *argv], capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise LabError(f"{' '.join(argv)} in {self.ns(k)}: {(r.stderr or r.stdout).strip()}")
        return r.stdout

    def _remove_stale_sockets(self) -> None:
        """A SIGKILLed wireguard-go leaves its control socket; ours only (wg1, wg3)."""
        for k in ROUTERS:
            (WG_RUN_DIR / f"{wg_name(k)}.sock").unlink(missing_ok=True)

    # ---- checks and teardown -------------------------------------------------------------

    def check_isolated(self) -> None:
        want_hub = {"lo", *BRIDGES.values(), *(f"p{k}" for k in self.ks)}
        if (got := _links(self.hub)) != want_hub:
            raise LabError(f"{self.hub} has links {sorted(got)}, expected {sorted(want_hub)}")
        for k in self.ks:
            want = {"lo", "veth0", "up0", wg_name(k)} if k in ROUTERS else {"lo", "veth0"}
            if (got := _links(self.ns(k))) != want:
                raise LabError(f"{self.ns(k)} has links {sorted(got)}, expected {sorted(want)}")
            routes = ip("-n", self.ns(k), "-4", "route", "show").stdout.split("\n")
            if any(r.startswith("default") for r in routes):
                raise LabError(f"{self.ns(k)} has a default route")

    def cleanup(self) -> list[str]:
        held = self.lock.held
        try:
            return super().cleanup()
        finally:
            if held:
                self._remove_stale_sockets()

    def overlay_node(self, k: int) -> LabNode:
        """Node K listening on all its addresses; discovery on veth0 and, on a router, its
        WireGuard interface too (so the manifest advertises the overlay address)."""
        node = self.node(k)
        node.env["HEARTHNET_TRANSPORT_HOST"] = "0.0.0.0"
        node.env["HEARTHNET_DISCOVERY_INTERFACES"] = f"veth0,{wg_name(k)}" if k in ROUTERS else "veth0"
        return node
