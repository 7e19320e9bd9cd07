"""A deliberately slow reader of a local-API stream, as its own process (so its memory can
be measured apart from the test's): the flow-control tests and `bench/stream_flow.py`.

    python -m hearthnet.testing.sse_reader RUN_DIR CAP BODY_JSON [--sleep-ms 5]
        [--pause-after N] [--timeout SECONDS] [--verify-chunks]

It POSTs the call to `<RUN_DIR>/api.sock` with the owner's token, reads the SSE reply one
line at a time, sleeping `--sleep-ms` after each frame. With `--pause-after N` it stops
reading after N frames, prints `{"paused": N}` and waits for a line on stdin before
reading on (a stalled reader the test controls). At the end it prints one JSON line:
frames and payload bytes read, its own peak RSS growth, the last event, and whether the stream ended without a
terminal frame (the gateway hung up). With `--verify-chunks` (a `file.read` stream) it
also decodes each `chunk` frame, checks its BLAKE3 against the CID the `manifest` frame
lists for that index, and reports `chunks_verified`, `chunks_bad` and `blake3`, the hash
of all the chunk bytes in the order they came.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any

from hearthnet.testing.rss import own_rss


class ChunkCheck:
    """BLAKE3 of each chunk of a `file.read` stream against its manifest's CID."""

    def __init__(self) -> None:
        import blake3

        self.cids: dict[int, str] = {}
        self.whole = blake3.blake3()
        self.verified = self.bad = 0

    def frame(self, event: str | None, data: Any) -> None:
        from hearthnet.blobs.cids import b64decode, hash_bytes

        if event == "manifest":
            self.cids = {c["i"]: c["cid"] for c in data["chunks"]}
        elif event == "chunk":
            raw = b64decode(data["data_b64"])
            self.whole.update(raw)
            if self.cids.get(data["i"]) == hash_bytes(raw):
                self.verified += 1
            else:
                self.bad += 1

    def report(self) -> dict[str, Any]:
        return {"chunks_verified": self.verified, "chunks_bad": self.bad,
                "blake3": "blake3:" + self.whole.hexdigest()}
from hearthnet.unixhttp import UnixHTTPConnection


def read_stream(run_dir: Path, cap: str, body: Any, sleep_ms: float, pause_after: int | None,
                timeout: float, verify_chunks: bool = False) -> dict[str, Any]:
    rss_start = own_rss()[0]
    conn = UnixHTTPConnection(str(run_dir / "api.sock"), timeout=timeout + 60)
    token = (run_dir / "api.token").read_text().strip()
    conn.request("POST", "/bus/v1/call", body=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", "Accept": "text/event-stream",
        "Authorization": f"Bearer {token}", "X-HearthNet-Capability": cap,
        "X-HearthNet-Timeout": str(timeout)})
    resp = conn.getresponse()
    out: dict[str, Any] = {"status": resp.status, "frames": 0, "payload_bytes": 0, "last_event": None,
                           "last_data": None, "hung_up": False}
    event, started = None, time.monotonic()
    check = ChunkCheck() if verify_chunks else None
    try:
        while True:
            line = resp.readline()
            if not line:
                out["hung_up"] = out["last_event"] not in ("done", "error")
                break
            line = line.rstrip(b"\r\n")
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
                out["frames"] += 1
                out["last_event"] = event
                if check is not None:
                    check.frame(event, data)
                if isinstance(data, dict) and isinstance(data.get("data_b64"), str):
                    out["payload_bytes"] += len(data["data_b64"]) * 3 // 4
                else:
                    out["last_data"] = data
                if event in ("done", "error"):
                    break
                if pause_after is not None and out["frames"] == pause_after:
                    print(json.dumps({"paused": out["frames"]}), flush=True)
                    sys.stdin.readline()
                if sleep_ms:
                    time.sleep(sleep_ms / 1000)
    except (ConnectionError, http.client.IncompleteRead) as exc:
        out["hung_up"] = True
        out["error"] = repr(exc)[:200]
    finally:
        conn.close()
    out["seconds"] = round(time.monotonic() - started, 3)
    if check is not None:
        out.update(check.report())
    out["rss_growth"] = own_rss()[1] - rss_start  # peak while reading minus before
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("cap")
    ap.add_argument("body")
    ap.add_argument("--sleep-ms", type=float, default=0.0)
    ap.add_argument("--pause-after", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--verify-chunks", action="store_true")
    a = ap.parse_args(argv)
    out = read_stream(a.run_dir, a.cap, json.loads(a.body), a.sleep_ms, a.pause_after, a.timeout,
                      a.verify_chunks)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
