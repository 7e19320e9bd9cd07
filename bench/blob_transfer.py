"""A file fetched from 1 and from 3 neighbours on real nodes vs the raw limit, in one run.

    .venv/bin/python bench/blob_transfer.py [--mb 1024] [--rounds 1] [--sources 1,3]

Four real nodes on this host (loopback, multicast discovery off, throw-away XDG homes,
`HN_BENCH_DIR` picks where; the file is stored 4 times, so it needs ~5x --mb of disk):
A founds a community, B, C and the fetcher D join by invite (`invite create` on A,
`invite redeem` on each), and every node is told where every other is (`hearthnet peer
add 127.0.0.1:<port>`). A, B and C each `file add` the same file of --mb MiB (random
bytes), so all three hold the same manifest CID.

fetch: D's `file.get {cid, sources: [...]}` through its local API (what `hearthnet file
get CID --json` calls, with the sources pinned so "1 peer" means A alone and "3 peers"
means A, B and C): D's file worker runs the transfer manager, which asks each source
for batches of chunks (`file.read` streams: holder's file worker -> its broker -> its
gateway's peer API (HTTPS, signed) -> D's gateway peer proxy -> D's broker -> D's file
worker), verifies every chunk (BLAKE3) and writes it into D's store. Timed from the call
to its answer; before each fetch D's store is emptied (its chunk and manifest files
deleted under the running worker; nothing caches them), so every fetch moves every byte.

raw: read the same file in 256 KiB pieces, BLAKE3 each piece, write the bytes to a new
file (what any verified transfer must at least do on the receiving side), measured
before each fetch in the same round, page cache warm for both.

Prints MB/s of each, the ratio fetch / raw, and the peak RSS of every process of the
fetcher and of the sources during each fetch (Linux VmHWM, reset before the fetch:
hearthnet/testing/rss.py) and the CPU seconds each spent in it (where the time goes),
then one JSON document with everything. Each round also measures the TLS ceiling
(bench/transfer_ceiling.py: two bare processes, one TLS socket, each chunk verified on
both ends and stored as its own file), the least any fetch must do. Targets (issue 7):
>= 0.5x raw from one peer, faster from three than from one. A warm-up fetch of a small
file from each source first (it also waits until every holder knows D is a member).
The nodes use `pybase64` and `orjson` when the interpreter has them (Base64 of each
chunk, JSON of each SSE frame); without them the standard library does it, slower: say
which when quoting figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES  # noqa: E402
from hearthnet.testing.nodes import Node, join_by_invite  # noqa: E402
from hearthnet.testing.rss import PeakRss, node_processes  # noqa: E402
from hearthnet.testing.waiting import wait_for  # noqa: E402
from transfer_ceiling import ceiling, raw  # noqa: E402  (bench/, this script's own folder)

MIB = 1024 * 1024
WORKERS = ("broker", "gateway", "ledger", "governance", "discovery", "file")


def make_source(path: Path, mib: int) -> None:
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(MIB))


def call(node: Node, cap: str, inp: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    status, body = node.call(cap, {"params": {}, "input": inp}, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"{node.name}: {cap}: {status} {json.dumps(body)[:500]}")
    return body["output"]


def empty_store(node: Node) -> None:
    """Delete the store's chunks and manifests (the shard dirs stay: the store made them)."""
    for path in (node.root / "data" / "hearthnet" / "blobs").glob("??/*"):
        path.unlink()


def try_fetch(node: Node, cid: str, source_id: str) -> bool:
    status, body = node.call("file.get", {"params": {}, "input": {"cid": cid, "sources": [source_id]}}, timeout=120)
    return status == 200


def start_nodes(tmp: Path) -> tuple[list[Node], Node]:
    a, b, c, d = (Node(tmp / n, n) for n in ("a", "b", "c", "d"))
    nodes = [a, b, c, d]
    for n in nodes:
        n.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    a.init()
    a.start(wait_workers=WORKERS)
    for n in (b, c, d):
        join_by_invite(a, n)
        n.start(wait_workers=WORKERS)
    for x in nodes:
        for y in nodes:
            if x is not y:
                r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
                if r.returncode != 0:
                    raise RuntimeError(f"{x.name}: peer add {y.name}: {r.stderr or r.stdout}")
    return [a, b, c], d


def cpu_seconds(procs: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process so far (where a fetch spends its time)."""
    out = {}
    for name, pid in procs.items():
        t = psutil.Process(pid).cpu_times()
        out[name] = t.user + t.system
    return out


def node_id(node: Node) -> str:
    return node.api("/api/v1/status")["node"]["node_id"]


def warm_up(holders: list[Node], fetcher: Node, tmp: Path) -> dict[str, str]:
    """A small file from each holder alone: routes, membership and TLS sessions settled."""
    small = tmp / "warm.bin"
    small.write_bytes(os.urandom(3 * CHUNK_SIZE_BYTES + 5))
    ids = {h.name: node_id(h) for h in holders}
    cid = ""
    for h in holders:
        cid = h.cli_json("file", "add", str(small))["files"][0]["cid"]
    for h in holders:
        wait_for(lambda: try_fetch(fetcher, cid, ids[h.name]), 120, 0.5,
                 message=f"{fetcher.name} fetches the warm-up file from {h.name}")
        empty_store(fetcher)
    return ids


def fetch_round(fetcher: Node, holders: list[Node], ids: dict[str, str], cid: str) -> dict[str, Any]:
    empty_store(fetcher)
    procs = {f"{fetcher.name}.{k}": v for k, v in node_processes(fetcher.proc.pid).items()}
    for h in holders:
        procs.update({f"{h.name}.{k}": v for k, v in node_processes(h.proc.pid).items()})
    rss = PeakRss(procs)
    rss.start()
    cpu0 = cpu_seconds(procs)
    t0 = time.perf_counter()
    out = call(fetcher, "file.get", {"cid": cid, "sources": [ids[h.name] for h in holders]})
    took = time.perf_counter() - t0
    cpu = {k: round(v - cpu0[k], 2) for k, v in cpu_seconds(procs).items() if v - cpu0[k] >= 0.05}
    peaks, growth = rss.peaks(), rss.growth()
    return {"seconds": took, "from": {h.name: out["from"].get(ids[h.name], 0) for h in holders},
            "cpu_seconds": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
            "peak_rss_mib": {k: round(v / MIB, 1) for k, v in sorted(peaks.items())},
            "rss_growth_mib": {k: round(v / MIB, 1) for k, v in sorted(growth.items())}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024, help="file size in MiB")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sources", default="1,3", help="comma-separated source counts to measure (1..3)")
    args = ap.parse_args()
    counts = [int(x) for x in args.sources.split(",")]
    if not all(1 <= n <= 3 for n in counts):
        ap.error("--sources: counts of 1..3")
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    raws: list[float] = []
    ceilings: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hn-bench-xfer-", dir=os.environ.get("HN_BENCH_DIR")) as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "flood-map.bin"
        make_source(src, args.mb)
        holders: list[Node] = []
        fetcher: Node | None = None
        try:
            t0 = time.monotonic()
            holders, fetcher = start_nodes(tmp)
            ids = warm_up(holders, fetcher, tmp)
            cid = ""
            for h in holders:
                cid = h.cli_json("file", "add", str(src), timeout=1800)["files"][0]["cid"]
            print(f"4 nodes up, file added on 3 in {time.monotonic() - t0:.0f} s; cid {cid}", flush=True)
            raw(src, tmp / "warm-copy.bin")  # page cache warm for raw as for the holders
            for r in range(args.rounds):
                for n in counts:
                    raws.append(raw(src, tmp / "copy.bin"))
                    ceilings.append(ceiling(src, tmp))
                    res = fetch_round(fetcher, holders[:n], ids, cid)
                    results[n].append(res)
                    mb = args.mb * MIB / 1e6
                    print(f"round {r + 1}: {n} source(s) {mb / res['seconds']:7.1f} MB/s ({res['seconds']:.2f} s), "
                          f"raw {mb / raws[-1]:7.1f} MB/s, TLS ceiling {mb / ceilings[-1]:7.1f} MB/s; "
                          f"chunks from {res['from']}", flush=True)
        finally:
            for n in [*holders, *([fetcher] if fetcher else [])]:
                n.cleanup()
    report(args.mb, raws, ceilings, results)
    return 0


def report(mib: int, raws: list[float], ceilings: list[float], results: dict[int, list[dict[str, Any]]]) -> None:
    mb = mib * MIB / 1e6
    r = statistics.median(raws)
    c = statistics.median(ceilings)
    summary: dict[str, Any] = {"size_mib": mib, "raw_mb_s": round(mb / r, 1), "raw_seconds": [round(x, 2) for x in raws],
                               "tls_ceiling_mb_s": round(mb / c, 1), "tls_ceiling_ratio_to_raw": round(r / c, 3)}
    print(f"\nfile of {mib} MiB, medians of {len(raws) // max(len(results), 1)} round(s)")
    print(f"  raw (BLAKE3 + copy)  {mb / r:8.1f} MB/s  {r:6.2f} s")
    print(f"  TLS ceiling          {mb / c:8.1f} MB/s  {c:6.2f} s   ratio {r / c:.3f}x raw (bench/transfer_ceiling.py)")
    for n, runs in results.items():
        s = statistics.median(x["seconds"] for x in runs)
        summary[f"sources_{n}"] = {"mb_s": round(mb / s, 1), "ratio_to_raw": round(r / s, 3),
                                   "ratio_to_ceiling": round(c / s, 3), "runs": runs}
        print(f"  fetch from {n} peer(s) {mb / s:8.1f} MB/s  {s:6.2f} s   ratio {r / s:.3f}x raw, {c / s:.3f}x ceiling")
        last = runs[-1]
        top = sorted(last["peak_rss_mib"].items(), key=lambda kv: -kv[1])
        print("    peak RSS (MiB): " + ", ".join(f"{k} {v:.0f} (+{last['rss_growth_mib'][k]:.0f})" for k, v in top))
        print("    CPU seconds during the fetch: " + ", ".join(f"{k} {v:.1f}" for k, v in last["cpu_seconds"].items()))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
