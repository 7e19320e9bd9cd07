"""RAG on real nodes with the real embedding worker (all-MiniLM-L6-v2): a document added
to alice's blob store and ingested on alice; bob's query for that corpus is routed to
alice (one rag.query descriptor per node, params.corpora); a corpus nobody holds is
not_found; the `rag.document.ingested` event reaches bob; alice's rag worker killed with
SIGKILL mid-ingest leaves her corpus consistent and the ingest completes."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hearthnet.testing.knowledge import (CORPUS, GUIDE, add_file, call, consistency, corpus_db, node_id, ok,
                                         rag_pid, start_pair)
from hearthnet.testing.pdfs import make_pdf
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
pytest.importorskip("hearthnet.services.embedding.minilm")


@pytest.fixture
def pair(make_node):
    return start_pair(make_node)


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
