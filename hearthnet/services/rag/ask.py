"""`rag.ask@1.0`: answer a question from the community's documents, and say exactly where
each statement came from (issue 8, point 3).

Everything goes through the bus, so any node's corpus and any node's LLM will do:

1. which corpora: the one named in `input.corpus`; else the node's `[rag] default_corpus`;
   else every corpus `rag.list_corpora` shows (the `retrieval` frame says which rule chose);
2. `rag.query` on each (concurrently), remembering the node that served each answer
   (`BusClient.call_from`); passages scoring under `[rag] relevance_threshold` (cosine) are dropped;
3. none left: one `nothing_relevant` frame and `done` — the LLM is NOT called (a model
   given no evidence guesses, and its guess would look like an answer);
4. else a prompt with numbered passages and the instruction to cite them as [n], sent to
   `llm.chat` as a stream; its `token` frames are passed on as they come;
5. one `sources` frame: every passage given to the model, numbered as in the prompt, with
   its `doc_cid`, title, page, the character range of the passage in the document's
   extracted text, its text, score, the serving node, and whether the answer cited it;
6. `done` {model, corpora, nothing_relevant, tokens_out, stop_reason, ms}.

A caller that goes away cancels this handler; closing the `llm.chat` stream in `finally`
cancels the generation on whichever node runs it. The calls carry the asker as their
caller, so a peer never gets passages it could not query itself (the `personal` corpus),
and a peer's `rag.ask` is answered from this node's own corpora and LLM only
(`local_only`): a node does not forward a peer's work.

`verify_citation` re-checks a source independently: the passage must equal the document's
extracted text in [char_start:char_end] (PDF: of that page's text).
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

from hearthnet.blobs.cids import is_cid
from hearthnet.bus.service import Capability, Request
from hearthnet.constants import CORPUS_NAME_RE, LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS
from hearthnet.errors import HearthNetError

log = logging.getLogger("hearthnet.rag.ask")

Frames = AsyncIterator[tuple[str, dict[str, Any]]]

CORPUS_RE = CORPUS_NAME_RE
DEFAULT_K, MAX_K = 5, 20
DEFAULT_MIN_RELEVANCE = 0.3  # cosine; MiniLM-class models put unrelated text at ~0.0-0.2
MAX_QUESTION_CHARS = 2000
MAX_MODEL_CHARS = 256
DEFAULT_MAX_TOKENS, MAX_MAX_TOKENS = 512, 4096
MAX_CHUNK_CHARS = 65536  # a chunk longer than this is not what rag.query makes (~254 wordpieces)
MAX_TITLE_CHARS = 512
MAX_PASSAGE_CHARS = 2000  # of one passage in the prompt (the source keeps all of it)
MAX_CONTEXT_CHARS = 8000  # of all passages in the prompt: ~2 300 tokens
QUERY_TIMEOUT_SECONDS = 15.0
LIST_TIMEOUT_SECONDS = 10.0
ASK_TIMEOUT_SECONDS = int(QUERY_TIMEOUT_SECONDS + LIST_TIMEOUT_SECONDS) + LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS
TEMPERATURE = 0.2  # an answer from sources, not a story

SYSTEM_PROMPT = (
    "You answer questions for a neighbourhood from its own documents. Use only the numbered "
    "passages in the user's message. After each statement, cite the passage it comes from as "
    "[n], e.g. [1] or [2][3]. If the passages do not answer the question, say so; do not guess."
)
_CITE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")


class AskBus(Protocol):
    async def call_from(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                        timeout: float | None = None, local_only: bool = False,
                        node: str | None = None) -> tuple[dict[str, Any], str]: ...

    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]: ...

    def stream(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
               timeout: float | None = None, local_only: bool = False,
               node: str | None = None) -> AsyncIterator[tuple[str, Any]]: ...


def _bad(message: str) -> HearthNetError:
    return HearthNetError("bad_request", message)


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Question:
    text: str
    corpus: str | None
    k: int
    model: str | None
    max_tokens: int
    seed: int | None


def _int(inp: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = inp.get(key)
    if v is None:
        return default
    if type(v) is not int or not lo <= v <= hi:
        raise _bad(f"input.{key} must be an integer {lo}..{hi}, got {v!r}")
    return v


def check_corpus(name: Any, where: str = "input.corpus") -> str:
    if not isinstance(name, str) or not CORPUS_RE.match(name):
        raise _bad(f"{where} must be a corpus name of 1..64 characters a-z, 0-9 and '-', got {name!r}")
    return name


def parse_question(body: dict[str, Any]) -> Question:
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise _bad('the body must be {"params": {}, "input": {"question": ...}}')
    text = inp.get("question")
    if not isinstance(text, str) or not text.strip():
        raise _bad("input.question must be a non-empty string")
    if len(text) > MAX_QUESTION_CHARS:
        raise _bad(f"input.question has {len(text)} characters; at most {MAX_QUESTION_CHARS}")
    corpus = inp.get("corpus")
    model = inp.get("model")
    if model is not None and (not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL_CHARS):
        raise _bad(f"input.model must be a model name of 1..{MAX_MODEL_CHARS} characters")
    seed = inp.get("seed")
    if seed is not None and type(seed) is not int:
        raise _bad("input.seed must be an integer")
    return Question(text=text.strip(), corpus=None if corpus is None else check_corpus(corpus),
                    k=_int(inp, "k", DEFAULT_K, 1, MAX_K), model=model,
                    max_tokens=_int(inp, "max_tokens", DEFAULT_MAX_TOKENS, 1, MAX_MAX_TOKENS), seed=seed)


# --------------------------------------------------------------------------- passages


@dataclass
class Passage:
    """One retrieved chunk, as the `sources` frame carries it."""

    corpus: str
    node: str
    score: float
    text: str
    metadata: dict[str, Any]
    n: int = 0

    @classmethod
    def from_chunk(cls, corpus: str, node: str, chunk: Any) -> "Passage | None":
        """None for a chunk that is not the shape rag.query promises (it may be a peer's
        bytes); the metadata a source shows is kept only when it has the right type."""
        if not isinstance(chunk, dict):
            return None
        score, text, meta = chunk.get("score"), chunk.get("text"), chunk.get("metadata")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score) \
                or not isinstance(text, str) or not text or len(text) > MAX_CHUNK_CHARS \
                or not isinstance(meta, dict) or not is_cid(meta.get("doc_cid")):
            return None
        clean = {"doc_cid": meta["doc_cid"]}
        for key, kind, limit in (("doc_title", str, MAX_TITLE_CHARS), ("chunk_id", str, MAX_TITLE_CHARS),
                                 ("page", int, None), ("char_start", int, None), ("char_end", int, None)):
            v = meta.get(key)
            if type(v) is kind and (limit is None or len(v) <= limit) and (kind is str or v >= 0):
                clean[key] = v
        return cls(corpus=corpus, node=node, score=float(score), text=text, metadata=clean)

    def source(self, cited: bool) -> dict[str, Any]:
        m = self.metadata
        return {"n": self.n, "doc_cid": m["doc_cid"], "title": m.get("doc_title"), "page": m.get("page"),
                "char_start": m.get("char_start"), "char_end": m.get("char_end"), "chunk_id": m.get("chunk_id"),
                "text": self.text, "score": round(self.score, 4), "corpus": self.corpus, "node": self.node,
                "cited": cited}

    def heading(self) -> str:
        page = self.metadata.get("page")
        return f"[{self.n}] {self.metadata.get('doc_title') or 'untitled'}" + (f", page {page}" if page else "")


def select_passages(found: list[Passage], k: int, min_relevance: float) -> list[Passage]:
    """The best k relevant passages, numbered 1.. in rank order; the same chunk served by
    two nodes counts once."""
    seen: set[tuple[Any, ...]] = set()
    out: list[Passage] = []
    for p in sorted(found, key=lambda p: p.score, reverse=True):
        key = (p.metadata.get("doc_cid"), p.metadata.get("page"), p.metadata.get("char_start"), p.text)
        if p.score < min_relevance or key in seen:
            continue
        seen.add(key)
        out.append(p)
        if len(out) == k:
            break
    for i, p in enumerate(out, 1):
        p.n = i
    return out


def build_messages(question: str, passages: list[Passage], *,
                   max_context_chars: int = MAX_CONTEXT_CHARS) -> tuple[list[dict[str, str]], list[Passage]]:
    """The llm.chat messages, and the passages that fit the budget (at least one): only
    those are numbered in the prompt, so only those can be cited."""
    blocks: list[str] = []
    used: list[Passage] = []
    total = 0
    for p in passages:
        text = p.text if len(p.text) <= MAX_PASSAGE_CHARS else p.text[:MAX_PASSAGE_CHARS] + " …"
        if used and total + len(text) > max_context_chars:
            break
        blocks.append(f"{p.heading()}\n{text}")
        used.append(p)
        total += len(text)
    user = "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}], used


def cited_numbers(answer: str, count: int) -> set[int]:
    """The passage numbers the answer cites as [n], [n, m] or [n][m] (1..count only)."""
    found: set[int] = set()
    for m in _CITE.finditer(answer):
        found.update(int(x) for x in re.split(r"\s*[,;]\s*", m.group(1)))
    return {n for n in found if 1 <= n <= count}


# --------------------------------------------------------------------------- the capability


class Asker:
    """Serves `rag.ask@1.0`; `RagService.capabilities()` adds `asker.capability()`."""

    def __init__(self, bus: AskBus, node_id: str, *, default_corpus: str | None = None,
                 min_relevance: float = DEFAULT_MIN_RELEVANCE, max_context_chars: int = MAX_CONTEXT_CHARS) -> None:
        self.bus = bus
        self.node_id = node_id
        self.default_corpus = default_corpus or None
        self.min_relevance = float(min_relevance)
        self.max_context_chars = max_context_chars

    @classmethod
    def from_config(cls, bus: AskBus, node_id: str, rag_cfg: Any) -> "Asker":
        """From `[rag]` (the config section or the rag worker's RagSettings):
        `relevance_threshold` and `default_corpus`, when it has them."""
        threshold = getattr(rag_cfg, "relevance_threshold", None)
        return cls(bus, node_id, default_corpus=getattr(rag_cfg, "default_corpus", None) or None,
                   min_relevance=DEFAULT_MIN_RELEVANCE if threshold is None else float(threshold))

    def capability(self) -> Capability:
        obj, text = {"type": "object"}, {"type": "string"}
        request = {"type": "object", "required": ["input"], "properties": {"params": obj, "input": {
            "type": "object", "required": ["question"], "properties": {
                "question": {"type": "string", "minLength": 1, "maxLength": MAX_QUESTION_CHARS},
                "corpus": {"type": "string", "pattern": CORPUS_RE.pattern},
                "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_K},
                "model": text, "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_MAX_TOKENS},
                "seed": {"type": "integer"}}}}}
        frames = {"type": "object", "properties": {name: obj for name in (
            "retrieval", "nothing_relevant", "token", "sources", "done")}}
        return Capability(name="rag.ask", handler=self.handle, version="1.0", stability="beta",
                          request_schema=request, response_schema=obj, stream_schema=frames,
                          params={"min_relevance": self.min_relevance, "default_corpus": self.default_corpus},
                          max_concurrent=4, trust_required="member", timeout_seconds=ASK_TIMEOUT_SECONDS,
                          idempotent=False)

    async def handle(self, req: Request) -> Any:
        q = parse_question(req.body)  # bad input fails the call before any frame
        frames = self.frames(q, caller=req.caller or self.node_id, trace=req.trace_id)
        return frames if req.stream else await collect(frames)

    # ------------------------------------------------------------------ the flow

    async def frames(self, q: Question, *, caller: str = "", trace: str = "") -> Frames:
        """The answer's frames. The calls it makes carry `caller`, so a peer's ask sees
        what that peer may see (never the `personal` corpus), and a peer's ask is served
        by this node's own workers only (`local_only`: no forwarding of a peer's work)."""
        t0 = time.monotonic()
        call = Via(caller or self.node_id, trace, local_only=bool(caller) and caller != self.node_id)
        corpora, choice = await self._corpora(q, call)
        found, skipped = await self._retrieve(q, corpora, call)
        passages = select_passages(found, q.k, self.min_relevance)
        best = max((p.score for p in found), default=None)
        yield "retrieval", {"corpora": corpora, "corpus_choice": choice, "retrieved": len(found),
                            "passages": len(passages), "best_score": _round(best),
                            "min_relevance": self.min_relevance, "skipped": skipped}
        if not passages:
            yield "nothing_relevant", {"message": _nothing_message(corpora, best, self.min_relevance),
                                       "best_score": _round(best), "min_relevance": self.min_relevance,
                                       "corpora": corpora}
            yield "done", {"model": q.model, "corpora": corpora, "nothing_relevant": True, "tokens_out": 0,
                           "stop_reason": "nothing_relevant", "ms": _ms(t0)}
            return
        messages, used = build_messages(q.text, passages, max_context_chars=self.max_context_chars)
        answer: list[str] = []
        done: dict[str, Any] = {}
        chat = self._chat(q, messages, call, done)
        try:
            async for event, data in chat:
                answer.append(data.get("text") or "")
                yield event, data
        finally:  # closed at a yield (the caller left): end the generation now, not at GC
            await chat.aclose()
        cited = cited_numbers("".join(answer), len(used))
        yield "sources", {"sources": [p.source(p.n in cited) for p in used]}
        yield "done", {"model": done.get("model") or q.model, "corpora": corpora, "nothing_relevant": False,
                       "tokens_out": done.get("tokens_out", 0), "stop_reason": done.get("stop_reason", "end"),
                       "ms": _ms(t0)}

    async def _corpora(self, q: Question, call: "Via") -> tuple[list[str], str]:
        if q.corpus is not None:
            return [q.corpus], "named"
        if self.default_corpus:
            return [self.default_corpus], "default"
        out = await self.bus.call("rag.list_corpora", "1.0", {"params": {}, "input": {}},
                                  timeout=LIST_TIMEOUT_SECONDS, **call.kw())
        listed = (out.get("output") or {}).get("corpora") or []
        names = [c.get("name") if isinstance(c, dict) else c for c in listed]
        names = sorted({n for n in names if isinstance(n, str) and CORPUS_RE.match(n)})
        if not names:
            raise HearthNetError("not_found", "no corpus to search: none is named, none is configured "
                                              "([rag] default_corpus) and rag.list_corpora lists none",
                                 hint="ingest documents with `hearthnet rag ingest PATH --corpus NAME`")
        return names, "all"

    async def _retrieve(self, q: Question, corpora: list[str],
                        call: "Via") -> tuple[list[Passage], list[dict[str, str]]]:
        """Every corpus's chunks. A named corpus that fails fails the call; with several,
        the failing ones are reported in `skipped` unless all fail."""
        results = await asyncio.gather(*(self._query(q, c, call) for c in corpora),
                                       return_exceptions=True)
        found: list[Passage] = []
        skipped: list[dict[str, str]] = []
        errors: list[HearthNetError] = []
        for corpus, res in zip(corpora, results):
            if isinstance(res, HearthNetError):
                errors.append(res)
                skipped.append({"corpus": corpus, "error": res.code, "message": res.message})
            elif isinstance(res, BaseException):
                raise res
            else:
                found.extend(res)
        if errors and len(errors) == len(corpora):
            raise errors[0]
        return found, skipped

    async def _query(self, q: Question, corpus: str, call: "Via") -> list[Passage]:
        body = {"params": {"corpus": corpus}, "input": {"query": q.text, "k": q.k, "include_text": True}}
        reply, node = await self.bus.call_from("rag.query", "1.0", body, timeout=QUERY_TIMEOUT_SECONDS, **call.kw())
        chunks = (reply.get("output") or {}).get("chunks") if isinstance(reply, dict) else None
        passages = [Passage.from_chunk(corpus, node, c) for c in chunks or []]
        return [p for p in passages if p is not None]

    async def _chat(self, q: Question, messages: list[dict[str, str]], call: "Via", done: dict[str, Any]) -> Frames:
        """llm.chat's token frames; its `done` data lands in `done`. Leaving early (the
        caller went away) closes the stream, which cancels the generation."""
        inp: dict[str, Any] = {"messages": messages, "max_tokens": q.max_tokens, "temperature": TEMPERATURE,
                               "stream": True}
        if q.seed is not None:
            inp["seed"] = q.seed
        params = {"model": q.model} if q.model else {}
        stream = self.bus.stream("llm.chat", "1.0", {"params": params, "input": inp},
                                 timeout=float(LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS), **call.kw())
        try:
            async for event, data in stream:
                if event == "token" and isinstance(data, dict):
                    yield "token", {"text": str(data.get("text") or ""), "logprob": data.get("logprob")}
                elif event == "done":
                    done.update(data if isinstance(data, dict) else {})
                    return
                elif event == "error":
                    raise HearthNetError.from_wire(data if isinstance(data, dict) else {})
        finally:
            await stream.aclose()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Via:
    """On whose behalf the ask's own calls go, and whether they stay on this node."""

    caller: str
    trace: str
    local_only: bool

    def kw(self) -> dict[str, Any]:
        return {"caller": self.caller, "trace": self.trace, "local_only": self.local_only}


async def collect(frames: Frames) -> dict[str, Any]:
    """The non-stream answer: {output: {answer, sources, corpora, corpus_choice, model,
    nothing_relevant, best_score}, meta: {ms, tokens_out, stop_reason}}."""
    answer: list[str] = []
    out: dict[str, Any] = {"sources": []}
    meta: dict[str, Any] = {}
    async for event, data in frames:
        if event == "token":
            answer.append(data.get("text") or "")
        elif event == "retrieval":
            out.update(corpus_choice=data["corpus_choice"], best_score=data["best_score"])
        elif event == "sources":
            out["sources"] = data["sources"]
        elif event == "done":
            out.update(corpora=data["corpora"], model=data["model"], nothing_relevant=data["nothing_relevant"])
            meta = {k: data[k] for k in ("ms", "tokens_out", "stop_reason")}
    out["answer"] = "".join(answer)
    return {"output": out, "meta": meta}


def _nothing_message(corpora: list[str], best: float | None, threshold: float) -> str:
    where = ", ".join(corpora)
    if best is None:
        return f"nothing in {where} matches the question"
    return (f"nothing in {where} is relevant enough to answer from (best match {best:.2f}, "
            f"under the threshold {threshold:.2f})")


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Verdict:
    ok: bool
    found: str  # the document's extracted text at that range ("" when out of range)
    reason: str  # why not, or "" when ok


def verify_citation(passage: str | None, blob: bytes, char_start: int, char_end: int, *,
                    page: int | None = None, filename: str | None = None, mime: str | None = None) -> Verdict:
    """Check a source against the document itself: the blob (already verified against its
    CID by the blob store) is extracted again exactly as ingest did, and the passage must
    equal its text in [char_start:char_end] (a PDF's: of page `page`). With no passage,
    only the range is checked and the text found there returned."""
    from hearthnet.services.rag.extract import extract  # a PDF is read by a bounded child (pdf_child)

    doc = extract(blob, filename, mime)
    index = (page - 1) if page else 0
    if not 0 <= index < len(doc.units):
        return Verdict(False, "", f"the document has no page {page} ({len(doc.units)} pages)")
    text = doc.units[index].text
    if not 0 <= char_start <= char_end <= len(text):
        return Verdict(False, "", f"characters {char_start}..{char_end} are outside the text ({len(text)})")
    found = text[char_start:char_end]
    if passage is not None and found != passage:
        return Verdict(False, found, "the passage differs from the document's text at that range")
    return Verdict(True, found, "")
