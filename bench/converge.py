"""Convergence of 10 real nodes: time until every node holds every one of 1 000 new events,
and the bytes sent per event, against raw HTTPS baselines measured in the same run.

    sudo .venv/bin/python bench/converge.py [--nodes 10] [--events 1000] [--mode ingest|append]
                                            [--base 0] [--timeout 120] [--prefix hnconv]

Needs root (network namespaces, hearthnet/testing/netns.py, the lab `scripts/mesh-lab`
builds): --nodes namespaces on one private bridge, one real node in each, joined into one
community by invite (`hearthnet id`, `invite create`, `invite redeem`), then launched
together and left to find each other (multicast discovery, peer cache). Once every node
lists every other and all logs are equal:

0. --base: every log is given the same --base older events first (while stopped), so a
   run shows whether the sync cost grows with the log (it should not: ranged digests);
1. idle: the bytes the nodes send in IDLE_SECONDS doing nothing (discovery beacons), the
   background subtracted below;
2. raw, in the same lab: a bare aiohttp HTTPS server in one namespace and a client in
   another: the p50 round trip of a POST of one event's JSON (keep-alive), and one POST of
   all the events' JSON in one body (the link's bulk floor);
3. the run: --events market posts written through the local API of the nodes, spread
   evenly (one thread a node) — by default (`--mode ingest`) each node's share signed
   beforehand with that node's own key and handed to its ledger in one
   `community.log.ingest` call (so the figure is the mesh's, not the appends'), with
   `--mode append` one `community.log.append` per event — and polled (`community.log.heads` count) on every node
   until each holds all of them. Time from the first append to the last node complete
   (also after the last append returned). Bytes: what the nodes sent on their veth links
   meanwhile (the bridge ports' rx counters, `ip -s -j link` in the hub namespace), minus
   the idle rate, per event; against the raw minimum: each event's JSON once to each of
   the N-1 other nodes.

Every namespace, process and directory is removed at the end (also on Ctrl-C / SIGTERM).
Exit 0 converged within --timeout, 1 not, 3 cannot run here (not root, no `ip`).
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from hearthnet.testing.netns import (  # noqa: E402
    LabError,
    MeshLab,
    form_community,
    invite_commands_missing,
    ip,
    lists_peers,
    unavailable_reason,
    wait_mesh,
)

IDLE_SECONDS = 5.0
DONE_AT: dict[int, float] = {}  # node -> monotonic time its log first held every event
RAW_PORT = 7443
RAW_ROUND_TRIPS = 200
console = Console(width=140)


class Interrupted(Exception):
    pass


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def post(k: int, n: int) -> dict[str, Any]:
    """A market post of ~400 bytes, as bench/sync_throughput.py writes."""
    return {"client_id": f"conv-{k}-{n}", "category": "offer", "title": f"Item {n} from node {k}",
            "body": "x" * 120, "location": {"lat": 51.5, "lng": 6.2, "label": "porch"},
            "tags": ["tools"], "ttl_seconds": 3600}


# --------------------------------------------------------------------------- measuring


def sent_bytes(lab: MeshLab) -> int:
    """Bytes the nodes have sent on their links: rx of the bridge ports pK in the hub."""
    links = json.loads(ip("-n", lab.hub, "-s", "-j", "link", "show").stdout)
    return sum(int(link["stats64"]["rx"]["bytes"]) for link in links if link.get("ifname", "").startswith("p"))


def counts(lab: MeshLab) -> dict[int, int]:
    out = {}
    for k in lab.ks:
        try:
            out[k] = int(lab.node(k).capability("community.log.heads", {}, timeout=10)["count"])
        except (OSError, ValueError, LabError):
            out[k] = -1
    return out


def round_stats(lab: MeshLab, since: float) -> dict[str, Any]:
    """The sync rounds the nodes ran from `since` (wall clock), from their gateway logs
    ("sync round" records): how many, failed ones by error, ms, digest entries, ids."""
    rounds = []
    for k in lab.ks:
        try:
            lines = lab.node(k).api("/api/v1/logs?n=5000&component=gateway")["lines"]
        except (OSError, ValueError, LabError):
            continue
        rounds += [r for r in lines if r.get("msg") == "sync round" and float(r.get("at") or 0) >= since]
    errors: dict[str, int] = {}
    for r in rounds:
        if not r.get("ok"):
            key = str(r.get("error") or "?").split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    ms = sorted(float(r.get("ms") or 0) for r in rounds) or [0.0]
    return {"rounds": len(rounds), "failed": errors, "ms_p50": ms[len(ms) // 2], "ms_max": ms[-1],
            "digest_ranges": sum(int(r.get("digest_ranges") or 0) for r in rounds),
            "ids_listed": sum(int(r.get("ids_listed") or 0) for r in rounds),
            "sent": sum(int(r.get("sent") or 0) for r in rounds),
            "received": sum(int(r.get("received") or 0) for r in rounds)}


def wait_counts(lab: MeshLab, want: int | None, timeout: float, every: float = 0.05) -> tuple[float | None, dict[int, int]]:
    """Poll until every node's log holds `want` events (None: all equal and unchanged for
    a second); returns (monotonic time it held, last counts)."""
    deadline, stable_since, last = time.monotonic() + timeout, None, {}
    while time.monotonic() < deadline:
        now_counts = counts(lab)
        values = set(now_counts.values())
        if want is not None:
            for k, c in now_counts.items():
                if c == want:
                    DONE_AT.setdefault(k, time.monotonic())
        if want is not None and values == {want}:
            return time.monotonic(), now_counts
        if want is None and len(values) == 1 and -1 not in values:
            stable_since = stable_since if now_counts == last else time.monotonic()
            if time.monotonic() - stable_since >= 1.0:
                return time.monotonic(), now_counts
        last = now_counts
        time.sleep(every)
    return None, last


def presign(lab: MeshLab, events: int) -> dict[int, list[dict[str, Any]]]:
    """Each node's share of the events, signed with its own key just past its clock (what
    `community.log.append` would author), for `--mode ingest`."""
    from hearthnet.identity import keys
    from hearthnet.ledger.events import build_event

    out = {}
    for k, n in zip(lab.ks, shares(lab, events)):
        node = lab.node(k)
        kp = keys.load(node.root / "data" / "hearthnet" / "keys")
        heads = node.capability("community.log.heads", {}, timeout=10)
        out[k] = [build_event(kp, heads["community_id"], heads["head"] + 1 + i, "market.post.created", post(k, i))
                  for i in range(n)]
    return out


def preload(lab: MeshLab, n: int) -> None:
    """`--base`: the same n older events (market posts by node 1) written straight into
    every (stopped) node's event log with the ledger library, so the run starts from
    equal logs of that size (the sync cost must not grow with them)."""
    from hearthnet.identity import keys
    from hearthnet.ledger.events import build_event
    from hearthnet.ledger.store import EventLog

    kp = keys.load(lab.node(1).root / "data" / "hearthnet" / "keys")
    events = None
    for k in lab.ks:
        path = next((lab.node(k).root / "data" / "hearthnet" / "communities").glob("*/events.sqlite"))
        log = EventLog(path, path.parent.name)
        try:
            if events is None:
                events = [build_event(kp, log.community_id, 100 + i // 4, "market.post.created", post(0, i))
                          for i in range(n)]
            result = log.append_received(events)
            if result.accepted != n:
                raise LabError(f"node{k} refused base events: {result.rejected_reasons[:3]}")
        finally:
            log.close()


def shares(lab: MeshLab, events: int) -> list[int]:
    return [events // lab.n + (1 if k <= events % lab.n else 0) for k in lab.ks]


def append_all(lab: MeshLab, events: int, signed: dict[int, list[dict[str, Any]]] | None) -> tuple[float, list[int]]:
    """The events into the nodes' logs over their local APIs, one thread a node: one
    `community.log.append` each, or (`signed`) one `community.log.ingest` of the node's
    pre-signed share. Returns (monotonic time the last call returned, event JSON sizes)."""
    sizes: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(k: int, n: int) -> None:
        node = lab.node(k)
        try:
            if signed is not None:
                out = node.capability("community.log.ingest", {"events": signed[k]}, timeout=120)
                if out.get("accepted") != n:
                    raise LabError(f"ingest accepted {out.get('accepted')} of {n}: {out.get('rejected_reasons')}")
                stored = signed[k]
            else:
                stored = [node.append("market.post.created", post(k, i)) for i in range(n)]
        except (OSError, ValueError, LabError) as exc:
            with lock:
                errors.append(f"node{k}: {exc}")
            return
        with lock:
            sizes.extend(len(json.dumps(ev, separators=(",", ":"))) for ev in stored)

    share = shares(lab, events)
    threads = [threading.Thread(target=work, args=(k, n)) for k, n in zip(lab.ks, share)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise LabError(f"appends failed: {errors[:3]}")
    return time.monotonic(), sizes


# --------------------------------------------------------------------------- raw baseline


def raw_baseline(lab: MeshLab, body: bytes, bulk: bytes) -> dict[str, float]:
    """A bare aiohttp HTTPS server in namespace 2, a client in namespace 1 (this file in
    its --raw-server / --raw-client roles)."""
    from hearthnet.testing.tlscerts import make_pki

    pki = make_pki(lab.root / "raw-pki")
    cert, key = pki.server("raw", hosts=[lab.addr(2)])
    (lab.root / "raw-body.json").write_bytes(body)
    (lab.root / "raw-bulk.json").write_bytes(bulk)
    server = lab.run(2, [sys.executable, __file__, "--raw-server", lab.addr(2), str(cert), str(key)],
                     stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise LabError("raw server did not start")
        client = lab.run(1, [sys.executable, __file__, "--raw-client", f"https://{lab.addr(2)}:{RAW_PORT}/",
                             str(lab.root), str(pki.ca_file)], stdout=subprocess.PIPE, text=True)
        out, _ = client.communicate(timeout=120)
        return json.loads(out)
    finally:
        server.kill()
        server.wait(timeout=5)


def _raw_server(host: str, cert: str, key: str) -> None:
    from aiohttp import web

    from hearthnet.testing.tlscerts import server_context

    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/", echo)

    async def serve() -> None:
        import asyncio

        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, RAW_PORT, ssl_context=server_context(Path(cert), Path(key))).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    import asyncio

    asyncio.run(serve())


def _raw_client(url: str, root: str, ca: str) -> None:
    import asyncio
    import ssl

    import aiohttp

    body = (Path(root) / "raw-body.json").read_bytes()
    bulk = (Path(root) / "raw-bulk.json").read_bytes()

    async def go() -> dict[str, float]:
        ctx = ssl.create_default_context(cafile=ca)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            rtts = []
            for _ in range(RAW_ROUND_TRIPS):
                t0 = time.perf_counter()
                async with s.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                rtts.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            async with s.post(url, data=bulk, headers={"Content-Type": "application/json"}) as r:
                await r.read()
            bulk_ms = (time.perf_counter() - t0) * 1000
        return {"rtt_p50_ms": statistics.median(rtts), "bulk_ms": bulk_ms, "bulk_bytes": len(bulk)}

    print(json.dumps(asyncio.run(go())), flush=True)


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> int:
    lab = MeshLab(args.nodes, args.prefix)
    try:
        lab.build()
        console.print(f"lab {args.prefix}: {args.nodes} namespaces; forming the community by invite ...")
        ids = form_community(lab, lambda text: console.print("  " + text))
        if args.base:
            preload(lab, args.base)
            console.print(f"every log holds {args.base} more (older) events")
        t_launch = lab.launch_all()
        mesh = wait_mesh(lab.nodes, lists_peers(ids), args.timeout)
        if any(d.done_at is None for d in mesh.values()):
            console.print("[red]the nodes did not all find each other[/red]")
            return 1
        console.print(f"mesh complete {max(d.done_at or 0 for d in mesh.values()) - t_launch:.1f} s after launch")
        settled, before = wait_counts(lab, None, args.timeout)
        if settled is None:
            console.print(f"[red]the logs did not settle: {before}[/red]")
            return 1
        base = next(iter(before.values()))
        time.sleep(IDLE_SECONDS)  # the rounds of the mesh forming end first
        b0 = sent_bytes(lab)
        time.sleep(IDLE_SECONDS)
        idle_rate = (sent_bytes(lab) - b0) / IDLE_SECONDS

        signed = presign(lab, args.events) if args.mode == "ingest" else None
        sample = json.dumps({"events": [post(1, 0)]}).encode()
        b0, t0, wall0 = sent_bytes(lab), time.monotonic(), time.time()
        t_appended, sizes = append_all(lab, args.events, signed)
        t_done, final = wait_counts(lab, base + args.events, args.timeout)
        b1, t1 = sent_bytes(lab), time.monotonic()
        stats = round_stats(lab, wall0)
        console.print(f"sync rounds: {stats}")
        console.print("node complete after (s): " + ", ".join(
            f"n{k} {DONE_AT[k] - t0:.1f}" for k in sorted(DONE_AT)))
        if t_done is None:
            console.print(f"[red]not converged within {args.timeout:g} s: counts {final}[/red]")
            return 1
        bulk = json.dumps({"events": [post(1, i) for i in range(args.events)]}).encode()
        raw = raw_baseline(lab, sample, bulk)
        report(args, t0, t_appended, t_done, b1 - b0 - idle_rate * (t1 - t0), idle_rate, sizes, raw)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if lab.lock.held:
            console.print("cleaning up ...")
            left = lab.cleanup()
            console.print(f"removed: no namespace of prefix {args.prefix} is left" if not left else f"LEFT: {left}")


def report(args: argparse.Namespace, t0: float, t_appended: float, t_done: float, sent: float,
           idle_rate: float, sizes: list[int], raw: dict[str, float]) -> None:
    converge = t_done - t0
    per_event = sent / args.events
    raw_min = statistics.mean(sizes) * (args.nodes - 1)
    how = "one community.log.ingest a node" if args.mode == "ingest" else "one community.log.append each"
    table = Table(title=f"{args.nodes} nodes, {args.events} events spread over all of them ({how}), "
                        f"logs holding {args.base} events before")
    table.add_column("measure")
    table.add_column("ours", justify="right")
    table.add_column("raw baseline (same run)", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("time to full convergence", f"{converge:.2f} s",
                  f"HTTPS POST rtt p50 {raw['rtt_p50_ms']:.2f} ms", f"{converge * 1000 / raw['rtt_p50_ms']:.0f} rtt")
    table.add_row("  after the last write returned", f"{t_done - t_appended:.2f} s",
                  f"bulk POST of all events {raw['bulk_ms']:.0f} ms", "")
    table.add_row(f"  writing them (local API, 1 thread a node, {args.mode})", f"{t_appended - t0:.2f} s", "", "")
    table.add_row("bytes sent per event (all nodes, on the wire)", f"{per_event:,.0f} B",
                  f"event JSON x {args.nodes - 1} receivers {raw_min:,.0f} B", f"{per_event / raw_min:.2f}x")
    table.add_row("idle background (discovery)", f"{idle_rate:,.0f} B/s", "", "")
    console.print(table)
    verdict = "met" if converge <= 10 else "NOT met"
    console.print(f"target: convergence <= 10 s: {verdict}")
    print(json.dumps({"nodes": args.nodes, "events": args.events, "mode": args.mode, "base": args.base, "converge_s": round(converge, 3),
                      "after_last_append_s": round(t_done - t_appended, 3),
                      "append_s": round(t_appended - t0, 3), "bytes_per_event": round(per_event),
                      "raw_min_bytes_per_event": round(raw_min), "bytes_ratio": round(per_event / raw_min, 2),
                      "idle_bytes_per_s": round(idle_rate), **{f"raw_{k}": round(v, 3) for k, v in raw.items()}}))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--raw-server":
        _raw_server(*sys.argv[2:5])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--raw-client":
        _raw_client(*sys.argv[2:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for each wait")
    ap.add_argument("--prefix", default="hnconv", help="namespace prefix (default hnconv)")
    ap.add_argument("--base", type=int, default=0, help="events every log holds before the run")
    ap.add_argument("--mode", choices=("ingest", "append"), default="ingest",
                    help="ingest: each node's share pre-signed with its key and handed to its ledger in "
                         "one local call (measures the mesh); append: one local append per event "
                         "(measures the appends too)")
    args = ap.parse_args()
    if not 2 <= args.nodes <= 50:
        ap.error("--nodes must be 2..50")
    if (reason := unavailable_reason()):
        print(f"converge: {reason}", file=sys.stderr)
        return 3
    if (missing := invite_commands_missing()):
        print(f"converge: blocked: this install lacks {', '.join(missing)}", file=sys.stderr)
        return 3
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    try:
        return run(args)
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"converge: interrupted ({exc or 'SIGINT'}); the lab was removed", file=sys.stderr)
        return 130
    except LabError as exc:
        print(f"converge: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
