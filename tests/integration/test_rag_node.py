"""RAG on real nodes with the real embedding worker (all-MiniLM-L6-v2): a document added
to alice's blob store and ingested on alice; bob's query for that corpus is routed to
alice (one rag.query descriptor per node, params.corpora); a corpus nobody holds is
not_found; the `rag.document.ingested` event reaches bob; alice's rag worker killed with
SIGKILL mid-ingest leaves her corpus consistent and the ingest completes."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.pdfs import make_pdf
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
pytest.importorskip("hearthnet.services.embedding.minilm")

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


@pytest.fixture
def pair(make_node):
    a, b = make_node("alice"), make_node("bob")
    for n in (a, b):
        n.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    a.init()
    a.start(wait_workers=WORKERS)
    join_by_invite(a, b)
    b.start(wait_workers=WORKERS)
    for x, y in ((a, b), (b, a)):
        r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
        assert r.returncode == 0, r.stderr + r.stdout
    return a, b


def test_ingest_on_alice_query_from_bob_event_and_kill_mid_ingest(pair, tmp_path: Path) -> None:
    a, b = pair
    alice = node_id(a)
    src = tmp_path / "flood-plan.md"
    src.write_text(GUIDE)
    cid = add_file(a, src)
    out = ok(a, "rag.ingest", {"corpus": CORPUS}, {"doc_cid": cid, "language": "en"})
    assert out["output"]["chunks_indexed"] >= 3 and out["meta"]["ingest_event_id"]

    # alice answers locally, and the citation is the exact passage
    local = ok(a, "rag.query", {"corpus": CORPUS}, {"query": "where is the shelter?"})
    top = local["output"]["chunks"][0]
    assert "gymnasium" in top["text"] and local["meta"]["node"] == alice
    assert GUIDE[top["metadata"]["char_start"]:top["metadata"]["char_end"]] == top["text"]

    # bob holds no corpus: his broker learns alice's list from her manifest and routes there
    def bob_routes_to_alice() -> bool:
        caps = b.api("/api/v1/capabilities")["capabilities"]
        return any(c["name"] == "rag.query" and c["node_id"] == alice and CORPUS in (c["params"] or {}).get("corpora", [])
                   for c in caps)

    wait_for(bob_routes_to_alice, timeout=90, interval=0.5, message="bob to see alice's corpus in her rag.query")
    remote = ok(b, "rag.query", {"corpus": CORPUS}, {"query": "which road do we take to leave the lower town?"})
    assert remote["meta"]["node"] == alice
    # the answering passage is among the hits (its rank against the title section varies)
    assert any(c["metadata"]["heading_path"][-1] == "Evacuation route" and "dyke road" in c["text"]
               for c in remote["output"]["chunks"])
    assert any(t["capability"] == "rag.query" and t["route"] == f"remote:{alice}"
               for t in b.api("/api/v1/traces?n=50&capability=rag.query")["traces"])
    status, body = call(b, "rag.query", {"corpus": "nobody-has-this"}, {"query": "x"})
    assert status == 404 and body["error"] == "not_found"

    # the event reaches bob with the next sync round
    def bob_has_event() -> bool:
        events = ok(b, "community.log.events", {}, {"event_types": ["rag.document.ingested"]})["output"]["events"]
        return any(e["data"]["doc_cid"] == cid and e["data"]["corpus"] == CORPUS for e in events)

    wait_for(bob_has_event, timeout=120, interval=1, message="rag.document.ingested to reach bob")

    # kill -9 of alice's rag worker in the middle of a long ingest
    pages = [[f"Section {p}.{i}: keep sandbags, pumps, torches and spare batteries ready; check the cellar "
              f"drain number {p * 100 + i} before the water rises." for i in range(30)] for p in range(80)]
    big = tmp_path / "leaflets.pdf"
    big.write_bytes(make_pdf(pages, title="Leaflets"))
    big_cid = add_file(a, big)
    result: dict[str, Any] = {}

    def ingest() -> None:
        result["first"] = call(a, "rag.ingest", {"corpus": CORPUS}, {"doc_cid": big_cid})

    before = rag_pid(a)
    t = threading.Thread(target=ingest)
    t.start()
    time.sleep(1.5)  # extraction and the first embedding batches are under way
    assert t.is_alive(), f"the ingest finished before it could be killed: {result}"
    os.kill(before, signal.SIGKILL)
    t.join(600)
    db = corpus_db(a, CORPUS)
    wait_for(lambda: rag_pid(a) not in (None, before), timeout=60, message="supervisord to restart the rag worker")
    counts = consistency(db)
    assert counts["chunks"] == counts["fts"] == counts["declared"] and counts["no_vector"] == counts["orphans"] == 0

    again = ok(a, "rag.ingest", {"corpus": CORPUS}, {"doc_cid": big_cid}, timeout=600)
    n = again["output"]["chunks_indexed"]
    assert n > 40
    counts = consistency(db)
    assert counts == {"docs": 2, "chunks": counts["declared"], "fts": counts["declared"],
                      "declared": out["output"]["chunks_indexed"] + n, "no_vector": 0, "orphans": 0}
    (info,) = ok(a, "rag.list_corpora", {}, {})["output"]["corpora"]
    assert info["docs"] == 2 and info["chunks"] == counts["chunks"] and info["embedding_model"] == "all-MiniLM-L6-v2"
    # the resumed document answers bob's queries; its 80 pages differ only in their drain
    # numbers, so which page ranks first is not asserted (RRF does not let one rare number
    # outweigh a closer vector), only that the hits are that document's, filtered by page
    hit = ok(b, "rag.query", {"corpus": CORPUS},
             {"query": "cellar drain number 1207", "k": 3, "filter": {"doc_cid": big_cid, "page": 13}})["output"]["chunks"]
    assert hit and all(h["metadata"]["page"] == 13 and h["metadata"]["doc_cid"] == big_cid for h in hit)
    assert any("1207" in h["text"] for h in hit)
