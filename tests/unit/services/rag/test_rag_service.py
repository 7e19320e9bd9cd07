"""RagService through its capability handlers (spec §3.8): add -> query recovers the
chunk, idempotent ingest, embedding via the bus, unknown corpus, `personal` never
advertised nor answered to peers, an interrupted ingest leaves the corpus consistent and
a second ingest finishes it, hybrid vs vector, filters, model mismatch, no embedder,
auto-replication (hostile events do not wedge its queue; the catch-up pages the log)."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hearthnet.errors import HearthNetError
from hearthnet.services.rag.extract import extract, passage
from hearthnet.services.rag.store import CorpusStore
from hearthnet.testing.pdfs import make_pdf
from tests.unit.services.rag.conftest import MODEL, PEER, Harness

GUIDE = """# Household emergency guide

Keep this guide where everyone can find it.

## Water

Store four litres of drinking water per person per day, for at least three days.
If tap water is unsafe, bring it to a rolling boil for one full minute, then let it cool.
Unscented household bleach also works: eight drops per four litres, wait thirty minutes.

## Shelter

The community shelter is the gymnasium of the Lindenweg primary school.
It opens when the siren sounds three long tones. Bring blankets and your medication.

## Radio

Tune the crank radio to 87.9 MHz for announcements from the fire brigade.
"""


def _count(store_dir, sql: str) -> int:
    with sqlite3.connect(store_dir / "corpus.sqlite") as db:
        return db.execute(sql).fetchone()[0]


def test_ingest_then_query_recovers_the_passage(rag):
    cid = rag.add(GUIDE.encode(), "guide.md", "text/markdown")
    out = rag.ingest("niederrhein-emergency", cid, language="en", metadata={"year": 2024})
    assert out["output"]["chunks_indexed"] >= 4 and out["output"]["tokens_indexed"] > 50
    assert out["meta"]["ingest_event_id"] and out["meta"]["corpus"] == "niederrhein-emergency"
    hits = rag.query("niederrhein-emergency", "where is the community shelter gymnasium school")["output"]["chunks"]
    top = hits[0]
    assert "gymnasium" in top["text"] and top["rank"] == 1
    md = top["metadata"]
    assert md["heading_path"] == ["Household emergency guide", "Shelter"]
    assert md["doc_cid"] == cid and md["chunk_id"].endswith(f"-{md['chunk_index']:04d}")
    assert md["doc_title"] == "Household emergency guide" and md["language"] == "en" and md["year"] == 2024
    # the citation checks out against the blob alone: same extractor, same range
    text = extract(rag.blobs.read_blob_bytes(cid), "guide.md", "text/markdown").units[0].text
    assert text[md["char_start"]:md["char_end"]] == top["text"]
    # score is the cosine of query and chunk: in [-1, 1], best first
    assert -1 <= hits[-1]["score"] <= top["score"] <= 1
    # the event the ledger got (spec §3.3)
    ev = rag.bus.events[-1]
    assert ev["event_type"] == "rag.document.ingested"
    assert ev["data"] == {"corpus": "niederrhein-emergency", "doc_cid": cid, "title": "Household emergency guide",
                          "language": "en", "chunks": out["output"]["chunks_indexed"]}


def test_pdf_chunks_carry_their_page_and_verify(rag):
    pages = [["Page one talks about sandbags and flood barriers."],
             ["Page two: the evacuation route follows the Rhine dyke north."],
             ["Page three lists the emergency phone numbers."]]
    data = make_pdf(pages, title="Flood plan")
    cid = rag.add(data, "flood.pdf")
    rag.ingest("flood", cid)
    top = rag.query("flood", "evacuation route dyke")["output"]["chunks"][0]
    assert top["metadata"]["page"] == 2 and top["metadata"]["doc_title"] == "Flood plan"
    unit = extract(data, "flood.pdf").units[top["metadata"]["page"] - 1]
    assert unit.text[top["metadata"]["char_start"]:top["metadata"]["char_end"]] == top["text"]
    md = top["metadata"]
    assert passage(rag.blobs.read_blob_bytes(cid), None, None, md["page"], md["char_start"], md["char_end"]) == top["text"]
    with pytest.raises(HearthNetError):
        passage(data, None, None, 9, 0, 1)


def test_ingest_is_idempotent_per_corpus_and_document(rag):
    cid = rag.add(GUIDE.encode(), "guide.md")
    first = rag.ingest("guide", cid)
    calls, events = rag.bus.embed_calls, len(rag.bus.events)
    again = rag.ingest("guide", cid)
    assert again["output"]["already_indexed"] is True
    assert again["output"]["chunks_indexed"] == first["output"]["chunks_indexed"]
    assert again["meta"]["ingest_event_id"] == first["meta"]["ingest_event_id"]
    assert rag.bus.embed_calls == calls and len(rag.bus.events) == events  # nothing embedded or announced twice
    store = rag.root / "embeddings" / "guide"
    assert _count(store, "SELECT count(*) FROM documents") == 1
    # another corpus is another index
    assert rag.ingest("other", cid)["output"]["already_indexed"] is False


def test_an_interrupted_ingest_leaves_nothing_half_done_and_a_second_one_finishes(rag):
    long_doc = "\n\n".join(f"Paragraph {i}: " + "sandbags and pumps keep the cellar dry. " * 12 for i in range(60))
    cid = rag.add(long_doc.encode(), "long.txt")
    small = rag.add(GUIDE.encode(), "guide.md")
    rag.ingest("c", small)
    rag.bus.embed_fail_after = rag.bus.embed_calls + 1  # dies after one batch of the long document
    with pytest.raises(HearthNetError):
        rag.ingest("c", cid)
    store = rag.root / "embeddings" / "c"
    assert _count(store, "SELECT count(*) FROM documents") == 1
    assert _count(store, f"SELECT count(*) FROM chunks WHERE doc_cid = '{cid}'") == 0
    rag.bus.embed_fail_after = None
    out = rag.ingest("c", cid)
    assert out["output"]["already_indexed"] is False
    n = out["output"]["chunks_indexed"]
    assert _count(store, f"SELECT count(*) FROM chunks WHERE doc_cid = '{cid}'") == n
    assert _count(store, "SELECT count(*) FROM chunks") == _count(store, "SELECT count(*) FROM chunks_fts")
    assert _count(store, "SELECT count(*) FROM chunks WHERE length(vector) != 64 * 4") == 0


@pytest.mark.parametrize("failure, raised", [("disk I/O error", sqlite3.OperationalError),
                                              ("database or disk is full", HearthNetError)])
def test_a_failing_transaction_rolls_back_the_whole_document(rag, monkeypatch, failure, raised):
    cid = rag.add(GUIDE.encode(), "guide.md")
    rag.ingest("c", rag.add(b"Some other text about radios and batteries.", "o.txt"))
    corpus = rag.svc.corpora.get("c")
    real = corpus.store._w

    class Dying:  # the connection dies on the 3rd chunk insert, mid-transaction
        def __init__(self) -> None:
            self.n = 0

        @property
        def in_transaction(self) -> bool:
            return real.in_transaction

        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO chunks("):
                self.n += 1
                if self.n == 3:
                    raise sqlite3.OperationalError(failure)
            return real.execute(sql, *args)

    monkeypatch.setattr(corpus.store, "_w", Dying())
    with pytest.raises(raised) as exc:
        rag.ingest("c", cid)
    if raised is HearthNetError:  # a full disk is the contract's disk_full, not a traceback
        assert exc.value.code == "disk_full" and "corpus.sqlite" in exc.value.message
    monkeypatch.setattr(corpus.store, "_w", real)
    store = rag.root / "embeddings" / "c"
    assert _count(store, f"SELECT count(*) FROM documents WHERE doc_cid = '{cid}'") == 0
    assert _count(store, f"SELECT count(*) FROM chunks WHERE doc_cid = '{cid}'") == 0
    assert _count(store, "SELECT count(*) FROM chunks_fts") == _count(store, "SELECT count(*) FROM chunks")
    assert rag.ingest("c", cid)["output"]["chunks_indexed"] > 0


def test_ingest_stream_reports_progress_then_done(rag):
    cid = rag.add(GUIDE.encode(), "guide.md")
    frames = rag.stream("rag.ingest", {"corpus": "g"}, {"doc_cid": cid})
    stages = [d["stage"] for e, d in frames if e == "progress"]
    assert stages[0] == "extracting" and "chunking" in stages and "embedding" in stages and stages[-1] == "storing"
    embedding = [d for e, d in frames if e == "progress" and d["stage"] == "embedding"][-1]
    assert embedding["current"] == embedding["total"] and embedding["embed_rate"] > 0
    event, done = frames[-1]
    assert event == "done" and done["output"]["doc_cid"] == cid and done["meta"]["ingest_event_id"]


def test_unknown_corpus_bad_names_and_bad_input(rag):
    with pytest.raises(HearthNetError) as exc:
        rag.query("nothing-here", "water")
    assert exc.value.code == "not_found"
    for name in ("Bad_Name", "", "x" * 65, "a/b", None, 7):
        with pytest.raises(HearthNetError) as exc:
            rag.query(name, "water")
        assert exc.value.code == "bad_request"
        with pytest.raises(HearthNetError) as exc:
            rag.ingest(name, "blake3:" + "0" * 64)
        assert exc.value.code == "bad_request"
    rag.ingest("g", rag.add(GUIDE.encode(), "guide.md"))
    for inp in ({"k": 21}, {"k": 0}, {"k": "5"}, {"mode": "magic"}, {"filter": {"Bad Key": 1}},
                {"filter": "lang=de"}, {"include_text": "yes"}):
        with pytest.raises(HearthNetError) as exc:
            rag.query("g", "water", **inp)
        assert exc.value.code == "bad_request", inp
    with pytest.raises(HearthNetError) as exc:
        rag.query("g", "")
    assert exc.value.code == "bad_request"
    with pytest.raises(HearthNetError) as exc:
        rag.ingest("g", "blake3:" + "1" * 64)  # not in the blob store
    assert exc.value.code == "not_found"
    with pytest.raises(HearthNetError) as exc:
        rag.ingest("g", rag.add(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "photo.png"))
    assert exc.value.code == "bad_request" and "PNG" in exc.value.message
    with pytest.raises(HearthNetError) as exc:
        rag.ingest("g", rag.add(make_pdf([[], []]), "scan.pdf"))
    assert exc.value.code == "bad_request" and "OCR" in exc.value.message


def test_k_limits_and_include_text(rag):
    text = "\n\n".join(f"Note {i}: the pump number {i} is in cellar {i}." for i in range(40))
    rag.ingest("g", rag.add(text.encode(), "notes.txt"))
    assert len(rag.query("g", "pump cellar")["output"]["chunks"]) <= 5
    out = rag.query("g", "pump cellar", k=20, include_text=False)["output"]["chunks"]
    assert all("text" not in c for c in out)


def test_personal_is_never_advertised_nor_answered_to_peers(rag):
    cid = rag.add(GUIDE.encode(), "guide.md")
    rag.ingest("personal", cid)
    rag.ingest("shared", cid)
    params = rag.caps()["rag.query"].params
    assert params["corpora"] == ["shared"] and "personal" not in params["embedding_models"]
    assert rag.caps()["rag.ingest"].params["corpora_available"] == ["shared"]
    assert rag.query("personal", "shelter")["output"]["chunks"]  # the owner: yes
    with pytest.raises(HearthNetError) as exc:
        rag.query("personal", "shelter", caller=PEER)
    assert exc.value.code == "not_found"
    assert rag.query("shared", "shelter", caller=PEER)["output"]["chunks"]
    mine = {c["name"] for c in rag.call("rag.list_corpora", {}, {})["output"]["corpora"]}
    theirs = {c["name"] for c in rag.call("rag.list_corpora", {}, {}, caller=PEER)["output"]["corpora"]}
    assert mine == {"personal", "shared"} and theirs == {"shared"}
    with pytest.raises(HearthNetError) as exc:  # a trusted peer cannot write into it either
        rag.call("rag.ingest", {"corpus": "personal"}, {"doc_cid": cid}, caller=PEER)
    assert exc.value.code == "unauthorized"
    # no event tells the community about a personal document
    assert [e["data"]["corpus"] for e in rag.bus.events] == ["shared"]


def test_a_new_corpus_is_announced_again(rag):
    cid = rag.add(GUIDE.encode(), "guide.md")
    rag.ingest("a", cid)
    rag.ingest("a", rag.add(b"more text about the radio", "r.txt"))
    rag.ingest("b", cid)
    assert rag.announced == 2  # once per new corpus, not per document
    assert rag.caps()["rag.query"].params["corpora"] == ["a", "b"]


def test_list_corpora(rag):
    rag.ingest("g", rag.add(GUIDE.encode(), "guide.md"), language="en")
    rag.ingest("g", rag.add(("Das Wasser abkochen und dann abkühlen lassen, die Notunterkunft ist in der Schule. "
                             "Der Strom ist weg und die Pumpe läuft nicht.").encode(), "de.txt"))
    (info,) = rag.call("rag.list_corpora", {}, {})["output"]["corpora"]
    assert info["name"] == "g" and info["docs"] == 2 and info["chunks"] >= 5
    assert info["size_bytes"] > 0 and info["embedding_model"] == MODEL and info["language_majority"] == "en"
    de = CorpusStore(rag.root / "embeddings", "g").open()
    assert sorted(r[0] for r in de._read("SELECT language FROM documents")) == ["de", "en"]


def test_hybrid_and_vector_modes(rag):
    rag.ingest("g", rag.add(GUIDE.encode(), "guide.md"))
    hybrid = rag.query("g", "crank radio 87.9 MHz")["output"]
    vector = rag.query("g", "crank radio 87.9 MHz", mode="vector")["output"]
    assert hybrid["chunks"][0]["metadata"]["heading_path"][-1] == "Radio"
    assert vector["chunks"][0]["metadata"]["heading_path"][-1] == "Radio"
    assert hybrid["chunks"][0]["ranks"]["keyword"] == 1 and vector["chunks"][0]["ranks"]["keyword"] is None
    # same chunk, same score: the score is the cosine whatever ranked it
    assert hybrid["chunks"][0]["score"] == vector["chunks"][0]["score"]
    assert rag.query("g", "radio")["meta"]["mode"] == "hybrid"
    vec_default = rag.new_service(retrieval="vector")
    assert rag.query("g", "radio")["meta"]["mode"] == "vector" and vec_default is rag.svc


def test_filters(rag):
    en = rag.add(GUIDE.encode(), "guide.md")
    de = rag.add("# Notfall\n\nDie Notunterkunft ist die Turnhalle der Schule am Lindenweg.".encode(), "de.md")
    rag.ingest("g", en, language="en", metadata={"year": 2019})
    rag.ingest("g", de, language="de", metadata={"year": 2024})
    only_de = rag.query("g", "shelter school gymnasium Lindenweg", filter={"language": "de"})["output"]["chunks"]
    assert only_de and {c["metadata"]["doc_cid"] for c in only_de} == {de}
    only_en = rag.query("g", "Lindenweg", filter={"doc_cid": [en]}, mode="vector")["output"]["chunks"]
    assert {c["metadata"]["doc_cid"] for c in only_en} == {en}
    recent = rag.query("g", "Lindenweg", filter={"min_year": 2020})["output"]["chunks"]
    assert {c["metadata"]["doc_cid"] for c in recent} == {de}
    assert rag.query("g", "Lindenweg", filter={"language": "fr"})["output"]["chunks"] == []


def test_model_mismatch_refuses_queries_with_a_reindex_hint(rag):
    rag.ingest("g", rag.add(GUIDE.encode(), "guide.md"))
    with pytest.raises(HearthNetError) as exc:
        rag.call("rag.query", {"corpus": "g", "embedding_model": "all-MiniLM-L6-v2"}, {"query": "water"})
    assert exc.value.code == "schema_mismatch" and "hearthnet rag reindex --corpus g" in exc.value.message
    rag.svc.corpora.close()
    rag.new_service(embedding_model="another-model")
    with pytest.raises(HearthNetError) as exc:
        rag.query("g", "water")
    assert exc.value.code == "schema_mismatch" and "reindex" in exc.value.message
    with pytest.raises(HearthNetError) as exc:
        rag.ingest("g", rag.add(b"new text", "n.txt"))
    assert exc.value.code == "schema_mismatch"


def test_no_embedding_provider_is_partition_with_what_to_configure(rag):
    cid = rag.add(GUIDE.encode(), "guide.md")
    rag.ingest("g", cid)
    rag.bus.embed_missing = True
    for call in (lambda: rag.query("g", "water"), lambda: rag.ingest("g2", cid)):
        with pytest.raises(HearthNetError) as exc:
            call()
        assert exc.value.code == "partition" and "[embedding]" in exc.value.message


def test_a_ledger_that_does_not_answer_costs_the_event_not_the_ingest(rag):
    cid = rag.add(GUIDE.encode(), "guide.md")
    rag.bus.ledger_down = True
    out = rag.ingest("g", cid)
    assert out["output"]["chunks_indexed"] > 0 and out["meta"]["ingest_event_id"] is None
    rag.bus.ledger_down = False
    again = rag.ingest("g", cid)  # the no-op retries the event
    assert again["meta"]["ingest_event_id"] and len(rag.bus.events) == 1


def test_corpora_survive_a_restart_and_the_hnsw_index_is_derived(tmp_path):
    h = Harness(tmp_path, hnsw_threshold=3)
    try:
        text = "\n\n".join(f"Item {i}: generator {i} needs {i} litres of diesel a day." for i in range(80))
        cid = h.add(text.encode(), "gen.txt")
        h.ingest("g", cid)
        first = h.query("g", "generator 42 diesel")["output"]["chunks"]
        corpus = h.svc.corpora.get("g")
        assert corpus.index.mode == "hnsw" and (corpus.store.dir / "vectors.usearch").is_file()
        other = h.add(b"The generator shed key hangs by the back door of the fire station.", "key.txt")
        h.ingest("g", other, language="de")
        by_doc = h.query("g", "generator 42 diesel", filter={"doc_cid": cid})["output"]["chunks"]
        assert by_doc == first
        only = h.query("g", "generator diesel", filter={"language": "de"}, mode="vector")["output"]["chunks"]
        assert [c["metadata"]["doc_cid"] for c in only] == [other]
        first = h.query("g", "generator 42 diesel")["output"]["chunks"]
        h.svc.corpora.close()
        h.new_service(hnsw_threshold=3)  # loaded from the saved graph
        assert h.query("g", "generator 42 diesel")["output"]["chunks"] == first
        h.svc.corpora.close()
        (tmp_path / "embeddings" / "g" / "vectors.usearch").write_bytes(b"garbage")
        (tmp_path / "embeddings" / "g" / "vectors.json").unlink()
        h.new_service(hnsw_threshold=3)  # stale or broken: rebuilt from SQLite
        assert h.query("g", "generator 42 diesel")["output"]["chunks"] == first
        h.svc.corpora.close()
        h.new_service()  # below the default threshold: exact search, same answer
        exact = h.query("g", "generator 42 diesel")["output"]["chunks"]
        assert [c["metadata"]["chunk_id"] for c in exact] == [c["metadata"]["chunk_id"] for c in first]
        assert np.allclose([c["score"] for c in exact], [c["score"] for c in first])
    finally:
        h.close()


def test_auto_replicate_fetches_and_indexes_what_members_ingest(tmp_path):
    """With rag.auto_replicate on, a member's `rag.document.ingested` (from the log at
    start, then live) makes the worker fetch the blob (file.get on itself) and ingest it
    into the same corpus; its own events, `personal` and documents it has are skipped."""
    import asyncio

    from tests.unit.services.rag.conftest import ME

    h = Harness(tmp_path / "h")
    elsewhere = BlobStoreAt(tmp_path / "elsewhere")
    past = elsewhere.add_bytes(GUIDE.encode(), filename="guide.md").cid
    live = elsewhere.add_bytes(b"The water tower on the hill holds a week of drinking water.", filename="t.txt").cid
    fetched: list[str] = []
    live_events: asyncio.Queue = asyncio.Queue()

    def event(cid: str, corpus: str, author: str = PEER) -> dict:
        return {"event_type": "rag.document.ingested", "author": author,
                "data": {"corpus": corpus, "doc_cid": cid, "title": "T", "language": "en", "chunks": 3}}

    async def log_events(cap, version, body, **kw):
        return {"output": {"events": [event(past, "shared"), event(past, "personal"), event(live, "mine", ME)]}}

    async def stream(cap, version, body, **kw):
        if cap == "file.get":
            cid = body["input"]["cid"]
            fetched.append(cid)
            h.blobs.add_bytes(elsewhere.read_blob_bytes(cid), filename="x.txt")
            yield "progress", {}
            yield "done", {"manifest": {}}
        elif cap == "community.log.subscribe":
            yield "subscribed", {}
            while True:
                yield "event", await live_events.get()

    real_call = h.bus.call

    async def call(cap, version, body, **kw):
        if cap == "community.log.events":
            return await log_events(cap, version, body, **kw)
        return await real_call(cap, version, body, **kw)

    h.bus.call, h.bus.stream = call, stream
    h.svc.corpora.close()
    h.new_service(auto_replicate=True)

    async def settle(pred):
        for _ in range(200):
            if pred():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("replication did not happen")

    try:
        h.loop.run_until_complete(settle(lambda: "shared" in h.svc.corpora))
        live_events.put_nowait(event(live, "shared"))
        live_events.put_nowait(event(past, "shared"))  # already there: not fetched again
        h.loop.run_until_complete(settle(lambda: len(fetched) >= 2 and h.svc._replicate.empty()))
        h.loop.run_until_complete(asyncio.sleep(0.2))
        assert fetched == [past, live]
        assert h.svc.corpora.names() == ["shared"]
        assert h.query("shared", "water tower hill")["output"]["chunks"][0]["metadata"]["doc_cid"] == live
    finally:
        h.close()


class Replicating:
    """A replicating service whose ledger holds `past` events at start and takes live ones
    from `live`; `file.get` copies the blob from `elsewhere`, unless `behave[cid]` says
    how to misbehave: "hang" (never a frame), "huge" (announces a blob over the cap),
    "crash" (a non-contract exception). `left` lists the file.get streams the worker left."""

    def __init__(self, tmp_path, monkeypatch, **consts) -> None:
        import asyncio

        from hearthnet.services.rag import service

        for name, value in consts.items():
            monkeypatch.setattr(service, name, value)
        self.h = Harness(tmp_path / "h")
        self.elsewhere = BlobStoreAt(tmp_path / "elsewhere")
        self.past: list[dict] = []
        self.live: asyncio.Queue = asyncio.Queue()
        self.behave: dict[str, str] = {}
        self.fetched: list[str] = []
        self.left: list[str] = []
        real_call = self.h.bus.call

        async def call(cap, version, body, **kw):
            if cap == "community.log.events":
                inp = body["input"]
                found = [e for e in self.past if e["lamport"] > inp.get("since_lamport", 0)]
                return {"output": {"events": found[:inp.get("limit") or len(found)]}}
            return await real_call(cap, version, body, **kw)

        self.h.bus.call, self.h.bus.stream = call, self.stream

    def start(self) -> "Replicating":
        self.h.svc.corpora.close()
        self.h.new_service(auto_replicate=True)
        return self

    def add(self, text: str, name: str = "doc.txt") -> str:
        return self.elsewhere.add_bytes(text.encode(), filename=name).cid

    async def stream(self, cap, version, body, **kw):
        import asyncio

        from hearthnet.services.rag.service import REPLICATE_MAX_BYTES

        if cap == "community.log.subscribe":
            assert body["input"]["event_types"] == ["rag.document.ingested"]
            yield "subscribed", {}
            while True:
                yield "event", await self.live.get()
        assert cap == "file.get" and kw["timeout"] <= 600
        cid = body["input"]["cid"]
        self.fetched.append(cid)
        finished = False
        try:
            how = self.behave.get(cid)
            if how == "hang":
                await asyncio.Event().wait()
            if how == "huge":
                yield "progress", {"stage": "fetching", "current": 0, "total": REPLICATE_MAX_BYTES + 1}
                await asyncio.Event().wait()
            if how == "crash":
                raise RuntimeError("a bug somewhere below")
            self.h.blobs.add_bytes(self.elsewhere.read_blob_bytes(cid), filename="x.txt")
            yield "progress", {"stage": "fetching", "current": 10, "total": 10}
            finished = True
            yield "done", {"manifest": {"cid": cid, "size_bytes": 10}}
        finally:
            if not finished:
                self.left.append(cid)

    def settle(self, pred) -> None:
        import asyncio

        async def wait() -> None:
            for _ in range(500):
                if pred():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"not settled: fetched {self.fetched}, corpora {self.h.svc.corpora.names()}")

        self.h.loop.run_until_complete(wait())

    def docs(self, corpus: str) -> int:
        return _count(self.h.svc.corpora.get(corpus).store.dir, "SELECT count(*) FROM documents")


def ingested(cid: str, corpus: str, lamport: int = 1, author: str = PEER) -> dict:
    return {"event_id": f"E{lamport}-{cid[7:15]}-{corpus}", "event_type": "rag.document.ingested", "author": author,
            "lamport": lamport, "data": {"corpus": corpus, "doc_cid": cid, "title": "T", "language": "en", "chunks": 1}}


def test_auto_replicate_a_hostile_event_does_not_wedge_the_queue(tmp_path, monkeypatch):
    """A member's event naming a CID whose fetch never ends, a blob over the size cap, one
    whose fetch breaks with a bug, or a `personal` document: each costs at most
    REPLICATE_FETCH_SECONDS (here 0.3 s), the fetch is left (cancelled), nothing of it is
    indexed, and the next good event still replicates. `personal` is never fetched."""
    r = Replicating(tmp_path, monkeypatch, REPLICATE_FETCH_SECONDS=0.3).start()
    try:
        secret, hang, huge, crash = (r.add(f"{w} the spare key is under the flower pot.") for w in "abcd")
        good = r.add("The water tower on the hill holds a week of drinking water.")
        r.behave.update({hang: "hang", huge: "huge", crash: "crash"})
        for cid, corpus in ((secret, "personal"), (hang, "shared"), (huge, "shared"), (crash, "shared"),
                            (good, "shared")):
            r.live.put_nowait(ingested(cid, corpus))
        r.settle(lambda: "shared" in r.h.svc.corpora and r.docs("shared") == 1)
        assert r.fetched == [hang, huge, crash, good] and secret not in r.fetched
        assert r.left == [hang, huge, crash]
        assert r.h.svc.corpora.names() == ["shared"]
        assert r.h.query("shared", "water tower hill")["output"]["chunks"][0]["metadata"]["doc_cid"] == good
        assert [e["data"]["doc_cid"] for e in r.h.bus.events] == [good]  # its own event, for the good one only
        # and the replicator is still alive: the next event goes through too
        more = r.add("Sandbags are stored in the fire station garage.")
        r.live.put_nowait(ingested(more, "shared", 2))
        r.settle(lambda: r.docs("shared") == 2)
    finally:
        r.h.close()


def test_auto_replicate_catch_up_pages_through_the_log_and_waits_for_the_queue(tmp_path, monkeypatch):
    """The catch-up reads the whole log in pages (events sharing a lamport value at a
    page's edge are not skipped) and waits for room in a full queue instead of dropping
    what does not fit; its own events are skipped."""
    from tests.unit.services.rag.conftest import ME

    lamports = [1, 2, 2, 2, 3, 4, 4, 5]
    texts = [f"Notice {i}: the {w} is kept in the {p}." for i, (w, p) in enumerate(
        zip("pump torch radio ladder rope blanket stove kettle".split(),
            "shed garage cellar attic barn school church hall".split()))]
    r = Replicating(tmp_path, monkeypatch, CATCH_UP_PAGE=3, REPLICATE_QUEUE=2)
    try:
        cids = [r.add(t) for t in texts]
        mine = r.add("A document this node ingested itself.")
        r.past[:] = [ingested(c, "shared", n) for c, n in zip(cids, lamports)] + [ingested(mine, "shared", 6, ME)]
        r.start()
        r.settle(lambda: "shared" in r.h.svc.corpora and r.docs("shared") == len(cids))
        assert sorted(r.fetched) == sorted(cids) and mine not in r.fetched
    finally:
        r.h.close()


def BlobStoreAt(root):
    from hearthnet.blobs.store import BlobStore

    return BlobStore(root, min_free_bytes=0)
