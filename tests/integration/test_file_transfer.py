"""File transfer through real nodes (issue 7 §3 and §4): a parallel fetch from three
sources, one of them a current member serving corrupt chunks; a fetch resumed after
`kill -9` of the fetching node's file worker; a 200 MB file read by a slow reader
through the local API and through a second node's gateway, with every process's memory
bounded."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any

import blake3
import psutil
import pytest
from supervisor.xmlrpc import SupervisorTransport

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES
from hearthnet.constants import STREAM_WINDOW_FRAMES
from hearthnet.testing.file_holder import FakeHolder
from hearthnet.testing.nodes import Node, join_by_invite, key_of
from hearthnet.testing.peer_abuse import wait_until_member
from hearthnet.testing.rss import PeakRss, node_processes
from hearthnet.testing.waiting import wait_for
from hearthnet.transport.sse import format_frame

pytestmark = pytest.mark.integration

CORE = ("broker", "gateway", "ledger", "governance", "discovery", "file")


def node_id(node: Node) -> str:
    return node.api("/api/v1/status")["node"]["node_id"]


def routes_to(node: Node, cap: str, *remote: str) -> bool:
    """`node`'s broker offers `cap` from every node in `remote`."""
    have = {c["node_id"] for c in node.api("/api/v1/capabilities")["capabilities"]
            if c["name"] == cap and not c["local"]}
    return set(remote) <= have


def chunk_files(node: Node) -> list[Path]:
    return sorted((node.root / "data" / "hearthnet" / "blobs").glob("*/*.bin"))


def started(make_node: Any, name: str) -> Node:
    n = make_node(name)
    n.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    return n


# --------------------------------------------------------------------------- 3 sources, one corrupt

CHUNKS = 192  # 48 MB: the queue must outlast H's manifest check, or H is never asked a chunk (a flake at 48)


def test_three_sources_one_serving_corrupt_chunks(make_node, tmp_path: Path) -> None:
    """Alice and Bob hold the file; H, a current member (its key was invited and joined),
    offers it too but flips a bit in every chunk it serves. Carol's `file get` uses all
    three at once: the file arrives byte-identical, every chunk from Alice or Bob (H's
    chunks were refused and fetched again elsewhere), and H is dropped from the fetch
    with its failures counted (its score drops) and is not recorded as a holder."""
    a, b, c, h_node = (started(make_node, n) for n in ("alice", "bob", "carol", "holder"))
    a.init()
    a.start(wait_workers=CORE)
    community = node_id(a)
    b_id = join_by_invite(a, b)
    h_id = join_by_invite(a, h_node)  # H's key is a member; the node itself never runs
    c_id = join_by_invite(a, c)  # carol's log, pulled at redeem, already has bob and H
    b.start(wait_workers=CORE)
    c.start(wait_workers=CORE)

    data = os.urandom(CHUNKS * CHUNK_SIZE_BYTES - 1234)
    src = tmp_path / "shelter-list.pdf"
    src.write_bytes(data)
    with FakeHolder(tmp_path / "h", community, key_of(h_node), data, filename=src.name) as h:
        b.peer_add(a)  # bob learns of carol's join from alice
        wait_until_member(b, key_of(c))
        for y in (a, b, h):
            c.peer_add(y)
        cids = {n.cli_json("file", "add", str(src))["files"][0]["cid"] for n in (a, b)}
        assert cids == {h.cid}
        wait_for(lambda: routes_to(c, "file.read", community, b_id, h_id) and routes_to(c, "file.list", h_id),
                 timeout=60, interval=0.3, message="carol to route file.read to alice, bob and H")

        out = tmp_path / "fetched"
        out.mkdir()
        got = c.cli_json("file", "get", h.cid, "--out", str(out), timeout=120)

    assert (out / src.name).read_bytes() == data
    assert got["fetched"] is True and got["resumed_chunks"] == 0
    assert h_id not in got["from"] and set(got["from"]) <= {community, b_id}, got
    assert sum(got["from"].values()) == CHUNKS  # each chunk once, verified, from alice or bob
    assert h.served, f"H was never asked for a chunk (reads: {h.reads})"  # so it really was a source
    assert got["dropped"] == [h_id] and got["failures"][h_id] >= 3, got
    (f,) = c.cli_json("file", "ls")["files"]
    assert f["complete"] and h_id not in f["holders"]
    assert c_id not in got["from"]


# --------------------------------------------------------------------------- a pair of nodes


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Any:
    """Alice (founder) and Bob, each routing file.read to the other."""
    root = tmp_path_factory.mktemp("xfer")
    a, b = Node(root / "a", "alice"), Node(root / "b", "bob")
    for n in (a, b):
        n.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    try:
        a.init()
        a.start(wait_workers=CORE)
        join_by_invite(a, b)
        b.start(wait_workers=CORE)
        for x, y in ((a, b), (b, a)):
            x.peer_add(y)
        ids = node_id(a), node_id(b)
        wait_for(lambda: routes_to(b, "file.read", ids[0]) and routes_to(a, "file.read", ids[1]),
                 timeout=60, interval=0.3, message="alice and bob to route file.read to each other")
        yield a, b, ids
    finally:
        a.cleanup()
        b.cleanup()


def worker(node: Node, program: str) -> dict[str, Any]:
    return next(w for w in node.api("/api/v1/workers")["workers"] if w["program"] == program)


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for off in range(0, size, 8 * 1024 * 1024):
            f.write(os.urandom(min(8 * 1024 * 1024, size - off)))


def same_bytes(x: Path, y: Path) -> bool:
    with x.open("rb") as fx, y.open("rb") as fy:
        while True:
            bx, by = fx.read(1 << 20), fy.read(1 << 20)
            if bx != by:
                return False
            if not bx:
                return True


# --------------------------------------------------------------------------- resume after kill -9

RESUME_CHUNKS = 480  # 120 MiB: a fetch of several seconds, long enough to be cut in the middle


def test_a_fetch_resumes_after_kill_9_of_the_fetching_file_worker(pair, tmp_path: Path) -> None:
    """Bob fetches alice's file; once some of its chunks are in bob's store, bob's file
    worker gets SIGKILL. supervisord restarts it and the broker re-dispatches the
    (idempotent) file.get to the new worker, which asks alice only for the chunks not
    stored yet: the ones stored before the kill are neither fetched nor written again."""
    a, b, (alice_id, _) = pair
    src = tmp_path / "bridge-photos.tar"
    write_random(src, RESUME_CHUNKS * CHUNK_SIZE_BYTES - 4321)
    cid = a.cli_json("file", "add", str(src), timeout=120)["files"][0]["cid"]
    before = set(chunk_files(b))
    victim = worker(b, "file")["pid"]

    first = subprocess.Popen([sys.executable, "-m", "hearthnet", "file", "get", cid, "--json"], env=b.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def some_stored() -> bool:
            n = len(set(chunk_files(b)) - before)
            assert n < RESUME_CHUNKS and first.poll() is None, f"the fetch ended before the kill ({n} chunks)"
            return n >= RESUME_CHUNKS // 5

        wait_for(some_stored, timeout=120, interval=0.02, message="bob to store a fifth of the chunks")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: gone(victim), 10, 0.005, message="the killed worker to be gone")
        # What the killed worker left (its replacement needs far longer than this to start).
        stored = {p: p.stat() for p in set(chunk_files(b)) - before}
        out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert 0 < len(stored) < RESUME_CHUNKS
    assert first.returncode == 0, out + err  # the same `file get` went on in the restarted worker
    assert worker(b, "file")["pid"] != victim
    got = json.loads(out)
    assert got["fetched"] is True and got["resumed_chunks"] == len(stored), (len(stored), got)
    assert got["from"] == {alice_id: RESUME_CHUNKS - len(stored)}  # only what was missing
    trace = b.api("/api/v1/traces?n=1&capability=file.get")["traces"][-1]
    assert trace["result"] == "ok" and trace["redispatched"] >= 1, trace
    for p, st in stored.items():  # stored before the kill: not written again
        now = p.stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), p

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    again = b.cli_json("file", "get", cid, "--out", str(out_dir))
    assert again["fetched"] is False and again["from"] == {}
    assert same_bytes(out_dir / src.name, src)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --------------------------------------------------------------------------- 200 MB to a slow reader
# The bound, as in test_stream_flow.py: a `chunk` frame of a 256 KiB chunk is F ≈ 350 KB
# on the wire (base64 in JSON). Each hop holds at most one window of the stream
# (STREAM_WINDOW_FRAMES = 16 frames unconsumed, bus/flow.py) plus the frame it is working
# on, in a few transient copies (msgpack, JSON, SSE bytes), so each process may grow by at
# most 2·W·F + 16 MiB (≈ 27 MB; the 16 MiB baseline is allocator slack, TLS and socket
# buffers) while 200 MB pass through it. Without flow control the file worker would run
# ahead of the reader and the broker or the gateway would hold most of the file.

BIG_TOTAL = 200 * 1024 * 1024
BIG_CHUNKS = BIG_TOTAL // CHUNK_SIZE_BYTES
FRAME = len(format_frame("chunk", {"i": BIG_CHUNKS, "cid": "blake3:" + "0" * 64, "size_bytes": CHUNK_SIZE_BYTES,
                                   "data_b64": "A" * ((CHUNK_SIZE_BYTES * 4 + 2) // 3)}))
BOUND = 2 * STREAM_WINDOW_FRAMES * FRAME + 16 * 1024 * 1024


@pytest.fixture(scope="module")
def big_file(pair, tmp_path_factory) -> tuple[str, str]:
    """A 200 MB file added on alice with `file add`: (manifest CID, BLAKE3 of its bytes)."""
    a, _, _ = pair
    src = tmp_path_factory.mktemp("big") / "flood-model.bin"
    write_random(src, BIG_TOTAL)
    whole = blake3.blake3()
    with src.open("rb") as f:
        while block := f.read(1 << 22):
            whole.update(block)
    cid = a.cli_json("file", "add", str(src), timeout=300)["files"][0]["cid"]
    src.unlink()
    return cid, "blake3:" + whole.hexdigest()


def supervisor(node: Node) -> Any:
    transport = SupervisorTransport(None, None, f"unix://{node.run_dir / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def slow_read(node: Node, cid: str) -> dict[str, Any]:
    """`file.read` of the whole file through `node`'s local API by a reader process that
    sleeps 3 ms after each frame and checks each chunk against the manifest."""
    body = json.dumps({"params": {}, "input": {"cid": cid}})
    proc = subprocess.run([sys.executable, "-m", "hearthnet.testing.sse_reader", str(node.run_dir), "file.read",
                           body, "--sleep-ms", "3", "--timeout", "300", "--verify-chunks"],
                          env=node.env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def node_pids(*nodes: Node) -> dict[str, int]:
    return {f"{n.name}.{prog}": pid for n in nodes for prog, pid in node_processes(n.proc.pid).items()
            if prog in ("broker", "gateway", "file")}


@pytest.mark.parametrize("path", ["local", "peer"])
def test_a_slow_reader_of_a_200_mb_file_bounds_every_process(pair, big_file, path: str) -> None:
    """local: reader ← alice's gateway ← broker ← file worker. peer: bob's own file worker
    is stopped, so bob's file.read goes to alice: reader ← bob's gateway ← bob's broker ←
    bob's peer proxy ← HTTPS ← alice's gateway ← alice's broker ← alice's file worker.
    The reader gets every chunk, each hashing to the manifest's CID, and no process grows
    past the bound."""
    a, b, (alice_id, _) = pair
    cid, whole = big_file
    reader_node = a if path == "local" else b
    if path == "peer":
        supervisor(b).stopProcess("hearthnet:file")
    try:
        if path == "peer":
            wait_for(lambda: routes_to(b, "file.read", alice_id) and not any(
                c["name"] == "file.read" and c["local"] for c in b.api("/api/v1/capabilities")["capabilities"]),
                timeout=60, interval=0.3, message="bob to route file.read to alice only")
        rss = PeakRss(node_pids(a, b))
        rss.start()
        out = slow_read(reader_node, cid)
        growth = {**rss.growth(), "reader": out["rss_growth"]}
    finally:
        if path == "peer":
            supervisor(b).startProcess("hearthnet:file")
    assert out["status"] == 200 and out["last_event"] == "done", out
    assert out["frames"] == 1 + BIG_CHUNKS + 1 and out["payload_bytes"] == BIG_TOTAL
    assert (out["chunks_verified"], out["chunks_bad"], out["blake3"]) == (BIG_CHUNKS, 0, whole)
    trace = reader_node.api("/api/v1/traces?n=1&capability=file.read")["traces"][-1]
    assert trace["route"] == ("local:file" if path == "local" else f"remote:{alice_id}"), trace
    over = {k: v for k, v in growth.items() if v > BOUND}
    assert not over, f"RSS grew past {BOUND} bytes: {over} (all: {growth})"
