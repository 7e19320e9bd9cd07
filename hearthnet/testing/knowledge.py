"""What the knowledge integration tests (test_rag_node, test_rag_reindex,
test_rag_replicate) share: a guide document, capability calls through a node's local API,
and looks at the rag worker and its corpus files."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hearthnet.testing.nodes import Node, join_by_invite

WORKERS = ("broker", "gateway", "ledger", "file", "rag", "embedding")
CORPUS = "niederrhein-emergency"
GUIDE = """# Flood plan for the lower town

## Evacuation route

When the river rises above seven metres, leave the lower town along the dyke road to the north,
then turn east to the Lindenweg primary school. Do not drive through water on the road.

## Shelter

The shelter is the school gymnasium. It has camp beds, a generator and a first aid room.
Bring your medication for a week, warm clothes and a blanket.

## Radio

Tune to 87.9 MHz for announcements from the fire brigade.
"""


def call(node: Node, cap: str, params: dict[str, Any], inp: dict[str, Any], timeout: float = 300) -> tuple[int, Any]:
    return node.call(cap, {"params": params, "input": inp}, timeout=timeout)


def ok(node: Node, cap: str, params: dict[str, Any], inp: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    status, body = call(node, cap, params, inp, timeout)
    assert status == 200, body
    return body


def add_file(node: Node, path: Path) -> str:
    return node.cli_json("file", "add", str(path))["files"][0]["cid"]


def node_id(node: Node) -> str:
    return node.api("/api/v1/status")["node"]["node_id"]


def rag_pid(node: Node) -> int | None:
    for w in node.api("/api/v1/workers")["workers"]:
        if w["program"] == "rag" and w["healthy"]:
            return w["pid"]
    return None


def corpus_db(node: Node, corpus: str) -> Path:
    return node.root / "cache" / "hearthnet" / "embeddings" / corpus / "corpus.sqlite"


def consistency(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {"docs": q("SELECT count(*) FROM documents"), "chunks": q("SELECT count(*) FROM chunks"),
                "fts": q("SELECT count(*) FROM chunks_fts"),
                "declared": q("SELECT coalesce(sum(chunks), 0) FROM documents"),
                "no_vector": q("SELECT count(*) FROM chunks WHERE vector IS NULL OR length(vector) != 384 * 4"),
                "orphans": q("SELECT count(*) FROM chunks WHERE doc_cid NOT IN (SELECT doc_cid FROM documents)")}


def start_pair(make_node: Any, bob_env: dict[str, str] | None = None) -> tuple[Node, Node]:
    """alice founds, bob joins by invite, both run WORKERS and have peer-added each other."""
    a, b = make_node("alice"), make_node("bob")
    for n in (a, b):
        n.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    b.env.update(bob_env or {})
    a.init()
    a.start(wait_workers=WORKERS)
    join_by_invite(a, b)
    b.start(wait_workers=WORKERS)
    for x, y in ((a, b), (b, a)):
        r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
        assert r.returncode == 0, r.stderr + r.stdout
    return a, b
