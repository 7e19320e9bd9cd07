"""`rag.auto_replicate` between real nodes (README "Ask with sources", Auto-replication).

alice (auto_replicate off) and bob (on, `HEARTHNET_RAG_AUTO_REPLICATE=true`) are members
who peer-added each other. alice first appends two hostile `rag.document.ingested`
events through her own ledger (an event for `personal` naming a file she holds, one
naming a CID nobody holds); then she ingests a Markdown guide. bob's rag worker fetches
the guide's blob (same CID, same bytes), indexes it into the same corpus with the same
model, answers queries for it himself with the exact cited range, and appends his own
event; the ghost CID did not hold his replicator up and `personal` was never fetched.
alice, with auto_replicate off, does not take bob's document; a restarted bob neither
re-ingests nor re-announces what he has, and still replicates what comes next."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hearthnet.blobs.cids import hash_bytes
from hearthnet.testing.knowledge import CORPUS, GUIDE, WORKERS, node_id, ok, start_pair
from hearthnet.testing.knowledge import add_file as add_path
from hearthnet.testing.nodes import Node
from hearthnet.testing.pdfs import costly_pdf
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration
pytest.importorskip("hearthnet.services.embedding.minilm")

EVENT = "rag.document.ingested"
SYNC_TIMEOUT = 180  # an event reaches the other node with a sync round; replication adds a fetch + ingest
SECRET = "# My diary\n\nThe spare key to the flat is under the blue flower pot.\n"
RECIPES = "# Bob's field kitchen\n\nLentil soup for forty: ten kilos of lentils, onions and a big pot.\n"
PUMPS = "# Pump rota\n\nThe fire brigade's portable pumps are checked every Saturday at nine.\n"


def add_file(node: Node, path: Path, text: str) -> str:
    path.write_text(text)
    return add_path(node, path)


def stored(node: Node) -> dict[str, dict[str, Any]]:
    """The node's blob store (`hearthnet file ls --json`): cid -> entry."""
    return {f["cid"]: f for f in node.cli_json("file", "ls")["files"]}


def corpora(node: Node) -> dict[str, dict[str, Any]]:
    """The node's own corpora (its broker serves a local caller's list_corpora locally)."""
    return {c["name"]: c for c in ok(node, "rag.list_corpora", {}, {})["output"]["corpora"]}


def ingested(node: Node, **inp: Any) -> list[dict[str, Any]]:
    """`rag.document.ingested` events in the node's ledger (`author=` to narrow)."""
    return ok(node, "community.log.events", {}, {"event_types": [EVENT], **inp})["output"]["events"]


def append(node: Node, data: dict[str, Any]) -> str:
    """An event signed by `node`'s key, appended through its own ledger: what any member
    can send, whatever its rag worker would write."""
    return ok(node, "community.log.append", {}, {"event_type": EVENT, "data": data})["output"]["event"]["event_id"]


def has_events(node: Node, ids: set[str]) -> bool:
    return ids <= {e["event_id"] for e in ingested(node)}


def rag_log(node: Node) -> list[dict[str, Any]]:
    """The rag worker's log records (JSON lines), oldest first."""
    path = node.log_dir / "rag.log"
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return [json.loads(x) for x in lines if x.startswith("{")]


def log_tail(node: Node) -> str:
    """The last lines of the node's logs, for a timeout message."""
    parts = []
    for f in sorted(node.log_dir.glob("*.log")) if node.log_dir.is_dir() else []:
        parts.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(parts)[-6000:]


@pytest.fixture
def pair(make_node):
    # bob reads a PDF with at most 2 s of CPU (the default is 60): the costly one is refused fast
    return start_pair(make_node, {"HEARTHNET_RAG_AUTO_REPLICATE": "true", "HEARTHNET_RAG_PDF_CPU_SECONDS": "2"})


def test_bob_replicates_what_alice_ingests_and_nothing_he_must_not(pair, tmp_path: Path) -> None:
    a, b = pair
    alice, bob = node_id(a), node_id(b)

    # hostile events first, by a member, through the real API: `personal` naming a file
    # alice holds (bob could fetch it, and must not), a CID nobody has, and a 150 KB PDF whose
    # 1 000 pages all draw one costly content stream (hours of pypdf CPU if read in full)
    secret = add_file(a, tmp_path / "diary.md", SECRET)
    ghost = hash_bytes(os.urandom(64))
    (tmp_path / "flyer.pdf").write_bytes(costly_pdf())
    costly = add_path(a, tmp_path / "flyer.pdf")
    hostile = {append(a, {"corpus": "personal", "doc_cid": secret, "title": "Diary", "language": "en", "chunks": 1}),
               append(a, {"corpus": CORPUS, "doc_cid": ghost, "title": "Nothing", "language": "en", "chunks": 1}),
               append(a, {"corpus": CORPUS, "doc_cid": costly, "title": "Flyer", "language": "en", "chunks": 1})}
    wait_for(lambda: has_events(b, hostile), SYNC_TIMEOUT, 1, message="alice's hostile events to reach bob")

    # then the real document: it replicates although the ghost came first (one queue)
    guide = add_file(a, tmp_path / "flood-plan.md", GUIDE)
    out = ok(a, "rag.ingest", {"corpus": CORPUS}, {"doc_cid": guide, "language": "en"})
    chunks = out["output"]["chunks_indexed"]
    assert chunks >= 3
    (theirs,) = [c for c in ok(a, "rag.list_corpora", {}, {})["output"]["corpora"] if c["name"] == CORPUS]

    def bob_indexed() -> dict[str, Any] | None:
        return corpora(b).get(CORPUS)

    mine = wait_for(bob_indexed, SYNC_TIMEOUT, 1, message=lambda: f"bob to replicate the guide\n{log_tail(b)}")
    assert mine["docs"] == 1 and mine["chunks"] == chunks == theirs["chunks"]
    assert mine["embedding_model"] == theirs["embedding_model"] == "all-MiniLM-L6-v2" and mine["dim"] == theirs["dim"]

    # the blob in bob's own store, complete and verified: the same CID and the same bytes
    entry = stored(b)[guide]
    assert entry["complete"] and entry["chunks_missing"] == 0 and entry["size_bytes"] == len(GUIDE.encode())
    copy = tmp_path / "bob-copy.md"
    got = b.cli_json("file", "get", guide, "--out", str(copy))
    assert got["cid"] == guide and not got["fetched"]  # already there: this get only wrote it out
    assert copy.read_bytes() == GUIDE.encode()

    # bob answers for the corpus himself (his descriptor lists it once re-announced), with
    # the passage and its exact range in the source text
    def bob_answers() -> dict[str, Any] | None:
        body = ok(b, "rag.query", {"corpus": CORPUS}, {"query": "where is the shelter?"})
        return body if body["meta"]["node"] == bob else None

    answer = wait_for(bob_answers, 90, 0.5, message="bob's own rag.query to serve the replicated corpus")
    assert answer["meta"]["embedding_model"] == "all-MiniLM-L6-v2"
    hit = next(c for c in answer["output"]["chunks"] if "gymnasium" in c["text"])
    md = hit["metadata"]
    assert md["doc_cid"] == guide and md["heading_path"][-1] == "Shelter" and md["language"] == "en"
    assert GUIDE[md["char_start"]:md["char_end"]] == hit["text"]

    # bob announced his copy with his own event (it reaches alice too)
    (own,) = [e for e in ingested(b, author=bob) if e["data"]["doc_cid"] == guide]
    assert own["data"]["corpus"] == CORPUS and own["data"]["chunks"] == chunks
    wait_for(lambda: has_events(a, {own["event_id"]}), SYNC_TIMEOUT, 1, message="bob's event to reach alice")

    # the hostile events, queued before the guide, are settled: the ghost was tried and
    # given up (not_found), the costly PDF refused once it had used bob's CPU budget for a
    # PDF (bad_request), both before the guide replicated; `personal` was never fetched nor
    # indexed; none left a document (nor an event by bob)
    tried = [(r["doc_cid"], r.get("code")) for r in rag_log(b)
             if r["msg"] in ("could not replicate a document", "document replicated")]
    assert tried == [(ghost, "not_found"), (costly, "bad_request"), (guide, None)], tried
    refused = next(r for r in rag_log(b) if r.get("doc_cid") == costly and r.get("code"))
    assert "flyer.pdf needs over 2 s of CPU" in refused["reason"], refused
    assert secret not in stored(b) and ghost not in stored(b)
    assert "personal" not in corpora(b) and corpora(b)[CORPUS]["docs"] == 1
    assert {e["data"]["doc_cid"] for e in ingested(b, author=bob)} == {guide}

    # alice, auto_replicate off, does not take bob's document
    recipes = add_file(b, tmp_path / "kitchen.md", RECIPES)
    event_id = ok(b, "rag.ingest", {"corpus": "bob-notes"}, {"doc_cid": recipes})["meta"]["ingest_event_id"]
    assert event_id
    wait_for(lambda: has_events(a, {event_id}), SYNC_TIMEOUT, 1, message="bob's bob-notes event to reach alice")
    assert "bob-notes" not in corpora(a) and recipes not in stored(a)
    assert {e["data"]["doc_cid"] for e in ingested(a, author=alice)} == {secret, ghost, costly, guide}

    # idempotence: a restarted bob reads the whole log again (catch-up) and re-ingests
    # nothing; a document alice ingests afterwards is the marker that his queue has
    # gone past the old events (one queue, in log order)
    b.stop()
    b.start(wait_workers=WORKERS)
    pumps = add_file(a, tmp_path / "pumps.md", PUMPS)
    ok(a, "rag.ingest", {"corpus": CORPUS}, {"doc_cid": pumps})
    wait_for(lambda: corpora(b)[CORPUS]["docs"] == 2, SYNC_TIMEOUT, 1,
             message=lambda: f"restarted bob to replicate the next document\n{log_tail(b)}")
    assert corpora(b)[CORPUS]["chunks"] == corpora(a)[CORPUS]["chunks"]
    by_bob = [e["data"]["doc_cid"] for e in ingested(b, author=bob)]
    assert sorted(by_bob) == sorted([guide, recipes, pumps]), by_bob  # one event per document, no second for the guide
    assert secret not in stored(b) and "personal" not in corpora(b)
