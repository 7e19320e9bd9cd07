"""`hearthnet ask` against a fake local API: the answer streamed as it comes, numbered
sources after it, the --json document, nothing relevant (exit 0, no answer), --verify, and
exit codes."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hearthnet.identity import keys
from tests.unit.cli.conftest import invoke, sse, json_result

CID = "blake3:" + "ab" * 32
PEER = keys.generate().node_id_full
TEXT = "# Water\n\nBoil water for one minute before drinking.\n"
START = TEXT.index("Boil")
END = TEXT.index("\n", START)


def source(n: int = 1, cited: bool = True, **kw: Any) -> dict[str, Any]:
    s = {"n": n, "doc_cid": CID, "title": "Flood plan", "page": None, "char_start": START, "char_end": END,
         "chunk_id": "ch_000", "text": TEXT[START:END], "score": 0.71, "corpus": "flood", "node": PEER,
         "cited": cited}
    s.update(kw)
    return s


ANSWER = [("retrieval", {"corpora": ["flood"], "corpus_choice": "all", "retrieved": 2, "passages": 1,
                         "best_score": 0.71, "min_relevance": 0.3, "skipped": []}),
          ("token", {"text": "Boil it ", "logprob": None}), ("token", {"text": "[1].", "logprob": None}),
          ("sources", {"sources": [source()]}),
          ("done", {"model": "tiny", "corpora": ["flood"], "nothing_relevant": False, "tokens_out": 2,
                    "stop_reason": "end", "ms": 40})]


def serve(gateway, frames: list[tuple[str, dict[str, Any]]], gate: threading.Event | None = None,
          extra: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def on_call(request: web.Request, body: dict[str, Any]) -> Any:
        cap = request.headers["X-HearthNet-Capability"]
        seen.append((cap, body["input"]))
        if cap != "rag.ask":
            return await sse(request, (extra or {})[cap](body["input"]))
        if frames and frames[0][0] == "error":
            return web.json_response(frames[0][1], status=400)
        return await sse(request, frames, gate=gate, gate_after=2)

    gateway.on_call = on_call
    return seen


def test_ask_json_is_one_document_with_the_answer_and_sources(runner, gateway) -> None:
    seen = serve(gateway, ANSWER)
    r = invoke(runner, "ask", "How do I make water safe?", "--corpus", "flood", "--model", "tiny", "-k", "3",
               "--json")
    assert r.exit_code == 0, r.output
    assert seen == [("rag.ask", {"question": "How do I make water safe?", "corpus": "flood", "model": "tiny",
                                 "k": 3})]
    assert json_result(r.stdout) == {"answer": "Boil it [1].", "sources": [{**source(), "verified": None}],
                                    "corpus": "flood", "corpora": ["flood"], "corpus_choice": "all",
                                    "model": "tiny", "nothing_relevant": False, "message": None,
                                    "best_score": 0.71}


def test_ask_streams_the_answer_before_the_stream_ends_then_prints_sources(runner, gateway) -> None:
    from hearthnet.cli.commands.ask import ask
    from hearthnet.cli.render import Output
    from hearthnet.cli.state import CliState

    class Spy(Output):
        def write(self, text: str, *, err: bool = False) -> None:
            super().write(text, err=err)
            if "Boil it" in text:
                gate.set()  # the first token was on screen before the rest was sent

    gate = threading.Event()
    serve(gateway, ANSWER, gate=gate)
    import io

    buf, err = io.StringIO(), io.StringIO()
    result = ask(CliState(), "water?", None, None, None, None, verify=False, show=True, out=Spy(buf, err))
    assert buf.getvalue() == "Boil it [1]." and "searched flood (every corpus)" in err.getvalue()
    result.human(Spy(buf, err))
    lines = buf.getvalue().splitlines()
    assert lines[0] == "Boil it [1]." and "Sources:" in lines
    assert any(line.startswith("[1] Flood plan") for line in lines)
    assert any("abababababab" in line and f"[{START}:{END}]" in line and "from ed25519:" in line for line in lines)


def test_nothing_relevant_says_so_and_exits_0(runner, gateway) -> None:
    serve(gateway, [("retrieval", {"corpora": ["flood"], "corpus_choice": "named", "passages": 0,
                                   "best_score": 0.1, "min_relevance": 0.3, "skipped": []}),
                    ("nothing_relevant", {"message": "nothing in flood is relevant enough", "best_score": 0.1}),
                    ("done", {"model": None, "corpora": ["flood"], "nothing_relevant": True, "tokens_out": 0})])
    r = invoke(runner, "ask", "Who won the cup?", "--json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["nothing_relevant"] is True and doc["answer"] == "" and doc["sources"] == []
    assert doc["message"] == "nothing in flood is relevant enough"
    human = invoke(runner, "ask", "Who won the cup?")
    assert "nothing in flood is relevant enough; no model was asked." in human.stdout


def test_verify_checks_each_cited_passage_against_the_document(runner, gateway) -> None:
    pytest.importorskip("hearthnet.services.rag.extract")

    def get(inp: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out = Path(inp["out"]) / "plan.md"
        out.write_text(TEXT)
        return [("done", {"manifest": {"cid": CID, "filename": "plan.md", "mime_type": None}, "out": str(out)})]

    frames = [f if f[0] != "sources" else ("sources", {"sources": [source(), source(2, cited=False),
                                                                     source(3, text="Boil milk")]})
              for f in ANSWER]
    seen = serve(gateway, frames, extra={"file.get": get})
    r = invoke(runner, "ask", "water?", "--verify", "--json")
    assert r.exit_code == 1, r.output  # source 3 does not match its document
    sources = json.loads(r.stdout)["sources"]
    assert [s["verified"] for s in sources] == [True, True, False]  # cited or not, every source is checked
    assert [cap for cap, _ in seen].count("file.get") == 1  # one fetch per document


@pytest.mark.parametrize("args", [["   "], ["q", "--corpus", "Not A Name"], ["q", "-k", "0"], ["q", "-k", "21"]])
def test_bad_usage_exits_2_before_any_call(runner, gateway, args) -> None:
    seen = serve(gateway, ANSWER)
    assert invoke(runner, "ask", *args).exit_code == 2 and seen == []


def test_wire_errors_map_to_exit_codes(runner, gateway) -> None:
    serve(gateway, [("error", {"error": "bad_request", "message": "input.question is too long"})])
    assert invoke(runner, "ask", "q").exit_code == 2
    error_mid_stream = ANSWER[:2] + [("error", {"error": "partition", "message": "no llm.chat provider"})]
    serve(gateway, error_mid_stream)
    r = invoke(runner, "ask", "q")
    assert r.exit_code == 1 and "no llm.chat provider" in r.stderr and "Traceback" not in r.stderr


def test_without_a_node_exits_3(runner) -> None:
    assert invoke(runner, "ask", "q").exit_code == 3
