"""The transfer manager's own ceiling: TransferManager.fetch from in-memory sources into a
fresh blob store, vs raw BLAKE3 hashing + a file copy of the same bytes, in the same run.

    PYTHONPATH=. .venv/bin/python bench/blob_transfer_local.py [--mb 256] [--rounds 3]
        [--batch 8] [--dir /path/on/the/disk/to/test]

No nodes, no bus, no network: the sources hand over chunks from memory, so what is
measured is the manager (queue, pullers, per-chunk BLAKE3 verify, one file per chunk
written atomically through BlobStore.write_chunk in a thread) and the disk. Cases:
1 source, 3 sources, 3 sources that also Base64-decode every chunk as BusSource does
with `data_b64` (the wire's decoding cost on the receiver), and 3 sources into a store
that verifies every chunk but writes nothing (the manager's own ceiling). Raw: every
256 KiB chunk hashed with BLAKE3 and appended to one file in the same directory.

Prints MB/s per case (median of --rounds), the ratio ours / raw, and this process's peak
RSS. The whole file is held in memory once (the sources' copy), so peak RSS is at least
--mb; the manager itself holds at most sources x batch chunks in flight.
bench/blob_transfer.py (real nodes on loopback) is the end-to-end figure.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import blake3  # noqa: E402

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, BlobError, b64decode, b64encode, hash_bytes  # noqa: E402
from hearthnet.blobs.manifest import BlobManifest  # noqa: E402
from hearthnet.blobs.store import BlobStore  # noqa: E402
from hearthnet.blobs.transfer import TransferManager  # noqa: E402

MB = 1024 * 1024


class MemorySource:
    def __init__(self, node_id: str, manifest: BlobManifest, chunks: list[bytes], wire: list[str] | None) -> None:
        self.node_id, self._manifest, self._chunks, self._wire = node_id, manifest, chunks, wire
        self.served = 0

    async def manifest(self, cid: str) -> dict[str, Any]:
        return self._manifest.to_wire()

    async def chunks(self, cid: str, indexes: list[int]) -> AsyncIterator[tuple[int, bytes]]:
        for i in indexes:
            self.served += 1
            yield i, (b64decode(self._wire[i]) if self._wire is not None else self._chunks[i])
            await asyncio.sleep(0)  # a real source awaits the network between chunks


class VerifyOnlyStore(BlobStore):
    """Hashes every chunk against its CID as the real store does, writes nothing: the
    manager's own ceiling, without the disk."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, min_free_bytes=0)
        self.held: set[str] = set()

    def write_chunk(self, cid: str, data: bytes | memoryview) -> bool:
        if hash_bytes(data) != cid:
            raise BlobError("bad_request", "chunk does not hash to its CID")
        self.held.add(cid)
        return True

    def missing(self, manifest: BlobManifest) -> list[int]:
        return [i for i, c in enumerate(manifest.chunks) if c not in self.held]


def raw_copy(chunks: list[bytes], out: Path) -> float:
    started = time.perf_counter()
    with out.open("wb") as fh:
        for data in chunks:
            blake3.blake3(data).digest()
            fh.write(data)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def ours(chunks: list[bytes], manifest: BlobManifest, root: Path, n_sources: int, batch: int,
         wire: list[str] | None, disk: bool = True) -> tuple[float, dict[str, int]]:
    store = BlobStore(root, min_free_bytes=0) if disk else VerifyOnlyStore(root)
    sources = [MemorySource(f"node-{k}", manifest, chunks, wire) for k in range(n_sources)]
    started = time.perf_counter()
    result = asyncio.run(TransferManager(store, batch=batch).fetch(manifest.cid, sources))
    seconds = time.perf_counter() - started
    assert store.missing(manifest) == [] and result.fetched_bytes == manifest.size_bytes
    shutil.rmtree(root, ignore_errors=True)
    return seconds, result.from_nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dir", type=Path, default=None, help="where the stores are written (default: a temp dir)")
    args = ap.parse_args()

    size = args.mb * MB
    print(f"preparing {args.mb} MB of random data ({-(-size // CHUNK_SIZE_BYTES)} chunks) ...", flush=True)
    data = os.urandom(size)
    chunks = [data[o:o + CHUNK_SIZE_BYTES] for o in range(0, size, CHUNK_SIZE_BYTES)]
    del data
    manifest = BlobManifest.build([hash_bytes(c) for c in chunks], size)
    wire = [b64encode(c) for c in chunks]

    cases: dict[str, list[float]] = {"raw BLAKE3 + copy": [], "1 source": [], "3 sources": [],
                                     "3 sources + base64": [], "3 sources, no disk": []}
    shares: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="hn-blob-bench-") as tmp:
        base = Path(tmp)
        for r in range(args.rounds):
            cases["raw BLAKE3 + copy"].append(raw_copy(chunks, base / "raw.bin"))
            for name, n, w, disk in (("1 source", 1, None, True), ("3 sources", 3, None, True),
                                     ("3 sources + base64", 3, wire, True), ("3 sources, no disk", 3, None, False)):
                seconds, shares[name] = ours(chunks, manifest, base / f"store-{r}", n, args.batch, w, disk)
                cases[name].append(seconds)
            print(f"round {r + 1}: " + ", ".join(f"{k} {size / MB / v[-1]:.0f} MB/s" for k, v in cases.items()),
                  flush=True)

    raw = statistics.median(cases["raw BLAKE3 + copy"])
    print(f"\n{args.mb} MB, batch {args.batch}, median of {args.rounds} rounds")
    for name, times in cases.items():
        t = statistics.median(times)
        share = f"  chunks per source {sorted(shares[name].values(), reverse=True)}" if name in shares else ""
        print(f"  {name:<20} {size / MB / t:8.0f} MB/s  {raw / t:5.2f}x raw{share}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(the sources' in-memory copy and its base64 form included)")


if __name__ == "__main__":
    main()
