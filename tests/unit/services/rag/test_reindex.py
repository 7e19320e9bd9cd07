"""`rag.reindex` (reindex.py, Corpora.swap/_repair): a corpus rebuilt with another
model answers with it; documents keep their event ids; progress frames; a failure or a
crash at any point leaves the old corpus whole; an ingest during the build is not lost;
a document whose blob is gone is re-embedded from its stored chunks; bad input."""
from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from hearthnet.errors import HearthNetError
from hearthnet.services.rag.extract import extract
from tests.unit.services.rag.conftest import DIM, DIM2, MODEL, MODEL2, Harness
from tests.unit.services.rag.test_rag_service import GUIDE

OTHER = "# Radio\n\nThe crank radio needs no batteries. Turn it for a minute to hear the fire brigade.\n"


def reindex(rag: Harness, corpus: str, model: str | None = None) -> dict:
    return rag.call("rag.reindex", {"corpus": corpus}, {"embedding_model": model} if model else {})


def docs_and_chunks(rag: Harness, corpus: str) -> tuple[int, int]:
    (info,) = [c for c in rag.call("rag.list_corpora", {}, {})["output"]["corpora"] if c["name"] == corpus]
    return info["docs"], info["chunks"]


@pytest.fixture
def two_docs(rag):
    guide = rag.add(GUIDE.encode(), "guide.md")
    other = rag.add(OTHER.encode(), "radio.md")
    first = rag.ingest("c", guide)
    rag.ingest("c", other)
    return rag, guide, other, first


def test_reindex_with_another_model_then_query_with_it(two_docs, tmp_path):
    rag, guide, other, first = two_docs
    before = docs_and_chunks(rag, "c")
    out = reindex(rag, "c", MODEL2)
    assert out["output"] == {"corpus": "c", "embedding_model": MODEL2, "dim": DIM2, "docs": 2, "chunks": before[1],
                             "from_stored_chunks": 0}
    assert out["meta"]["previous_model"] == MODEL and "embedding_model = \"test-hash-embed-small\"" in out["meta"]["note"]
    assert rag.announced >= 1  # rag.query's params name the corpus's new model
    (info,) = rag.call("rag.list_corpora", {}, {})["output"]["corpora"]
    assert (info["embedding_model"], info["dim"]) == (MODEL2, DIM2)
    # this node still embeds queries with MODEL: refused with the hint, not answered wrongly
    with pytest.raises(HearthNetError) as exc:
        rag.query("c", "shelter")
    assert exc.value.code == "schema_mismatch"
    # a node configured with the new model answers, with exact citations
    rag.close_service()
    rag.new_service(embedding_model=MODEL2)
    hits = rag.query("c", "where is the community shelter gymnasium school")["output"]["chunks"]
    top = hits[0]
    assert "gymnasium" in top["text"] and top["metadata"]["doc_cid"] == guide
    text = extract(rag.blobs.read_blob_bytes(guide), "guide.md").units[0].text
    assert text[top["metadata"]["char_start"]:top["metadata"]["char_end"]] == top["text"]
    # the documents keep the events that announced them
    store = rag.svc.corpora.get("c").store
    assert store.document(guide)["event_id"] == first["meta"]["ingest_event_id"]
    assert len(store.documents()) == 2
    assert not [p for p in (rag.root / "embeddings").iterdir() if p.name.startswith(".")]


def test_reindex_streams_progress_and_ends_with_done(two_docs):
    rag, *_ = two_docs
    frames = rag.stream("rag.reindex", {"corpus": "c"}, {})
    progress = [d for e, d in frames if e == "progress"]
    assert {"embedding", "reindexing"} <= {d["stage"] for d in progress}
    assert all(d["total"] == 2 and 0 <= d["current"] <= 2 for d in progress)
    assert progress[-1]["current"] == 2 and progress[-1]["chunks"] > 0
    assert any(d.get("embed_rate", 0) > 0 for d in progress)
    event, done = frames[-1]
    assert event == "done" and done["output"]["embedding_model"] == MODEL and "note" not in done["meta"]
    assert rag.query("c", "crank radio batteries")["output"]["chunks"]


def test_a_failed_reindex_leaves_the_old_corpus_serving(two_docs):
    rag, guide, *_ = two_docs
    before = docs_and_chunks(rag, "c")
    rag.bus.embed_fail_after = rag.bus.embed_calls + 1  # the second document's embedding fails
    with pytest.raises(HearthNetError) as exc:
        reindex(rag, "c", MODEL2)
    assert exc.value.code == "internal_error"
    rag.bus.embed_fail_after = None
    assert docs_and_chunks(rag, "c") == before
    assert rag.svc.corpora.get("c").model == MODEL
    assert rag.query("c", "shelter gymnasium")["output"]["chunks"][0]["metadata"]["doc_cid"] == guide
    assert not [p for p in (rag.root / "embeddings").iterdir() if p.name.startswith(".")]


def test_unknown_model_or_corpus_and_bad_input(two_docs):
    rag, *_ = two_docs
    for params, inp, code in [({"corpus": "nope"}, {}, "not_found"),
                              ({"corpus": "Bad Name"}, {}, "bad_request"),
                              ({}, {}, "bad_request"),
                              ({"corpus": "c"}, {"embedding_model": 7}, "bad_request"),
                              ({"corpus": "c"}, {"embedding_model": "x" * 300}, "bad_request"),
                              ({"corpus": "c"}, {"embedding_model": "no-such-model"}, "partition")]:
        with pytest.raises(HearthNetError) as exc:
            rag.call("rag.reindex", params, inp)
        assert exc.value.code == code, (params, inp)
    assert rag.svc.corpora.get("c").model == MODEL
    cap = rag.caps()["rag.reindex"]
    assert cap.trust_required == "self" and cap.max_concurrent == 1


def test_a_document_without_its_blob_is_reembedded_from_its_chunks(two_docs):
    rag, guide, other, _ = two_docs
    rag.blobs.delete_blob(other)
    out = reindex(rag, "c", MODEL2)
    assert out["output"]["docs"] == 2 and out["output"]["from_stored_chunks"] == 1
    rag.close_service()
    rag.new_service(embedding_model=MODEL2)
    hit = rag.query("c", "crank radio batteries fire brigade")["output"]["chunks"][0]
    assert hit["metadata"]["doc_cid"] == other and "crank radio" in hit["text"]


def test_an_ingest_during_the_build_reaches_the_new_corpus(two_docs):
    rag, *_ = two_docs
    late = rag.add(b"# Generator\n\nRun the generator outdoors only, never in the garage.\n", "gen.md")

    async def scenario() -> dict:
        rag.bus.embed_gate = asyncio.Event()
        job = asyncio.ensure_future(rag.caps()["rag.reindex"].handler(_req("rag.reindex", {"corpus": "c"}, {})))
        await asyncio.sleep(0.05)  # the reindex waits on its first embedding
        ingest = asyncio.ensure_future(rag.caps()["rag.ingest"].handler(_req("rag.ingest", {"corpus": "c"},
                                                                             {"doc_cid": late})))
        await asyncio.sleep(0.05)
        rag.bus.embed_gate.set()
        await ingest
        return await job

    out = rag.loop.run_until_complete(scenario())
    rag.bus.embed_gate = None
    assert out["output"]["docs"] == 3
    assert docs_and_chunks(rag, "c")[0] == 3
    assert rag.query("c", "generator outdoors garage")["output"]["chunks"][0]["metadata"]["doc_cid"] == late


def _req(cap: str, params: dict, inp: dict):
    from hearthnet.bus.service import Request
    from tests.unit.services.rag.conftest import ME

    return Request(capability=cap, version="1.0", body={"params": params, "input": inp}, caller=ME)


def test_start_repairs_a_reindex_cut_at_any_point(two_docs):
    rag, guide, *_ = two_docs
    before = docs_and_chunks(rag, "c")
    root = rag.root / "embeddings"
    rag.close_service()
    # cut during the build: the half-built successor is deleted, the corpus untouched
    (root / ".reindex-c").mkdir()
    (root / ".reindex-c" / "corpus.sqlite").write_bytes(b"half")
    rag.new_service()
    assert docs_and_chunks(rag, "c") == before and not (root / ".reindex-c").exists()
    rag.close_service()
    # cut between the swap's two renames: the old corpus comes back
    os.replace(root / "c", root / ".old-c")
    rag.new_service()
    assert docs_and_chunks(rag, "c") == before and not (root / ".old-c").exists()
    rag.close_service()
    # cut after both renames, before the old one was deleted: the new one stays
    (root / ".old-c").mkdir()
    rag.new_service()
    assert docs_and_chunks(rag, "c") == before and not (root / ".old-c").exists()
    assert rag.query("c", "shelter gymnasium")["output"]["chunks"][0]["metadata"]["doc_cid"] == guide


def test_empty_corpus_keeps_its_name_with_the_new_model(rag):
    cid = rag.add(b"Only one line about sandbags.", "s.txt")
    rag.ingest("e", cid)
    corpus = rag.svc.corpora.get("e")
    with sqlite3.connect(corpus.store.path) as db:  # the last document removed by hand
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM chunks_fts")
        db.execute("DELETE FROM documents")
    out = reindex(rag, "e", MODEL2)
    assert out["output"]["docs"] == 0 and out["output"]["dim"] == DIM2
    assert rag.svc.corpora.get("e").store.dim == DIM2 != DIM
