"""Ask with sources on a real node: the embedding worker (MiniLM), the rag worker and an LLM
worker on the tiny random-weight GGUF. A Markdown document is ingested through the CLI,
`hearthnet ask --json` streams an answer (the tiny model's words mean nothing: structure is
asserted, not content) with sources whose ranges verify against the blob's bytes, and a
question about something absent answers "nothing relevant" without calling the LLM."""
from __future__ import annotations

import json
from pathlib import Path
import pytest

from hearthnet.testing.nodes import Node
from hearthnet.testing.waiting import wait_for

pytestmark = pytest.mark.integration

WORKERS = ("broker", "gateway", "ledger", "file", "llm", "embedding", "rag")

# The --json documents of the new commands (README "Ask with sources"): changing a key is an
# interface change.
ASK_KEYS = {"answer", "sources", "corpus", "corpora", "corpus_choice", "model", "nothing_relevant", "message",
            "best_score"}
SOURCE_KEYS = {"n", "doc_cid", "title", "page", "char_start", "char_end", "chunk_id", "text", "score", "corpus",
               "node", "cited", "verified"}
INGEST_KEYS = {"corpus", "files", "indexed", "already_indexed", "failed"}
INGEST_FILE_KEYS = {"path", "cid", "status", "chunks_indexed", "pages", "error"}
LIST_KEYS = {"corpora", "remote"}
CORPUS_KEYS = {"name", "docs", "chunks", "size_bytes", "language_majority", "embedding_model"}
QUERY_KEYS = {"corpus", "query", "chunks", "embedding_model", "ms"}
VERIFY_KEYS = {"cid", "start", "end", "page", "verified", "found", "reason"}

DOC = """# Flood plan for Mill Street

## Drinking water

When the tap water is contaminated after a flood, boil drinking water at a rolling boil for
at least one minute before you drink it or cook with it. Let it cool in a covered pot.
If you cannot boil water, use four drops of unscented household bleach per litre and wait
thirty minutes.

## Shelter

The emergency shelter is the gym of the primary school on Mill Road. It opens when the
river gauge passes 7.5 metres. Bring blankets, medication and a torch.

## Sandbags

Sandbags are handed out at the fire station on Church Lane. Fill them half full and lay
them like bricks, with the folded end facing the water.
"""


def llm_chat_calls(node: Node) -> int:
    return len(node.api("/api/v1/traces?n=1000&capability=llm.chat")["traces"])


@pytest.fixture
def node(make_node, tiny_gguf) -> Node:
    n = make_node("ask")
    n.init()
    # The tiny model tokenizes text nearly byte by byte: give it room for the passages.
    n.add_config(f'[[llm.backends]]\nname = "llama_cpp"\nmodel = "tiny"\nmodel_path = "{tiny_gguf}"\n'
                 'ctx = 16384\n')
    n.env.update({"HEARTHNET_RAG_RELEVANCE_THRESHOLD": "0.3", "HEARTHNET_EMBEDDING_MODEL": "all-MiniLM-L6-v2"})
    n.start(wait_workers=WORKERS)
    wait_for(lambda: {"rag.ask", "rag.ingest", "llm.chat", "embed.text"}
             <= {c["name"] for c in n.api("/api/v1/capabilities")["capabilities"]}, 60,
             message="rag.ask, rag.ingest, llm.chat and embed.text offered")
    return n


def test_ask_streams_an_answer_with_sources_that_verify_and_says_when_nothing_is_relevant(
        node: Node, tmp_path: Path) -> None:
    doc = tmp_path / "flood-plan.md"
    doc.write_text(DOC)
    first = node.cli_json("rag", "ingest", str(doc), "--corpus", "mill-street", timeout=300)
    assert first["files"][0]["status"] == "indexed" and first["indexed"] == 1, first
    cid = first["files"][0]["cid"]
    assert set(first) == INGEST_KEYS and set(first["files"][0]) == INGEST_FILE_KEYS
    listed = node.cli_json("rag", "list")
    assert set(listed) == LIST_KEYS and [set(c) for c in listed["corpora"]] == [CORPUS_KEYS]
    assert listed["corpora"][0]["name"] == "mill-street" and listed["corpora"][0]["docs"] == 1
    ranked = node.cli_json("rag", "query", "boil drinking water", "--corpus", "mill-street", "-k", "3")
    assert set(ranked) == QUERY_KEYS and ranked["chunks"][0]["metadata"]["doc_cid"] == cid
    again = node.cli_json("rag", "ingest", str(doc), "--corpus", "mill-street")
    assert again["files"][0]["status"] == "already_indexed"  # resumable: done work is skipped
    node_id = node.api("/api/v1/status")["node"]["node_id"]

    before = llm_chat_calls(node)
    answer = node.cli_json("ask", "How long should drinking water be boiled?", "--corpus", "mill-street",
                           "-k", "2", "--max-tokens", "12", timeout=300)
    assert set(answer) == ASK_KEYS and all(set(s) == SOURCE_KEYS for s in answer["sources"])
    assert answer["nothing_relevant"] is False and answer["answer"].strip() != ""
    assert answer["corpus"] == "mill-street" and answer["corpus_choice"] == "named" and answer["model"] == "tiny"
    assert llm_chat_calls(node) == before + 1
    sources = answer["sources"]
    assert 1 <= len(sources) <= 2 and [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    assert "boil" in sources[0]["text"].lower()  # the water passage ranks first
    for s in sources:
        assert s["doc_cid"] == cid and s["node"] == node_id and s["corpus"] == "mill-street"
        assert s["page"] is None and isinstance(s["char_start"], int) and s["char_end"] > s["char_start"]
        assert s["score"] >= 0.3

    # Every passage is the document's text at its range: fetched by CID, extracted again.
    out = tmp_path / "fetched"
    out.mkdir()
    got = node.cli_json("file", "get", cid, "--out", str(out))
    blob = Path(got["out"]).read_bytes()
    assert blob == doc.read_bytes()
    from hearthnet.services.rag.ask import verify_citation

    for s in sources:
        verdict = verify_citation(s["text"], blob, s["char_start"], s["char_end"], page=s["page"],
                                  filename=got["filename"])
        assert verdict.ok, (s, verdict)
    s = sources[0]
    checked = node.cli_json("rag", "verify", cid, "--start", str(s["char_start"]), "--end", str(s["char_end"]),
                            "--text", s["text"])
    assert set(checked) == VERIFY_KEYS and checked["verified"] is True and checked["found"] == s["text"]
    verified = node.cli_json("ask", "How long should drinking water be boiled?", "--corpus", "mill-street",
                             "-k", "2", "--max-tokens", "4", "--verify", timeout=300)
    assert verified["sources"] and all(s["verified"] is True for s in verified["sources"])
    wrong = node.cli("rag", "verify", cid, "--start", str(s["char_start"]), "--end", str(s["char_end"]),
                     "--text", s["text"] + "!")
    assert wrong.returncode == 1

    # For a person: the answer streamed, then the numbered sources.
    human = node.cli("ask", "Where is the emergency shelter?", "-k", "1", "--max-tokens", "8", timeout=300)
    assert human.returncode == 0, human.stderr
    assert "Sources:" in human.stdout and "[1] " in human.stdout and "searched mill-street" in human.stderr

    # Nothing relevant: said so, and the LLM is never called.
    before = llm_chat_calls(node)
    absent = node.cli_json("ask", "Who composed the Brandenburg concertos?", "--corpus", "mill-street")
    assert absent["nothing_relevant"] is True and absent["answer"] == "" and absent["sources"] == []
    assert "mill-street" in absent["message"]
    assert llm_chat_calls(node) == before

    # A caller that goes away mid-answer cancels the generation (its llm.chat call).
    leave_after_first_token(node, {"question": "How long should drinking water be boiled?", "corpus": "mill-street",
                                   "max_tokens": 4096})
    wait_for(lambda: [t["result"] for t in node.api("/api/v1/traces?n=1&capability=llm.chat")["traces"]]
             == ["cancelled"], 30, 0.1, message="llm.chat cancelled")
    wait_for(lambda: all(w["in_flight"] == 0 for w in node.api("/api/v1/workers")["workers"]
                         if w["program"] in ("llm", "rag")), 30, 0.1,
             message=lambda: f"llm and rag idle; workers busy: {busy(node)}; last traces: "
                             f"{node.api('/api/v1/traces?n=6')['traces']}")


def busy(node: Node) -> list[tuple[str, int]]:
    return [(w["program"], w["in_flight"]) for w in node.api("/api/v1/workers")["workers"] if w["in_flight"]]


def leave_after_first_token(node: Node, inp: dict) -> None:
    """A rag.ask stream through the local API, closed as soon as one token arrived."""
    from hearthnet.unixhttp import UnixHTTPConnection

    conn = UnixHTTPConnection(str(node.api_socket), timeout=120)
    try:
        conn.request("POST", "/bus/v1/call", body=json.dumps({"params": {}, "input": inp}),
                     headers={"Authorization": f"Bearer {node.token()}", "Content-Type": "application/json",
                              "Accept": "text/event-stream", "X-HearthNet-Capability": "rag.ask"})
        resp = conn.getresponse()
        assert resp.status == 200
        while True:
            line = resp.fp.readline()
            assert line, "the stream ended before a token"
            if line.startswith(b"event: token"):
                return
    finally:
        conn.close()


def test_ask_cli_bad_input_exits_2_and_an_unknown_corpus_1(node: Node) -> None:
    bad = node.cli("ask", "water?", "--corpus", "Not A Name", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["code"] == "usage"
    unknown = node.cli("ask", "water?", "--corpus", "nowhere")
    assert unknown.returncode == 1 and "(not_found)" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = node.cli("rag", "ingest", "/nonexistent/plan.md", "--corpus", "mill-street")
    assert missing.returncode == 2 and "/nonexistent/plan.md does not exist" in missing.stderr


def test_ask_on_one_node_answers_from_a_peers_corpus_and_names_that_peer(make_node, tiny_gguf, tmp_path: Path) -> None:
    """Alice holds the corpus (and embeds); Bob has the LLM and no corpus. Bob's `ask`
    retrieves from Alice's rag.query, names Alice as the node of every source, and Bob can
    verify each passage from the document fetched by its CID from Alice."""
    from hearthnet.testing.nodes import join_by_invite

    a, b = make_node("alice"), make_node("bob")
    for n in (a, b):
        n.env.update({"HEARTHNET_EMBEDDING_MODEL": "all-MiniLM-L6-v2"})
    a.init()
    a.start(wait_workers=("broker", "gateway", "ledger", "governance", "discovery", "file", "embedding", "rag"))
    alice = a.api("/api/v1/status")["node"]["node_id"]
    join_by_invite(a, b)
    b.add_config(f'[[llm.backends]]\nname = "llama_cpp"\nmodel = "tiny"\nmodel_path = "{tiny_gguf}"\nctx = 16384\n')
    b.start(wait_workers=("broker", "gateway", "ledger", "discovery", "file", "llm", "rag"))
    doc = tmp_path / "flood-plan.md"
    doc.write_text(DOC)
    cid = a.cli_json("rag", "ingest", str(doc), "--corpus", "mill-street", timeout=300)["files"][0]["cid"]
    r = b.cli("peer", "add", f"127.0.0.1:{a.port}")
    assert r.returncode == 0, r.stderr + r.stdout
    wait_for(lambda: any(c["name"] == "rag.query" and not c["local"] and c["node_id"] == alice
                         and "mill-street" in (c["params"].get("corpora") or [])
                         for c in b.api("/api/v1/capabilities")["capabilities"]),
             60, 0.3, message="bob to route rag.query for mill-street to alice")
    assert b.cli_json("rag", "list")["remote"] == [{"name": "mill-street", "node_id": alice}]

    answer = b.cli_json("ask", "How long should drinking water be boiled?", "--corpus", "mill-street", "-k", "2",
                        "--max-tokens", "8", "--verify", timeout=300)
    assert answer["nothing_relevant"] is False and answer["answer"].strip() != ""
    assert answer["sources"] and all(s["node"] == alice and s["doc_cid"] == cid for s in answer["sources"])
    assert all(s["verified"] is True for s in answer["sources"])  # fetched from alice by CID, checked by range
