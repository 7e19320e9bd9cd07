"""`hearthnet file add` of a large file vs raw BLAKE3 hashing of the same bytes, and vs
raw hashing + writing every 256 KiB chunk to its own file (what a store must do at least).

    .venv/bin/python bench/blob_add.py [--size-mb 1000] [--rounds 2]

One node (throw-away XDG dirs, loopback, no LLM). Each round writes a fresh random file
(the store would otherwise find every chunk present), then runs raw and ours on it, the
file still in the page cache for both (dirty pages written back before each). Prints MB/s, the ratios, and the file worker's
peak RSS during the adds (sampled every 50 ms).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import blake3
import psutil

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES
from hearthnet.testing.nodes import Node

MB = 1_000_000


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 8 * 1024 * 1024)
            fh.write(os.urandom(n))
            left -= n


def raw_hash(path: Path) -> float:
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        while data := fh.read(CHUNK_SIZE_BYTES):
            blake3.blake3(data).hexdigest()
    return time.perf_counter() - t0


def raw_hash_and_copy(path: Path, into: Path) -> float:
    into.mkdir()
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        while data := fh.read(CHUNK_SIZE_BYTES):
            (into / blake3.blake3(data).hexdigest()).write_bytes(data)
    took = time.perf_counter() - t0
    shutil.rmtree(into)
    return took


class PeakRss:
    """The largest RSS of one process while running."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def file_worker_pid(node: Node) -> int:
    return next(w["pid"] for w in node.api("/api/v1/status")["workers"] if w["program"] == "file")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    size = args.size_mb * MB
    hashed, copied, ours, peaks = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="hn-bench-add-") as tmp:
        root = Path(tmp)
        node = Node(root / "node", "bench")
        node.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
        node.init()
        try:
            node.start(wait_workers=("broker", "gateway", "ledger", "file"))
            pid = file_worker_pid(node)
            for r in range(args.rounds):
                src = root / f"src{r}.bin"
                write_random(src, size)
                os.sync()  # each measurement starts with no dirty pages to write back
                hashed.append(raw_hash(src))
                copied.append(raw_hash_and_copy(src, root / f"raw{r}"))
                os.sync()
                with PeakRss(pid) as rss:
                    t0 = time.perf_counter()
                    out = node.cli("file", "add", str(src), "--json", timeout=3600)
                    ours.append(time.perf_counter() - t0)
                assert out.returncode == 0, out.stderr
                peaks.append(rss.peak)
                src.unlink()
        finally:
            node.cleanup()
    h, c, o = (statistics.median(x) for x in (hashed, copied, ours))
    rate = {k: round(size / v / MB, 1) for k, v in (("raw_hash", h), ("raw_hash_copy", c), ("file_add", o))}
    print(json.dumps({"size_mb": args.size_mb, "rounds": args.rounds, "mb_per_s": rate,
                      "file_add_vs_raw_hash": round(h / o, 2), "file_add_vs_raw_hash_copy": round(c / o, 2),
                      "file_worker_peak_rss_mb": round(max(peaks) / MB, 1)}, indent=2))
    print(f"\nfile add of {args.size_mb} MB: {rate['file_add']} MB/s; raw hashing {rate['raw_hash']} MB/s "
          f"({h / o:.2f}x), raw hashing + chunk files {rate['raw_hash_copy']} MB/s ({c / o:.2f}x); "
          f"file worker peak RSS {max(peaks) / MB:.0f} MB")


if __name__ == "__main__":
    main()
