"""`hearthnet ask "question"`: an answer from the community's documents, with numbered
sources (rag.ask; see hearthnet/services/rag/ask.py and README "Ask with sources").

The answer is printed as the model writes it; then the sources: title, page, the
document's CID, the node that served the passage. When nothing in the corpora is relevant
enough, it says so and no model is asked. `--verify` fetches each source's document and
checks that the passage is exactly the document's text at its range."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState

MAX_K = 20


@dataclass
class AskResult:
    doc: dict[str, Any]
    streamed: bool = False  # the answer is on the screen already

    @property
    def exit_code(self) -> int:
        return 1 if any(s.get("verified") is False for s in self.doc["sources"]) else 0

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def human(self, out: Output) -> None:
        from hearthnet.cli.commands.rag import short_cid, short_node

        d = self.doc
        if d["nothing_relevant"]:
            out.echo(f"{d['message']}; no model was asked.")
            return
        out.echo(d["answer"] if not self.streamed else "")
        if not d["sources"]:
            return
        out.echo("\nSources:")
        for s in d["sources"]:
            page = f", page {s['page']}" if s.get("page") else ""
            mark = "" if s.get("cited") else out.style("  (not cited)", dim=True)
            out.echo(f"[{s['n']}] {s.get('title') or 'untitled'}{page}{mark}")
            where = f"[{s.get('char_start')}:{s.get('char_end')}]"
            out.echo(f"    {short_cid(s.get('doc_cid'))} {where}  from {short_node(s.get('node'))}  "
                     f"score {s.get('score', 0):.2f}")
            if s.get("verified") is True:
                out.echo("    " + out.style("verified", fg="green") + " against the document")
            elif s.get("verified") is False:
                out.echo("    " + out.style("NOT verified", fg="red") + f": {s.get('verify_reason')}")


def _input(question: str, corpus: str | None, model: str | None, k: int | None,
           max_tokens: int | None) -> dict[str, Any]:
    from hearthnet.cli.commands.rag import check_corpus
    from hearthnet.errors import HearthNetError

    if not question.strip():
        raise HearthNetError("usage", "the question is empty")
    if k is not None and not 1 <= k <= MAX_K:
        raise HearthNetError("usage", f"-k must be 1..{MAX_K}, got {k}")
    inp: dict[str, Any] = {"question": question, "corpus": check_corpus(corpus), "model": model, "k": k,
                           "max_tokens": max_tokens}
    return {key: v for key, v in inp.items() if v is not None}


def ask(state: "CliState", question: str, corpus: str | None, model: str | None, k: int | None,
        max_tokens: int | None, *, verify: bool, show: bool, out: Output) -> AskResult:
    inp = _input(question, corpus, model, k, max_tokens)
    api = state.api()
    doc: dict[str, Any] = {"answer": "", "sources": [], "corpus": None, "corpora": [], "corpus_choice": None,
                           "model": model, "nothing_relevant": False, "message": None, "best_score": None}
    answer: list[str] = []
    frames = api.call("rag.ask", "1.0", {"params": {}, "input": inp}, stream=True)
    for event, data in frames:  # type: ignore[union-attr]
        if event == "token":
            answer.append(str(data.get("text") or ""))
            if show:
                out.write(answer[-1])
        elif event == "retrieval":
            doc.update(corpora=data.get("corpora") or [], corpus_choice=data.get("corpus_choice"),
                       best_score=data.get("best_score"))
            if show:
                _say_where(out, data)
        elif event == "nothing_relevant":
            doc.update(nothing_relevant=True, message=data.get("message"))
        elif event == "sources":
            doc["sources"] = data.get("sources") or []
        elif event == "done":
            doc.update(model=data.get("model") or model, nothing_relevant=bool(data.get("nothing_relevant")))
        elif event == "response":  # answered without a stream
            output = data.get("output") or {}
            answer = [output.get("answer") or ""]
            doc.update({k: output[k] for k in ("sources", "corpora", "corpus_choice", "model", "nothing_relevant",
                                                "best_score") if k in output})
    doc["answer"] = "".join(answer)
    doc["corpus"] = doc["corpora"][0] if len(doc["corpora"]) == 1 else None
    for s in doc["sources"]:
        s.setdefault("verified", None)
    if verify:
        _verify(api, doc["sources"])
    return AskResult(doc, streamed=show and bool(answer))


def _say_where(out: Output, data: dict[str, Any]) -> None:
    why = {"named": "", "default": " (the configured default)", "all": " (every corpus)"}.get(
        data.get("corpus_choice"), "")
    from hearthnet.cli.commands.rag import plural

    found = plural(data.get("passages", 0), "relevant passage")
    text = f"searched {', '.join(data.get('corpora') or [])}{why}: {found}"
    for s in data.get("skipped") or []:
        text += f"; {s.get('corpus')} skipped ({s.get('error')})"
    out.echo(out.style(text, dim=True), err=True)


def _verify(api: Any, sources: list[dict[str, Any]]) -> None:
    from hearthnet.cli.commands.rag import DocumentCache, verify_source

    docs = DocumentCache(api)
    for s in sources:
        if not isinstance(s.get("char_start"), int) or not isinstance(s.get("char_end"), int):
            s.update(verified=False, verify_reason="the source carries no character range")
            continue
        v = verify_source(docs, s["doc_cid"], s["char_start"], s["char_end"], s.get("page"), s.get("text"))
        s.update(verified=v["verified"], verify_reason=v["reason"])


@click.command("ask")
@click.argument("question")
@click.option("--corpus", help="Search this corpus (default: the node's [rag] default_corpus, else every corpus).")
@click.option("--model", help="Ask this model (default: the LLM's primary model).")
@click.option("-k", "k", type=int, help=f"Passages to retrieve (1..{MAX_K}, default 5).")
@click.option("--max-tokens", type=click.IntRange(1, 4096), help="Longest answer, in tokens (default 512).")
@click.option("--verify", is_flag=True,
              help="Fetch each source's document and check the passage against its text at the given range.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one document at the end: {answer, sources: [{n, doc_cid, title, page, char_start, "
                   "char_end, chunk_id, text, score, corpus, node, cited, verified}], corpus, corpora, "
                   "corpus_choice, model, nothing_relevant, message, best_score}.")
@click.pass_obj
def cli(state: "CliState", question: str, corpus: str | None, model: str | None, k: int | None,
        max_tokens: int | None, verify: bool, as_json: bool) -> None:
    """Answer QUESTION from the community's documents, citing numbered sources.

    When nothing relevant is found it says so (exit 0) instead of letting a model guess.
    Exit 1 if a source fails --verify or on an error, 2 for bad usage, 3 if no node runs."""
    out = Output()
    boundary.run(lambda: ask(state, question, corpus, model, k, max_tokens, verify=verify, show=not as_json,
                             out=out), as_json=as_json, state=state, out=out)
