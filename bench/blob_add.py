"""Adding a file to the blob store vs the raw limit, in one run.

    .venv/bin/python bench/blob_add.py [--mb 1024] [--runs 3] [--node]

raw:   read the file in 256 KiB pieces, BLAKE3 each piece, write the bytes to a new file
       (what any content-addressed add must at least do).
store: `BlobStore.add_file` (hash, verify, one file per chunk via temp + rename, manifest).
cli:   with --node, `hearthnet file add PATH --json` against a real node started for the
       bench (the file worker does the store's work; adds the CLI, the local API, the bus).
Prints MB/s for each and the ratio to raw. The data is random (incompressible) and the
page cache is warm for all of them (the source file is read once before timing).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hearthnet.blobs.store import BlobStore  # noqa: E402

from blob_transfer import make_source, raw  # noqa: E402  (the same raw baseline)

MB = 1024 * 1024


def store_add(src: Path, root: Path) -> float:
    store = BlobStore(root, min_free_bytes=0)
    t0 = time.perf_counter()
    store.add_file(src)
    return time.perf_counter() - t0


def cli_add(src: Path, tmp: Path) -> float | None:
    from hearthnet.testing.nodes import Node

    node = Node(tmp / "bench-node", "bench")
    try:
        node.init()
        node.start(wait_workers=("broker", "gateway", "ledger", "file"))
        t0 = time.perf_counter()
        node.cli_json("file", "add", str(src))
        return time.perf_counter() - t0
    finally:
        node.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--node", action="store_true", help="also time `hearthnet file add` on a real node")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hn-bench-blob-", dir=os.environ.get("HN_BENCH_DIR")) as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "source.bin"
        make_source(src, args.mb)
        raw(src, tmp / "warm.bin")  # warm the page cache
        raws, stores = [], []
        for n in range(args.runs):
            raws.append(raw(src, tmp / "copy.bin"))
            stores.append(store_add(src, tmp / f"store{n}"))
        cli = cli_add(src, tmp) if args.node else None
    size = args.mb * MB / 1e6
    r, s = statistics.median(raws), statistics.median(stores)
    print(f"file of {args.mb} MiB, {args.runs} runs, medians")
    print(f"  raw (BLAKE3 + copy)       {size / r:8.1f} MB/s  {r:6.2f} s")
    print(f"  BlobStore.add_file        {size / s:8.1f} MB/s  {s:6.2f} s   ratio {r / s:.2f}x raw")
    if cli is not None:
        print(f"  hearthnet file add (node) {size / cli:8.1f} MB/s  {cli:6.2f} s   ratio {r / cli:.2f}x raw")


if __name__ == "__main__":
    main()
