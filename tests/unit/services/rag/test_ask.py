"""rag.ask with a fake bus: which corpora, the relevance threshold (no LLM call under it),
the numbered prompt, the sources frame, cancellation reaching llm.chat, and bad input."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.services.rag.ask import Asker, build_messages, cited_numbers, select_passages, Passage

US = "ed25519:us"
PEER = "ed25519:peer"
CID = "blake3:" + "ab" * 32


def chunk(score: float, text: str, *, cid: str = CID, page: int | None = 2, start: int = 0, title: str = "Flood plan"):
    return {"rank": 1, "score": score, "text": text,
            "metadata": {"doc_cid": cid, "doc_title": title, "page": page, "chunk_id": f"ch_{start:03d}",
                         "chunk_index": 0, "char_start": start, "char_end": start + len(text)}}


class FakeBus:
    """rag.query answers per corpus (chunks, serving node) or an error; llm.chat streams
    `tokens`, optionally waiting on `gate` before the second one."""

    def __init__(self, corpora: dict[str, Any], tokens: list[str] | None = None,
                 listed: list[str] | None = None) -> None:
        self.corpora = corpora
        self.tokens = tokens if tokens is not None else ["Boil ", "water [1]."]
        self.listed = listed or []
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.gate: asyncio.Event | None = None
        self.chat_closed = False
        self.chat_error: dict[str, Any] | None = None

    async def call_from(self, cap, version, body, **kw):
        self.calls.append((cap, body, kw))
        answer = self.corpora[body["params"]["corpus"]]
        if isinstance(answer, HearthNetError):
            raise answer
        chunks, node = answer
        return {"output": {"chunks": chunks}, "meta": {}}, node

    async def call(self, cap, version, body, **kw):
        self.calls.append((cap, body, kw))
        assert cap == "rag.list_corpora"
        return {"output": {"corpora": [{"name": n, "docs": 1} for n in self.listed]}, "meta": {}}

    async def stream(self, cap, version, body, **kw):
        self.calls.append((cap, body, kw))
        try:
            for i, t in enumerate(self.tokens):
                if i == 1 and self.gate is not None:
                    await self.gate.wait()
                yield "token", {"text": t, "logprob": None}
            if self.chat_error:
                yield "error", self.chat_error
                return
            yield "done", {"tokens_out": len(self.tokens), "stop_reason": "end", "ms": 5, "model": "tiny"}
        finally:
            self.chat_closed = True

    def caps(self) -> list[str]:
        return [c for c, _, _ in self.calls]


def ask(inp: dict[str, Any], *, caller: str = US, stream: bool = True) -> Request:
    return Request(capability="rag.ask", version="1.0", body={"params": {}, "input": inp}, stream=stream,
                   caller=caller)


async def frames_of(asker: Asker, req: Request) -> list[tuple[str, dict[str, Any]]]:
    gen = await asker.handle(req)
    return [f async for f in gen]


def run(coro):
    return asyncio.run(coro)


WATER = chunk(0.71, "Boil water for one minute before drinking.", start=100)
SHELTER = chunk(0.55, "The shelter is the school gym on Mill Road.", cid="blake3:" + "cd" * 32, page=None,
                title="Shelters")
WEAK = chunk(0.12, "Parking rules for the market square.", start=900)


def test_sources_frame_carries_each_passage_with_range_node_and_whether_it_was_cited() -> None:
    bus = FakeBus({"flood": ([WATER, WEAK], US), "town": ([SHELTER], PEER)}, listed=["flood", "town"])
    frames = run(frames_of(Asker(bus, US), ask({"question": "How do I make water safe?"})))
    events = [e for e, _ in frames]
    assert events == ["retrieval", "token", "token", "sources", "done"]
    retrieval = frames[0][1]
    assert retrieval["corpora"] == ["flood", "town"] and retrieval["corpus_choice"] == "all"
    assert retrieval["passages"] == 2 and retrieval["best_score"] == 0.71
    sources = frames[3][1]["sources"]
    assert sources == [
        {"n": 1, "doc_cid": CID, "title": "Flood plan", "page": 2, "char_start": 100, "char_end": 142,
         "chunk_id": "ch_100", "text": WATER["text"], "score": 0.71, "corpus": "flood", "node": US, "cited": True},
        {"n": 2, "doc_cid": "blake3:" + "cd" * 32, "title": "Shelters", "page": None, "char_start": 0,
         "char_end": len(SHELTER["text"]), "chunk_id": "ch_000", "text": SHELTER["text"], "score": 0.55,
         "corpus": "town", "node": PEER, "cited": False}]
    assert frames[-1][1] == {"model": "tiny", "corpora": ["flood", "town"], "nothing_relevant": False,
                             "tokens_out": 2, "stop_reason": "end", "ms": frames[-1][1]["ms"]}


def test_prompt_numbers_the_passages_in_rank_order_and_asks_for_citations() -> None:
    bus = FakeBus({"flood": ([SHELTER, WATER], US)})
    run(frames_of(Asker(bus, US), ask({"question": "Where do we go?", "corpus": "flood", "k": 3,
                                       "model": "qwen", "max_tokens": 64, "seed": 7})))
    cap, body, kw = bus.calls[-1]
    assert cap == "llm.chat" and body["params"] == {"model": "qwen"}
    system, user = body["input"]["messages"]
    assert system["role"] == "system" and "[n]" in system["content"]
    content = user["content"]
    assert content.index("[1] Flood plan, page 2\nBoil water") < content.index("[2] Shelters\nThe shelter")
    assert content.endswith("Question: Where do we go?")
    assert body["input"]["max_tokens"] == 64 and body["input"]["seed"] == 7 and body["input"]["stream"] is True
    query = bus.calls[0]
    assert query[0] == "rag.query" and query[1] == {"params": {"corpus": "flood"},
                                                    "input": {"query": "Where do we go?", "k": 3, "include_text": True}}


def test_under_the_threshold_it_says_so_and_never_calls_the_llm() -> None:
    bus = FakeBus({"flood": ([WEAK], US)})
    frames = run(frames_of(Asker(bus, US, min_relevance=0.3), ask({"question": "Who won the cup?", "corpus": "flood"})))
    assert [e for e, _ in frames] == ["retrieval", "nothing_relevant", "done"]
    nothing = frames[1][1]
    assert nothing["best_score"] == 0.12 and nothing["min_relevance"] == 0.3 and "flood" in nothing["message"]
    assert frames[-1][1]["nothing_relevant"] is True and frames[-1][1]["tokens_out"] == 0
    assert "llm.chat" not in bus.caps()
    empty = FakeBus({"flood": ([], US)})  # no chunk at all: the same answer
    frames = run(frames_of(Asker(empty, US), ask({"question": "x", "corpus": "flood"})))
    assert frames[1][0] == "nothing_relevant" and frames[1][1]["best_score"] is None
    assert "llm.chat" not in empty.caps()


def test_the_configured_default_corpus_is_used_when_none_is_named() -> None:
    bus = FakeBus({"flood": ([WATER], US)}, listed=["flood", "other"])
    frames = run(frames_of(Asker(bus, US, default_corpus="flood"), ask({"question": "water?"})))
    assert frames[0][1]["corpus_choice"] == "default" and frames[0][1]["corpora"] == ["flood"]
    assert "rag.list_corpora" not in bus.caps()


def test_with_several_corpora_a_failing_one_is_skipped_and_all_failing_is_the_error() -> None:
    bus = FakeBus({"flood": ([WATER], US), "gone": HearthNetError("not_found", "no corpus gone")},
                  listed=["flood", "gone"])
    frames = run(frames_of(Asker(bus, US), ask({"question": "water?"})))
    assert frames[0][1]["skipped"] == [{"corpus": "gone", "error": "not_found", "message": "no corpus gone"}]
    assert frames[-1][1]["nothing_relevant"] is False
    broken = FakeBus({"a": HearthNetError("partition", "no embed.text provider")}, listed=["a"])
    with pytest.raises(HearthNetError) as err:
        run(frames_of(Asker(broken, US), ask({"question": "water?"})))
    assert err.value.code == "partition"
    named = FakeBus({"gone": HearthNetError("not_found", "no corpus gone")})
    with pytest.raises(HearthNetError) as err:
        run(frames_of(Asker(named, US), ask({"question": "water?", "corpus": "gone"})))
    assert err.value.code == "not_found"
    nothing = FakeBus({}, listed=[])
    with pytest.raises(HearthNetError) as err:
        run(frames_of(Asker(nothing, US), ask({"question": "water?"})))
    assert err.value.code == "not_found" and "rag ingest" in err.value.details["hint"]


def test_a_peers_ask_is_answered_from_this_nodes_own_workers_on_the_peers_behalf() -> None:
    """The calls carry the peer as caller (so the rag worker never shows it `personal`) and
    stay on this node; the owner's ask may use any node's corpora and LLM."""
    bus = FakeBus({"flood": ([WATER], US)}, listed=["flood"])
    run(frames_of(Asker(bus, US), ask({"question": "water?"}, caller=PEER)))
    assert bus.caps() == ["rag.list_corpora", "rag.query", "llm.chat"]
    assert all(kw["local_only"] and kw["caller"] == PEER for _, _, kw in bus.calls)
    own = FakeBus({"flood": ([WATER], US)})
    run(frames_of(Asker(own, US), ask({"question": "water?", "corpus": "flood"})))
    assert not any(kw["local_only"] for _, _, kw in own.calls)
    assert all(kw["caller"] == US for _, _, kw in own.calls)


def test_closing_the_answer_stream_cancels_the_llm_stream() -> None:
    async def go(how: str) -> FakeBus:
        bus = FakeBus({"flood": ([WATER], US)}, tokens=["a", "b", "c"])
        bus.gate = asyncio.Event()  # the model "thinks" after its first token
        gen = await Asker(bus, US).handle(ask({"question": "water?", "corpus": "flood"}))
        assert (await anext(gen))[0] == "retrieval"
        assert (await anext(gen)) == ("token", {"text": "a", "logprob": None})
        if how == "aclose":  # the worker runtime closes the frames when the caller leaves
            await gen.aclose()
        else:  # or cancels the task waiting for the next frame
            task = asyncio.ensure_future(anext(gen))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return bus

    assert run(go("aclose")).chat_closed
    assert run(go("cancel")).chat_closed


def test_an_llm_error_ends_the_answer_with_that_error() -> None:
    bus = FakeBus({"flood": ([WATER], US)})
    bus.chat_error = {"error": "not_implemented", "message": "model 'x' is not served here"}
    with pytest.raises(HearthNetError) as err:
        run(frames_of(Asker(bus, US), ask({"question": "water?", "corpus": "flood", "model": "x"})))
    assert err.value.code == "not_implemented" and bus.chat_closed


def test_without_a_stream_the_answer_comes_whole() -> None:
    bus = FakeBus({"flood": ([WATER], US)})
    reply = run(Asker(bus, US).handle(ask({"question": "water?", "corpus": "flood"}, stream=False)))
    out = reply["output"]
    assert out["answer"] == "Boil water [1]." and out["nothing_relevant"] is False and out["model"] == "tiny"
    assert out["corpora"] == ["flood"] and out["sources"][0]["cited"] is True
    assert set(reply["meta"]) == {"ms", "tokens_out", "stop_reason"}


@pytest.mark.parametrize("inp", [{}, {"question": "  "}, {"question": 3}, {"question": "x" * 2001},
                                 {"question": "q", "corpus": "Bad Name"}, {"question": "q", "corpus": "a" * 65},
                                 {"question": "q", "k": 0}, {"question": "q", "k": 21}, {"question": "q", "k": True},
                                 {"question": "q", "model": ""}, {"question": "q", "max_tokens": 0}])
def test_bad_input_is_bad_request_before_any_call(inp) -> None:
    bus = FakeBus({})
    with pytest.raises(HearthNetError) as err:
        run(Asker(bus, US).handle(ask(inp)))
    assert err.value.code == "bad_request" and bus.calls == []


def test_citations_parsed_from_the_answer() -> None:
    assert cited_numbers("A [1]. B [2, 3]; C [4][5] and [9] and [x] [0]", 5) == {1, 2, 3, 4, 5}


def test_the_prompt_keeps_to_its_budget_and_numbers_only_what_it_holds() -> None:
    ps = select_passages([Passage("c", US, 0.9 - i / 10, "w" * 3000, {"doc_cid": CID, "char_start": i})
                          for i in range(4)], k=5, min_relevance=0.3)
    messages, used = build_messages("q?", ps, max_context_chars=4500)
    assert [p.n for p in used] == [1, 2]  # 2 000 + 2 000 characters; the third would exceed 4 500
    assert "[3]" not in messages[1]["content"]


def test_the_same_chunk_from_two_nodes_counts_once() -> None:
    a = Passage("c", US, 0.8, "same", {"doc_cid": CID, "char_start": 5})
    b = Passage("c", PEER, 0.8, "same", {"doc_cid": CID, "char_start": 5})
    assert [p.node for p in select_passages([a, b], k=5, min_relevance=0.1)] == [US]


def test_capability_descriptor() -> None:
    d = Asker(FakeBus({}), US, min_relevance=0.25).capability().descriptor()
    assert d["name"] == "rag.ask" and d["streams"] and d["trust_required"] == "member"
    assert d["params"]["min_relevance"] == 0.25 and d["timeout_seconds"] >= 120


def test_from_config_reads_the_rag_sections_threshold_and_default_corpus() -> None:
    from types import SimpleNamespace

    a = Asker.from_config(FakeBus({}), US, SimpleNamespace(relevance_threshold=0.45, default_corpus="flood"))
    assert (a.min_relevance, a.default_corpus) == (0.45, "flood")
    b = Asker.from_config(FakeBus({}), US, SimpleNamespace())
    assert (b.min_relevance, b.default_corpus) == (0.3, None)


def test_chunks_of_the_wrong_shape_are_dropped_and_odd_metadata_is_not_passed_on() -> None:
    good = chunk(0.7, "Boil water.")
    odd = {**good, "metadata": {**good["metadata"], "doc_title": ["x"], "page": "2", "char_start": -1}}
    bad = [None, {**good, "score": float("nan")}, {**good, "score": True}, {**good, "text": ""},
           {**good, "text": "x" * 70000}, {**good, "metadata": {**good["metadata"], "doc_cid": "blake3:zz"}},
           {**good, "metadata": None}]
    bus = FakeBus({"flood": ([*bad, odd], PEER)})
    frames = run(frames_of(Asker(bus, US), ask({"question": "water?", "corpus": "flood"})))
    (only,) = dict(frames)["sources"]["sources"]
    assert (only["title"], only["page"], only["char_start"], only["char_end"]) == (None, None, None, 11)
    assert "[1] untitled\nBoil water." in bus.calls[-1][1]["input"]["messages"][1]["content"]


def test_verify_citation_compares_the_passage_with_the_documents_text_at_its_range() -> None:
    pytest.importorskip("hearthnet.services.rag.extract")
    from hearthnet.services.rag.ask import verify_citation

    blob = "# Water\r\n\r\nBoil water for one minute.\r\n".encode()
    text = "# Water\n\nBoil water for one minute.\n"  # what extraction reads: \r\n is \n
    start, end = text.index("Boil"), text.index(".") + 1
    ok = verify_citation("Boil water for one minute.", blob, start, end, filename="plan.md")
    assert ok.ok and ok.found == "Boil water for one minute." and ok.reason == ""
    wrong = verify_citation("Boil milk for one minute.", blob, start, end, filename="plan.md")
    assert not wrong.ok and wrong.found == "Boil water for one minute." and "differs" in wrong.reason
    assert verify_citation(None, blob, start, end, filename="plan.md").found == "Boil water for one minute."
    assert "outside" in verify_citation("x", blob, 5, 500, filename="plan.md").reason
    assert "no page 2" in verify_citation("x", blob, 0, 1, page=2, filename="plan.md").reason
