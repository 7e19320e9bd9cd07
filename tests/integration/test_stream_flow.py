"""Flow control on real nodes (issue 7 §3): 200 MB streamed in 256 KiB chunks to a reader
that sleeps between frames, through the local API and through a second node's gateway
(peer path), with the peak RSS of every process bounded; and a stalled reader whose
stream is ended and whose resources are all released.

The bound: a frame of a 256 KiB chunk is F ≈ 350 KB on the wire (base64 in JSON). Each
hop holds at most one window of a stream (W = 16 frames unconsumed, bus/flow.py) plus the
frame it is working on, in a few transient copies (msgpack, JSON, SSE bytes). So each
process may grow by at most 2·W·F + 16 MiB (≈ 27 MB: allocator slack, TLS and socket
buffers) while the stream moves 200 MB; without flow control the producer runs ahead
and the broker or gateway holds most of the 200 MB."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Iterator

import pytest

from hearthnet.constants import STREAM_WINDOW_FRAMES
from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.rss import PeakRss, node_processes
from hearthnet.testing.waiting import wait_for
from hearthnet.transport.sse import format_frame

pytestmark = pytest.mark.integration

CHUNK = 256 * 1024
TOTAL = 200 * 1024 * 1024
CHUNKS = TOTAL // CHUNK
F = len(format_frame("chunk", {"i": CHUNKS, "data_b64": "A" * ((CHUNK * 4 + 2) // 3)}))
BOUND = 2 * STREAM_WINDOW_FRAMES * F + 16 * 1024 * 1024
STALL_SECONDS = 3  # the nodes' bus.stream_stall_seconds (60 by default)
BODY = {"params": {}, "input": {"chunks": CHUNKS, "chunk_bytes": CHUNK}}


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[Node, Node, str]]:
    """A serves experimental.echo; B has no echo worker, so B's calls go to A (peer path)."""
    root = tmp_path_factory.mktemp("flow")
    a, b = Node(root / "a", "a"), Node(root / "b", "b")
    a.env["HEARTHNET_WORKERS_ECHO"] = "true"
    for n in (a, b):
        n.env["HEARTHNET_BUS_STREAM_STALL_SECONDS"] = str(STALL_SECONDS)
    try:
        a.init()
        a.start(wait_workers=("broker", "gateway", "ledger", "echo"))
        join_by_invite(a, b)
        b.start(wait_workers=("broker", "gateway", "ledger"))
        for x, y in ((a, b), (b, a)):
            r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
            assert r.returncode == 0, r.stderr + r.stdout
        a_id = a.api("/api/v1/status")["node"]["node_id"]
        wait_for(lambda: any(c["name"] == "experimental.echo" and c["node_id"] == a_id
                             for c in b.api("/api/v1/capabilities")["capabilities"]),
                 30, message="experimental.echo from A in B's registry")
        yield a, b, a_id
    finally:
        a.cleanup()
        b.cleanup()


def reader(node: Node, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hearthnet.testing.sse_reader", str(node.run_dir),
                             "experimental.echo", json.dumps(BODY), "--timeout", "600", *args],
                            env=node.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def in_flight(node: Node) -> int:
    return sum(w.get("in_flight") or 0 for w in node.api("/api/v1/workers")["workers"])


def processes(*nodes: Node) -> dict[str, int]:
    return {f"{n.name}.{prog}": pid for n in nodes for prog, pid in node_processes(n.proc.pid).items()
            if prog in ("broker", "gateway", "echo")}


def assert_bounded(growth: dict[str, int]) -> None:
    over = {k: v for k, v in growth.items() if v > BOUND}
    assert not over, f"RSS grew past {BOUND} bytes: {over} (all: {growth})"


def test_a_slow_reader_of_200_mb_on_the_local_api_bounds_every_process(pair):
    a, _, _ = pair
    rss = PeakRss(processes(a))
    assert set(rss.pids) == {"a.broker", "a.gateway", "a.echo"}
    rss.start()
    out = finish(reader(a, "--sleep-ms", "3"))
    assert out["status"] == 200 and out["last_event"] == "done", json.dumps(out)
    assert out["frames"] == CHUNKS + 1 and out["payload_bytes"] == TOTAL
    assert_bounded({**rss.growth(), "reader": out["rss_growth"]})


def test_a_slow_reader_on_the_peer_path_bounds_both_nodes(pair):
    """B's reader ← B's gateway ← B's broker ← B's peer proxy ← HTTPS ← A's gateway ←
    A's broker ← A's echo worker: every one of them stays within the bound."""
    a, b, a_id = pair
    rss = PeakRss(processes(a, b))
    rss.start()
    out = finish(reader(b, "--sleep-ms", "3"))
    assert out["status"] == 200 and out["last_event"] == "done", json.dumps(out)
    assert out["frames"] == CHUNKS + 1 and out["payload_bytes"] == TOTAL
    trace = b.api("/api/v1/traces?n=1&capability=experimental.echo")["traces"][-1]
    assert trace["route"] == f"remote:{a_id}" and trace["result"] == "ok"
    assert_bounded({**rss.growth(), "reader": out["rss_growth"]})


@pytest.mark.parametrize("path", ["local", "peer"])
def test_a_stalled_reader_gets_its_stream_ended_and_everything_released(pair, path):
    """The reader takes 20 frames and stops reading (its connection stays open). Past the
    stall timeout the stream is ended: no call is in flight on either node any more, the
    worker's slot is free, the gateway hung up on the reader, and no process grew past
    the bound meanwhile."""
    a, b, _ = pair
    node = a if path == "local" else b
    rss = PeakRss(processes(a, b))
    rss.start()
    proc = reader(node, "--pause-after", "20")
    try:
        assert proc.stdout is not None and json.loads(proc.stdout.readline()) == {"paused": 20}
        wait_for(lambda: in_flight(a) == 0 and in_flight(b) == 0, 10 * STALL_SECONDS, 0.2,
                 message=lambda: f"stalled stream released (a: {in_flight(a)}, b: {in_flight(b)})")
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        out = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out["hung_up"] or (out["last_event"] == "error" and out["last_data"]["error"] == "timeout"), out
    assert out["frames"] < CHUNKS
    trace = a.api("/api/v1/traces?n=1&capability=experimental.echo")["traces"][-1]
    assert trace["result"] in ("timeout", "cancelled")
    assert_bounded(rss.growth())
    # The node serves the next stream as usual.
    status, body = node.call("experimental.echo", {"input": {"items": ["ok"], "stream": False}})
    assert status == 200 and body["output"]["items"] == ["ok"]
