"""The fastest a verified chunk transfer between two Python processes over TLS can go here.

    .venv/bin/python bench/transfer_ceiling.py [--mb 1024] [--rounds 3]

What issue 7's file fetch must do at the least, with nothing else: a sender process reads
a file in 256 KiB pieces, BLAKE3s each (a holder verifies what it reads) and writes it to
a blocking TLS 1.3 socket on loopback (the node's own server/client contexts from
hearthnet.transport.tls, an Ed25519 certificate as a node has); the receiver reads each
piece with `recv_into`, BLAKE3s it against the expected CID and stores it as its own file
in two-level shard dirs via temp + rename (the blob store's layout). No HTTP, no signing,
no JSON, no asyncio, no bus: one socket, two processes, one per core. Also measured in
the same round: raw BLAKE3 + copy (bench/blob_transfer.py's limit), and the same two
processes over plain TCP (what TLS costs), and over TLS with the receiver appending to one
pack file instead of a file per chunk (what the spec's layout costs).

Prints MB/s and the ratio to raw of each. If the TLS ceiling is below 0.5x raw, no fetch
built on the fixed architecture (Python, TLS between nodes, a verified file per chunk)
can reach issue 7's "0.5x raw from one peer" on this machine. `ceiling()` is used by
bench/blob_transfer.py so both print it from the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES  # noqa: E402
from hearthnet.identity import keys  # noqa: E402
from hearthnet.transport.tls import client_ssl_context, ensure_tls_identity, server_ssl_context  # noqa: E402

MIB = 1024 * 1024


def raw(src: Path, out: Path) -> float:
    """BLAKE3 of each 256 KiB piece + a copy of the bytes into a new file (seconds)."""
    t0 = time.perf_counter()
    with src.open("rb") as fh, out.open("wb") as dst:
        while data := fh.read(CHUNK_SIZE_BYTES):
            blake3.blake3(data).digest()
            dst.write(data)
    took = time.perf_counter() - t0
    out.unlink()
    return took


def _cids(src: Path) -> list[bytes]:
    with src.open("rb") as fh:
        return [blake3.blake3(d).digest() for d in iter(lambda: fh.read(CHUNK_SIZE_BYTES), b"")]


def _send(src: Path, cids: list[bytes], listener: socket.socket, ctx: ssl.SSLContext | None) -> None:
    conn, _ = listener.accept()
    sock = ctx.wrap_socket(conn, server_side=True) if ctx else conn
    with src.open("rb") as fh:
        for cid in cids:
            data = fh.read(CHUNK_SIZE_BYTES)
            if blake3.blake3(data).digest() != cid:
                os._exit(3)
            sock.sendall(data)
    sock.close()


def _receive(port: int, cids: list[bytes], sizes: list[int], out: Path, tls: bool, pack: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    if tls:
        sock = client_ssl_context().wrap_socket(sock)
    buf = bytearray(CHUNK_SIZE_BYTES)
    view = memoryview(buf)
    out.mkdir(parents=True, exist_ok=True)
    packed = (out / "pack.bin").open("wb") if pack else None
    for cid, size in zip(cids, sizes):
        got = 0
        while got < size:
            n = sock.recv_into(view[got:size], size - got)
            if not n:
                raise RuntimeError("sender closed early")
            got += n
        piece = view[:size]
        if blake3.blake3(piece).digest() != cid:
            raise RuntimeError("chunk does not match its CID")
        if packed is not None:  # the what-if: one pack file instead of the spec's layout
            packed.write(piece)
            continue
        name = cid.hex()
        shard = out / name[:2] / name[2:4]
        shard.mkdir(parents=True, exist_ok=True)
        tmp = shard / f".{name}.tmp"
        with tmp.open("wb") as fh:
            fh.write(piece)
        os.replace(tmp, shard / name)
    if packed is not None:
        packed.close()
    sock.close()


def ceiling(src: Path, tmp: Path, *, tls: bool = True, pack: bool = False) -> float:
    """Seconds to move `src` chunk by chunk, verified on both ends, sender in its own process.
    `pack`: the receiver appends the chunks to one file instead of a file per chunk."""
    cids = _cids(src)
    size = src.stat().st_size
    sizes = [min(CHUNK_SIZE_BYTES, size - i * CHUNK_SIZE_BYTES) for i in range(len(cids))]
    ctx = None
    if tls:
        kp = keys.generate()
        ctx = server_ssl_context(ensure_tls_identity(kp, Path(tempfile.mkdtemp(dir=tmp)) / "tls"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    out = tmp / "ceiling-store"
    pid = os.fork()
    if pid == 0:  # the sender
        try:
            _send(src, cids, listener, ctx)
        finally:
            os._exit(0)
    listener.close()
    try:
        t0 = time.perf_counter()
        _receive(port, cids, sizes, out, tls, pack)
        took = time.perf_counter() - t0
    finally:
        _, status = os.waitpid(pid, 0)
        shutil.rmtree(out, ignore_errors=True)
    if status != 0:
        raise RuntimeError(f"sender exited with {status}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024, help="file size in MiB")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    got: dict[str, list[float]] = {"raw": [], "tls": [], "tcp": [], "tls_pack": []}
    with tempfile.TemporaryDirectory(prefix="hn-bench-ceiling-", dir=os.environ.get("HN_BENCH_DIR")) as name:
        tmp = Path(name)
        src = tmp / "source.bin"
        with src.open("wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(MIB))
        raw(src, tmp / "warm.bin")
        for r in range(args.rounds):
            got["raw"].append(raw(src, tmp / "copy.bin"))
            got["tls"].append(ceiling(src, tmp, tls=True))
            got["tcp"].append(ceiling(src, tmp, tls=False))
            got["tls_pack"].append(ceiling(src, tmp, tls=True, pack=True))
            mb = args.mb * MIB / 1e6
            print(f"round {r + 1}: " + ", ".join(f"{k} {mb / v[-1]:.0f} MB/s" for k, v in got.items()), flush=True)
    mb = args.mb * MIB / 1e6
    med = {k: statistics.median(v) for k, v in got.items()}
    summary = {"size_mib": args.mb, **{f"{k}_mb_s": round(mb / v, 1) for k, v in med.items()},
               "tls_ratio_to_raw": round(med["raw"] / med["tls"], 3),
               "tcp_ratio_to_raw": round(med["raw"] / med["tcp"], 3),
               "tls_pack_ratio_to_raw": round(med["raw"] / med["tls_pack"], 3)}
    print(f"\nmedians of {args.rounds} round(s), {args.mb} MiB")
    print(f"  raw (BLAKE3 + copy)            {summary['raw_mb_s']:8.1f} MB/s")
    print(f"  TLS ceiling (2 procs, verified) {summary['tls_mb_s']:8.1f} MB/s  {summary['tls_ratio_to_raw']:.3f}x raw")
    print(f"  TCP ceiling (no TLS)            {summary['tcp_mb_s']:8.1f} MB/s  {summary['tcp_ratio_to_raw']:.3f}x raw")
    print(f"  TLS, one pack file (what-if)     {summary['tls_pack_mb_s']:8.1f} MB/s  {summary['tls_pack_ratio_to_raw']:.3f}x raw")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
