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
from pathlib import Path
from typing import Any

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES
from hearthnet.identity import keys
from hearthnet.testing.file_holder import FakeHolder
from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.peer_abuse import wait_until_member
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

CORE = ("broker", "gateway", "ledger", "governance", "discovery", "file")


def node_id(node: Node) -> str:
    return node.api("/api/v1/status")["node"]["node_id"]


def key_of(node: Node) -> keys.KeyPair:
    return keys.load(node.root / "data" / "hearthnet" / "keys")


def peer_add(x: Node, y: Node | FakeHolder) -> None:
    r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
    assert r.returncode == 0, r.stderr + r.stdout


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

CHUNKS = 48  # 12 MB: every source gets batches of 8


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
        peer_add(b, a)  # bob learns of carol's join from alice
        wait_until_member(b, key_of(c))
        for y in (a, b, h):
            peer_add(c, y)
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
