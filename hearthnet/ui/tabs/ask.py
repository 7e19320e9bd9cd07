"""Ask: `rag.ask` streamed into the page, then which node answered and the numbered sources."""
from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from hearthnet.ui.client import UiClient, UiError
from hearthnet.ui.tabs.common import problem, short

MAX_QUESTION_CHARS = 2000


def build(client: UiClient) -> None:
    gr.Markdown("Ask the community's own documents. The answer cites numbered sources.")
    with gr.Row():
        question = gr.Textbox(label="Question", lines=2, scale=4, elem_id="ask-question")
        corpus = gr.Textbox(label="Corpus (optional)", scale=1, elem_id="ask-corpus")
    send = gr.Button("Ask", variant="primary", elem_id="ask-send")
    notice = gr.Markdown(elem_id="ask-notice")
    answer = gr.Markdown(elem_id="ask-answer")
    sources = gr.Markdown(elem_id="ask-sources")

    def run(q: str, corpus_name: str) -> Iterator[tuple[str, str, str]]:
        yield from ask(client, q, corpus_name)

    send.click(run, [question, corpus], [notice, answer, sources])
    question.submit(run, [question, corpus], [notice, answer, sources])


def ask(client: UiClient, q: str, corpus_name: str) -> Iterator[tuple[str, str, str]]:
    """(notice, answer so far, sources) after each frame."""
    q = (q or "").strip()
    if not q:
        yield problem("Type a question first."), "", ""
        return
    if len(q) > MAX_QUESTION_CHARS:
        yield problem(f"That question is {len(q)} characters; at most {MAX_QUESTION_CHARS}."), "", ""
        return
    missing = client.missing("rag.ask")
    if missing:
        yield missing, "", ""
        return
    inp: dict = {"question": q}
    if (corpus_name or "").strip():
        inp["corpus"] = corpus_name.strip()
    text, srcs = "", ""
    yield "Searching the documents …", "", ""
    try:
        for event, data in client.stream("rag.ask", inp):
            if event == "token":
                text += str(data.get("text") or "")
                yield "Answering …", text, ""
            elif event == "nothing_relevant":
                yield "", f"_{data.get('message') or 'Nothing relevant found.'}_", ""
                return
            elif event == "sources":
                srcs = render_sources(data.get("sources") or [])
            elif event == "done":
                yield f"Answered by {answering_node(client)} · model {data.get('model') or '?'}", text, srcs
                return
    except UiError as exc:
        yield problem(exc.message), text, srcs


def render_sources(sources: list) -> str:
    lines = ["**Sources**", ""]
    for s in sources:
        if not isinstance(s, dict):
            continue
        page = f", page {s['page']}" if s.get("page") else ""
        mark = "" if s.get("cited") else " _(not cited)_"
        lines.append(f"{s.get('n')}. {s.get('title') or 'untitled'}{page} — `{str(s.get('doc_cid', ''))[:19]}…` "
                     f"from node `{short(s.get('node'))}`{mark}")
    return "\n".join(lines)


def answering_node(client: UiClient) -> str:
    """Where the last llm.chat ran: the broker's trace route (local worker or a peer)."""
    try:
        rows = client.get("/api/v1/traces", n=1, capability="llm.chat").get("traces") or []
    except UiError:
        return "?"
    route = str(rows[-1].get("route") or "") if rows else ""
    if route.startswith("remote:"):
        return f"peer `{short(route.split(':', 1)[1])}`"
    return "this node" if route else "?"
