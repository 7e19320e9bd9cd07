"""`hearthnet rag reindex` on a real node: the rag worker killed with SIGKILL in the middle
of a reindex leaves the corpus as it was (the half-built successor is removed at restart)
and a second reindex finishes; then the node switches its embedding backend to an
OpenAI-compatible server (a real llama_cpp.server on the tiny GGUF), its queries are
refused with the reindex hint until `rag reindex` rebuilds the corpus with that model,
after which the corpus answers with exact citations."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from hearthnet.testing.nodes import Node
from hearthnet.testing.pdfs import make_pdf
from hearthnet.testing.waiting import wait_for
from hearthnet.testing.knowledge import GUIDE, WORKERS, add_file, call, consistency, corpus_db, ok, rag_pid

pytestmark = pytest.mark.integration
pytest.importorskip("hearthnet.services.embedding.minilm")

CORPUS = "flood-plans"
MINILM = "all-MiniLM-L6-v2"


def corpus_info(node: Node) -> dict:
    (info,) = ok(node, "rag.list_corpora", {}, {})["output"]["corpora"]
    return info


def reindex_cli(node: Node, *args: str) -> subprocess.Popen:
    return subprocess.Popen([node.python, "-m", "hearthnet", "rag", "reindex", "--corpus", CORPUS, *args, "--json"],
                            env=node.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cited_exactly(node: Node, guide_cid: str) -> dict:
    """A query restricted to the guide: its hits are the guide's own text, range for range."""
    out = ok(node, "rag.query", {"corpus": CORPUS}, {"query": "where is the shelter?", "filter": {"doc_cid": guide_cid}})
    assert out["output"]["chunks"], out
    for hit in out["output"]["chunks"]:
        md = hit["metadata"]
        assert GUIDE[md["char_start"]:md["char_end"]] == hit["text"]
    return out


def test_reindex_survives_a_kill_and_follows_a_model_switch(make_node, tmp_path: Path) -> None:
    a = make_node("alice")
    a.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    a.init()
    a.start(wait_workers=WORKERS)
    (tmp_path / "guide.md").write_text(GUIDE)
    guide = add_file(a, tmp_path / "guide.md")
    ok(a, "rag.ingest", {"corpus": CORPUS}, {"doc_cid": guide, "language": "en"})
    pages = [[f"Section {p}.{i}: keep sandbags, pumps, torches and spare batteries ready; check the cellar "
              f"drain number {p * 100 + i} before the water rises." for i in range(30)] for p in range(40)]
    (tmp_path / "leaflets.pdf").write_bytes(make_pdf(pages, title="Leaflets"))
    ok(a, "rag.ingest", {"corpus": CORPUS}, {"doc_cid": add_file(a, tmp_path / "leaflets.pdf")}, timeout=600)
    db = corpus_db(a, CORPUS)
    before, info = consistency(db), corpus_info(a)
    assert info["docs"] == 2 and info["embedding_model"] == MINILM

    # SIGKILL of the rag worker while the successor is being built
    staging = db.parent.parent / f".reindex-{CORPUS}"
    victim = rag_pid(a)
    proc = reindex_cli(a)
    try:
        wait_for(lambda: (staging / "corpus.sqlite").exists() or proc.poll() is not None, timeout=300, interval=0.02,
                 message="the reindex to start building")
        assert proc.poll() is None, f"the reindex ended before it could be killed: {proc.communicate()}"
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "Traceback" not in stdout + stderr, (stdout, stderr)
    wait_for(lambda: rag_pid(a) not in (None, victim), timeout=60, message="supervisord to restart the rag worker")
    wait_for(lambda: not staging.exists(), timeout=30, message="the half-built successor to be removed")
    assert consistency(db) == before and corpus_info(a)["embedding_model"] == MINILM
    cited_exactly(a, guide)

    # the second reindex finishes: same documents and chunks, nothing left beside the corpus
    done = a.cli_json("rag", "reindex", "--corpus", CORPUS, timeout=600)
    assert (done["corpus"], done["embedding_model"], done["docs"], done["chunks"]) == (CORPUS, MINILM, 2, before["chunks"])
    assert done["from_stored_chunks"] == 0 and done["note"] is None
    assert consistency(db) == before
    assert sorted(p.name for p in db.parent.parent.iterdir()) == [CORPUS]
    cited_exactly(a, guide)

    # the node moves to another embedding model, served by an OpenAI-compatible server
    from hearthnet.testing.llama_server import launch_llama_server
    from hearthnet.testing.tiny_gguf import write_tiny_llama_gguf

    pytest.importorskip("llama_cpp")
    model = write_tiny_llama_gguf(tmp_path / "tiny-embed.gguf", pooling_type=1)  # mean pooling: a vector per text
    with launch_llama_server(model, tmp_path / "server.log", "--embedding", "true") as server:
        a.stop()
        a.env.update({"HEARTHNET_EMBEDDING_BACKEND": "openai", "HEARTHNET_EMBEDDING_URL": server.url + "/v1",
                      "HEARTHNET_EMBEDDING_MODEL": "tiny"})
        a.start(wait_workers=WORKERS)
        status, body = call(a, "rag.query", {"corpus": CORPUS}, {"query": "where is the shelter?"})
        assert body.get("error") == "schema_mismatch" and f"hearthnet rag reindex --corpus {CORPUS}" in body["message"], body
        r = a.cli("rag", "query", "where is the shelter?", "--corpus", CORPUS)
        assert r.returncode != 0 and "rag reindex" in r.stderr + r.stdout and "Traceback" not in r.stderr

        done = a.cli_json("rag", "reindex", "--corpus", CORPUS, timeout=600)
        assert (done["embedding_model"], done["previous_model"], done["dim"], done["docs"]) == ("tiny", MINILM, 64, 2)
        info = corpus_info(a)
        assert (info["embedding_model"], info["dim"], info["docs"]) == ("tiny", 64, 2)
        counts = consistency(db)  # its no_vector counts 384-dim vectors: all are 64-dim now
        assert counts["docs"] == 2 and counts["chunks"] == counts["fts"] == counts["declared"] == counts["no_vector"]
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("SELECT count(*) FROM chunks WHERE length(vector) != 64 * 4").fetchone()[0] == 0
            assert conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()[0] == "tiny"
        out = cited_exactly(a, guide)
        assert out["meta"]["embedding_model"] == "tiny"
        listed = json.loads(a.cli("rag", "list", "--json").stdout)
        assert any(c["name"] == CORPUS and c["embedding_model"] == "tiny" for c in listed["corpora"]), listed
        a.stop()
