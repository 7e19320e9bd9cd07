"""`hearthnet rag list|ingest|reindex|query|verify` against a fake local API: what each
command sends, its --json keys, exit codes (a bad corpus name or a missing path: 2 before
any call; a failing file: reported, skipped, exit 1) and the human output."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hearthnet.identity import keys
from tests.unit.cli.conftest import capability, invoke, sse, json_result

CID = "blake3:" + "ab" * 32
CID2 = "blake3:" + "cd" * 32
PEER = keys.generate().node_id_full
STATUS = {"not_found": 404, "unauthorized": 401, "capacity_exceeded": 429, "bad_request": 400, "partition": 503}


def serve(gateway, answers: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Answer each capability: frames (a stream), an error, a unary output, or a function
    of the input returning one of those."""
    seen: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    async def on_call(request: web.Request, body: dict[str, Any]) -> Any:
        cap = request.headers["X-HearthNet-Capability"]
        seen.append((cap, body.get("params") or {}, body["input"]))
        answer = answers[cap]
        if callable(answer):
            answer = answer(body["input"])
        if isinstance(answer, dict) and "error" in answer:
            return web.json_response(answer, status=STATUS[answer["error"]])
        if isinstance(answer, list):
            assert request.headers["Accept"] == "text/event-stream"
            return await sse(request, answer)
        return web.json_response({"output": answer, "meta": {"ms": 4, "embedding_model": "all-MiniLM-L6-v2"}})

    gateway.on_call = on_call
    return seen


def added(path: str) -> list[tuple[str, dict[str, Any]]]:
    cid = CID2 if path.endswith("bad.pdf") else CID
    return [("progress", {"current": 1, "total": 1, "stage": "hashing"}),
            ("done", {"manifest": {"cid": cid, "filename": Path(path).name, "size_bytes": 10}, "pinned": False,
                      "added": True})]


def test_list_shows_this_nodes_corpora_and_the_peers(runner, gateway) -> None:
    gateway.caps = [capability("rag.query", params={"corpora": ["flood"]}),
                    capability("rag.query", local=False, node_id=PEER, params={"corpora": ["water", "flood"]})]
    serve(gateway, {"rag.list_corpora": {"corpora": [
        {"name": "flood", "docs": 3, "chunks": 120, "size_bytes": 2_000_000, "language_majority": "de",
         "embedding_model": "all-MiniLM-L6-v2", "extra": 1}]}})
    r = invoke(runner, "rag", "list", "--json")
    assert r.exit_code == 0, r.output
    assert json_result(r.stdout) == {
        "corpora": [{"name": "flood", "docs": 3, "chunks": 120, "size_bytes": 2_000_000, "language_majority": "de",
                     "embedding_model": "all-MiniLM-L6-v2"}],
        "remote": [{"name": "flood", "node_id": PEER}, {"name": "water", "node_id": PEER}]}
    human = invoke(runner, "rag", "list")
    for text in ("flood", "120", "2.0 MB", "On peers", "water"):
        assert text in human.stdout, text


def test_ingest_walks_directories_adds_then_indexes_and_skips_a_failing_file(runner, gateway, tmp_path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "plan.md").write_text("# Plan\n")
    (docs / "sub" / "bad.pdf").write_bytes(b"%PDF-broken")
    (docs / "photo.jpg").write_bytes(b"\xff\xd8\xff")  # not searched for in a directory
    (tmp_path / "notes.txt").write_text("water")

    def ingested(inp: dict[str, Any]) -> Any:
        if inp["doc_cid"] == CID2:
            return {"error": "bad_request", "message": "the PDF is corrupt"}
        return [("progress", {"current": 3, "total": 6, "stage": "embedding"}),
                ("done", {"output": {"doc_cid": CID, "chunks_indexed": 6, "tokens_indexed": 900, "pages": None,
                                     "already_indexed": False},
                          "meta": {"corpus": "flood", "ms": 12, "ingest_event_id": "e1"}})]

    seen = serve(gateway, {"file.add": lambda inp: added(inp["path"]), "rag.ingest": ingested})
    r = invoke(runner, "rag", "ingest", str(docs), str(tmp_path / "notes.txt"), "--corpus", "flood",
               "--language", "de", "--json")
    assert r.exit_code == 1, r.output  # one file failed
    doc = json.loads(r.stdout)
    assert [f["path"] for f in doc["files"]] == [str(docs / "plan.md"), str(docs / "sub" / "bad.pdf"),
                                                 str(tmp_path / "notes.txt")]
    assert [f["status"] for f in doc["files"]] == ["indexed", "failed", "indexed"]
    assert doc["files"][1]["error"] == {"code": "bad_request", "message": "the PDF is corrupt"}
    assert doc["files"][1]["cid"] == CID2  # stored, but not indexed
    assert doc["files"][0] == {"path": str(docs / "plan.md"), "cid": CID, "status": "indexed", "chunks_indexed": 6,
                               "pages": None, "error": None}
    assert (doc["corpus"], doc["indexed"], doc["already_indexed"], doc["failed"]) == ("flood", 2, 0, 1)
    ingests = [(p, i) for cap, p, i in seen if cap == "rag.ingest"]
    assert ingests[0] == ({"corpus": "flood"}, {"doc_cid": CID, "language": "de"})
    adds = [i for cap, _, i in seen if cap == "file.add"]
    assert adds[0] == {"path": str(docs / "plan.md")}


def test_ingest_again_says_already_indexed_and_exits_0(runner, gateway, tmp_path) -> None:
    (tmp_path / "plan.md").write_text("# Plan\n")
    serve(gateway, {"file.add": lambda inp: added(inp["path"]),
                    "rag.ingest": [("done", {"output": {"doc_cid": CID, "chunks_indexed": 6, "already_indexed": True},
                                             "meta": {}})]})
    r = invoke(runner, "rag", "ingest", str(tmp_path / "plan.md"), "--corpus", "flood")
    assert r.exit_code == 0, r.output
    assert "already indexed" in r.stdout and "1 already indexed, 0 failed" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--corpus", "Flood Plan"], "is not a corpus name"),
    (["--corpus", "x" * 65], "is not a corpus name"),
])
def test_ingest_refuses_a_bad_corpus_name_before_any_work(runner, gateway, tmp_path, args, message) -> None:
    (tmp_path / "plan.md").write_text("x")
    seen = serve(gateway, {})
    r = invoke(runner, "rag", "ingest", str(tmp_path / "plan.md"), *args)
    assert r.exit_code == 2 and message in r.stderr and seen == []


def test_ingest_of_a_missing_path_exits_2_naming_it(runner, gateway, tmp_path) -> None:
    (tmp_path / "plan.md").write_text("x")
    seen = serve(gateway, {})
    r = invoke(runner, "rag", "ingest", str(tmp_path / "plan.md"), str(tmp_path / "gone"), "--corpus", "flood",
               "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "usage"
    assert "gone does not exist" in json.loads(r.stdout)["error"]["message"] and seen == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(runner, "rag", "ingest", str(empty), "--corpus", "flood").exit_code == 2


def test_ingest_without_a_node_exits_3(runner, tmp_path) -> None:
    (tmp_path / "plan.md").write_text("x")
    assert invoke(runner, "rag", "ingest", str(tmp_path / "plan.md"), "--corpus", "flood").exit_code == 3


def test_query_prints_ranked_chunks(runner, gateway) -> None:
    chunks = [{"rank": 1, "score": 0.71, "text": "Boil water for one minute.",
               "metadata": {"doc_cid": CID, "doc_title": "Flood plan", "page": 4, "chunk_id": "ch_001"}}]
    seen = serve(gateway, {"rag.query": {"chunks": chunks}})
    r = invoke(runner, "rag", "query", "water safety", "--corpus", "flood", "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    assert json_result(r.stdout) == {"corpus": "flood", "query": "water safety", "chunks": chunks,
                                    "embedding_model": "all-MiniLM-L6-v2", "ms": 4}
    assert seen[-1] == ("rag.query", {"corpus": "flood"}, {"query": "water safety", "k": 3, "include_text": True})
    human = invoke(runner, "rag", "query", "water safety", "--corpus", "flood")
    for text in ("0.710", "Flood plan", "4", "Boil water"):
        assert text in human.stdout
    assert invoke(runner, "rag", "query", "x", "--corpus", "flood", "-k", "21").exit_code == 2
    serve(gateway, {"rag.query": {"error": "not_found", "message": "no corpus nope"}})
    assert invoke(runner, "rag", "query", "x", "--corpus", "nope").exit_code == 1


def test_reindex_follows_progress_and_reports(runner, gateway) -> None:
    seen = serve(gateway, {"rag.reindex": [
        ("progress", {"current": 50, "total": 100, "stage": "embedding"}),
        ("done", {"output": {"corpus": "flood", "embedding_model": "bge-small-en-v1.5", "dim": 384, "docs": 3,
                             "chunks": 100, "from_stored_chunks": 1},
                  "meta": {"ms": 2500, "previous_model": "all-MiniLM-L6-v2", "note": "set [rag] embedding_model"}})]})
    r = invoke(runner, "rag", "reindex", "--corpus", "flood", "--embedding-model", "bge-small-en-v1.5", "--json")
    assert r.exit_code == 0, r.output
    assert json_result(r.stdout) == {"corpus": "flood", "embedding_model": "bge-small-en-v1.5", "dim": 384,
                                    "previous_model": "all-MiniLM-L6-v2", "docs": 3, "chunks": 100,
                                    "from_stored_chunks": 1, "ms": 2500, "note": "set [rag] embedding_model"}
    assert seen == [("rag.reindex", {"corpus": "flood"}, {"embedding_model": "bge-small-en-v1.5"})]
    human = invoke(runner, "rag", "reindex", "--corpus", "flood").stdout
    for text in ("100 chunks of 3 documents", "1 document no longer in the blob store", "note: set [rag]"):
        assert text in human
    assert invoke(runner, "rag", "reindex", "--corpus", "BAD").exit_code == 2


def test_verify_fetches_the_document_and_compares_the_range(runner, gateway, tmp_path) -> None:
    pytest.importorskip("hearthnet.services.rag.extract")
    text = "# Water\n\nBoil water for one minute before drinking.\n"
    start = text.index("Boil")
    end = text.index("\n", start)

    def get(inp: dict[str, Any]) -> Any:
        out = Path(inp["out"]) / "plan.md"
        out.write_text(text)
        return [("done", {"manifest": {"cid": CID, "filename": "plan.md", "mime_type": None, "size_bytes": 10},
                          "out": str(out), "from": {}, "resumed_chunks": 0, "dropped": [], "failures": {},
                          "ms": 1})]

    serve(gateway, {"file.get": get})
    r = invoke(runner, "rag", "verify", CID, "--start", str(start), "--end", str(end), "--text",
               text[start:end], "--json")
    assert r.exit_code == 0, r.output
    assert json_result(r.stdout) == {"cid": CID, "start": start, "end": end, "page": None, "verified": True,
                                    "found": text[start:end], "reason": None}
    wrong = invoke(runner, "rag", "verify", CID, "--start", str(start), "--end", str(end), "--text", "Boil milk")
    assert wrong.exit_code == 1 and "NOT verified" in wrong.stdout
    beyond = invoke(runner, "rag", "verify", CID, "--start", "0", "--end", "9999", "--json")
    assert beyond.exit_code == 1 and "outside" in json.loads(beyond.stdout)["reason"]
