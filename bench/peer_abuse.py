"""A member's call and the owner's `status` while the peer port is under abuse, vs the
same with no abuse, in one run.

    .venv/bin/python bench/peer_abuse.py [--calls 120] [--rate 8] [--slow 1000] [--flood 32]
        [--big-members 4] [--body-mib 7] [--bodies-per-second 4] [--budget-mib 64]

Two real nodes on this host (loopback, discovery off, throw-away XDG homes): A founds a
community and runs the echo worker (`HEARTHNET_WORKERS_ECHO=true`); B joins by invite
(`hearthnet id`, `invite create` on A, `invite redeem` on B) — B's key is a member's
key, B itself need not run. This process then signs calls as B with the PeerClient
(pinned TLS, signed request and reply) to A's `experimental.echo` (150-byte input),
paced at --rate per second (the peer limit is 10/s per capability), and meanwhile asks
A's local API for `/api/v1/status` twice a second (what `hearthnet status` shows) and,
after the calls, runs `hearthnet status --json` five times.

Phase 1: no abuse. Phase 2: the same while another process (hearthnet/testing/peer_abuse.py)
holds --slow half-sent TLS requests against A's port (50 per source address 127.0.x.y,
each reconnecting a second after A cuts it) and floods it with --flood concurrent
validly signed calls from a stranger's key (one more source address). Phase 3 ("large
bodies"): the same measurements while --big-members other members (joined like B) each
send signed --body-mib MiB echo calls, --bodies-per-second a second, each kept a second
by the echo worker — more than A's peer body budget (transport.peer_body_budget_mib,
--budget-mib; per sender a quarter) can hold, so some get `capacity_exceeded`; plus A's
gateway RSS before and at its peak during the phase, against the budget. Prints p50/p99
of each measurement per phase and the ratio abused / quiet; plus what the attackers saw.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from hearthnet.identity import keys
from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.peer_abuse import wait_until_member
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore
from hearthnet.unixhttp import UnixHTTPConnection

BODY = {"params": {}, "input": {"text": "x" * 150}}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(len(s) * q))], 2) if s else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99),
            "max_ms": round(max(values), 2) if values else float("nan")}


class StatusPoller(threading.Thread):
    """GET /api/v1/status on A's local API every 0.5 s until stopped; latencies in ms."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node, self.lat, self.failed = node, [], 0
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.node.token()}"}
        while not self.stop.is_set():
            conn = UnixHTTPConnection(str(self.node.api_socket), timeout=10)
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/api/v1/status", headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.lat.append((time.perf_counter() - t0) * 1000)
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1
            finally:
                conn.close()
            self.stop.wait(0.5)


async def member_calls(client: PeerClient, target: str, port: int, n: int, rate: float) -> tuple[list[float], int]:
    lat, failed = [], 0
    nxt = time.monotonic()
    for _ in range(n):
        # Paced; after a stall the missed slots are skipped, not fired at once (a burst
        # would hit the member's own 10/s limit and count as failures of the node).
        nxt = max(nxt + 1 / rate, time.monotonic())
        t0 = time.perf_counter()
        try:
            await client.call(target, ("127.0.0.1", port), "experimental.echo", "1.0", BODY, timeout=20)
            lat.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # a failed call is counted, not fatal: it is what we measure
            failed += 1
            print(f"  member call failed: {exc}", file=sys.stderr)
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))
    return lat, failed


def cli_status(node: Node, times: int = 5) -> list[float]:
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        r = node.cli("status", "--json", timeout=30)
        took = (time.perf_counter() - t0) * 1000
        if r.returncode == 0:
            out.append(took)
    return out


def phase(loop: asyncio.AbstractEventLoop, a: Node, client: PeerClient, target: str, calls: int,
          rate: float) -> dict[str, Any]:
    poller = StatusPoller(a)
    poller.start()
    try:
        lat, failed = loop.run_until_complete(
            member_calls(client, target, a.port, calls, rate))
    finally:
        poller.stop.set()
        poller.join()
    cli = cli_status(a)
    return {"member_call": {**summary(lat), "failed": failed},
            "local_status": {**summary(poller.lat), "failed": poller.failed},
            "cli_status": {**summary(cli), "failed": 5 - len(cli)}}


class PeakRss(threading.Thread):
    """The peak RSS of one process, sampled every 20 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.before = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.stop.wait(0.02)


def gateway_pid(node: Node) -> int:
    return next(w["pid"] for w in node.api("/api/v1/workers")["workers"] if w["name"] == "gateway")


def large_bodies_phase(loop: asyncio.AbstractEventLoop, a: Node, big: list[Node], client: PeerClient,
                       target: str, community: str, args: argparse.Namespace) -> dict[str, Any]:
    """Phase 3: B's paced small calls and the owner's status while the `big` members send
    large bodies (from another process, so their TLS work is not this one's); A's gateway
    RSS at its peak, against the budget."""
    rss = PeakRss(gateway_pid(a))
    rss.start()
    senders = subprocess.Popen(
        [sys.executable, "-m", "hearthnet.testing.peer_abuse", str(a.port), target, community,
         "--seconds", str(args.calls / args.rate + 5), "--body-mib", str(args.body_mib),
         "--bodies-per-second", str(args.bodies_per_second),
         *[x for m in big for x in ("--member-keys", str(m.root / "data" / "hearthnet" / "keys"))]],
        stdout=subprocess.PIPE, text=True, env=a.env)
    try:
        time.sleep(3)  # the budget fills up
        print(f"phase 3: {len(big)} members sending {args.body_mib} MiB bodies, "
              f"{args.bodies_per_second}/s each", flush=True)
        out = phase(loop, a, client, target, args.calls, args.rate)
        saw, _ = senders.communicate(timeout=args.calls / args.rate + 180)
    finally:
        if senders.poll() is None:
            senders.kill()
            senders.wait()
        rss.stop.set()
        rss.join()
    mib = 1024 * 1024
    grew = (rss.peak - rss.before) / mib
    out["gateway_rss"] = {"before_mib": round(rss.before / mib), "peak_mib": round(rss.peak / mib),
                          "grew_mib": round(grew), "budget_mib": args.budget_mib,
                          "grew_over_budget": round(grew / args.budget_mib, 2)}
    out["senders_saw"] = json.loads(saw.strip().splitlines()[-1]) if saw.strip() else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=120, help="member calls per phase")
    ap.add_argument("--rate", type=float, default=8.0, help="member calls per second (peer limit 10)")
    ap.add_argument("--slow", type=int, default=1000, help="slow anonymous TLS connections")
    ap.add_argument("--flood", type=int, default=32, help="concurrent stranger requests")
    ap.add_argument("--big-members", type=int, default=4, help="members sending large bodies (0: no phase 3)")
    ap.add_argument("--body-mib", type=float, default=7.0, help="size of each large body")
    ap.add_argument("--bodies-per-second", type=float, default=4.0, help="per large-body member")
    ap.add_argument("--budget-mib", type=int, default=64, help="A's transport.peer_body_budget_mib")
    args = ap.parse_args()
    if args.rate > 10 or args.slow > 5000 or args.flood > 64 or args.calls > 2000:
        ap.error("bounded: --rate <= 10, --slow <= 5000, --flood <= 64, --calls <= 2000")
    if args.big_members > 8 or args.body_mib > 16 or args.bodies_per_second > 9 or args.budget_mib < 4:
        ap.error("bounded: --big-members <= 8, --body-mib <= 16, --bodies-per-second <= 9, --budget-mib >= 4")
    tmp = tempfile.TemporaryDirectory(prefix="hn-bench-")
    a, b = Node(Path(tmp.name) / "a", "a"), Node(Path(tmp.name) / "b", "b")
    a.env["HEARTHNET_WORKERS_ECHO"] = "true"
    a.env["HEARTHNET_TRANSPORT_PEER_BODY_BUDGET_MIB"] = str(args.budget_mib)
    a.env["HEARTHNET_TRANSPORT_PEER_BODY_PER_SENDER_MIB"] = str(max(1, args.budget_mib // 4))
    big = [Node(Path(tmp.name) / f"big{i}", f"big{i}") for i in range(args.big_members)]
    attacker: subprocess.Popen | None = None
    loop = asyncio.new_event_loop()
    results: dict[str, Any] = {}
    try:
        a.init()
        a.start(wait_workers=("broker", "gateway", "ledger", "echo"))
        join_by_invite(a, b)
        wait_until_member(a, keys.load(b.root / "data" / "hearthnet" / "keys"))
        for m in big:
            join_by_invite(a, m)
            wait_until_member(a, keys.load(m.root / "data" / "hearthnet" / "keys"))
        status = a.api("/api/v1/status")
        target, community = status["node"]["node_id"], status["community"]["community_id"]
        client = PeerClient(keys.load(b.root / "data" / "hearthnet" / "keys"), community,
                            PinStore(Path(tmp.name) / "pins.json"))
        loop.run_until_complete(member_calls(client, target, a.port, 10, args.rate))  # warm
        print("phase 1: no abuse", flush=True)
        results["quiet"] = phase(loop, a, client, target, args.calls, args.rate)
        seconds = args.calls / args.rate + 20
        attacker = subprocess.Popen(
            [sys.executable, "-m", "hearthnet.testing.peer_abuse", str(a.port), target, community,
             "--slow", str(args.slow), "--flood", str(args.flood), "--seconds", str(seconds)],
            stdout=subprocess.PIPE, text=True, env=a.env)
        time.sleep(5)  # let the slow connections pile up and the flood run
        print(f"phase 2: {args.slow} slow TLS connections + a stranger's flood ({args.flood} in flight)",
              flush=True)
        results["abused"] = phase(loop, a, client, target, args.calls, args.rate)
        out, _ = attacker.communicate(timeout=seconds + 60)
        results["attackers_saw"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
        if big:
            results["large_bodies"] = large_bodies_phase(loop, a, big, client, target, community,
                                                         args)
        loop.run_until_complete(client.close())
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait()
        a.cleanup()
        b.cleanup()
        for m in big:
            m.cleanup()
        loop.close()
        tmp.cleanup()
    q, x = results["quiet"], results["abused"]
    ratio = {k: round(x[k]["p50_ms"] / q[k]["p50_ms"], 2) for k in ("member_call", "local_status", "cli_status")}
    results["ratio_abused_over_quiet_p50"] = ratio
    if "large_bodies" in results:
        lb = results["large_bodies"]
        results["ratio_large_bodies_over_quiet_p50"] = {
            k: round(lb[k]["p50_ms"] / q[k]["p50_ms"], 2) for k in ("member_call", "local_status", "cli_status")}
    print(json.dumps(results, indent=1))
    print(f"\nmember call p50 {q['member_call']['p50_ms']} ms (p99 {q['member_call']['p99_ms']}) quiet vs "
          f"{x['member_call']['p50_ms']} ms (p99 {x['member_call']['p99_ms']}, failed "
          f"{x['member_call']['failed']}) under abuse: {ratio['member_call']}x; local status p50 "
          f"{q['local_status']['p50_ms']} vs {x['local_status']['p50_ms']} ms (max {x['local_status']['max_ms']}); "
          f"`hearthnet status --json` p50 {q['cli_status']['p50_ms']} vs {x['cli_status']['p50_ms']} ms "
          f"(max {x['cli_status']['max_ms']})")
    if "large_bodies" in results:
        lb, r = results["large_bodies"], results["ratio_large_bodies_over_quiet_p50"]
        rss = lb["gateway_rss"]
        print(f"large bodies: member call p50 {lb['member_call']['p50_ms']} ms (p99 {lb['member_call']['p99_ms']}, "
              f"failed {lb['member_call']['failed']}): {r['member_call']}x quiet; local status p50 "
              f"{lb['local_status']['p50_ms']} ms; gateway RSS {rss['before_mib']} -> peak {rss['peak_mib']} MiB "
              f"(+{rss['grew_mib']}, {rss['grew_over_budget']}x the {rss['budget_mib']} MiB body budget); "
              f"the senders saw {lb['senders_saw']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
