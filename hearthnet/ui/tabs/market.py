"""Market: the board (market.list), search (market.search), a new post (market.post) and
marking one's own post fulfilled (market.expire reason fulfilled)."""
from __future__ import annotations

import uuid
from typing import Any

import gradio as gr

from hearthnet.ui.tabs.common import Loader
from hearthnet.ui.client import UiClient, UiError
from hearthnet.ui.tabs.common import esc, ok, problem, short, table

CATEGORIES = ["offer", "request", "info", "emergency"]


def build(client: UiClient) -> "Loader":
    notice = gr.Markdown(elem_id="market-notice")  # what the last action did
    status = gr.Markdown(elem_id="market-status")  # what a timed refresh found wrong
    with gr.Row():
        query = gr.Textbox(label="Search", scale=3, elem_id="market-query")
        search = gr.Button("Search", scale=1, elem_id="market-search")
        refresh = gr.Button("Show all", scale=1, elem_id="market-refresh")
    board = gr.HTML(elem_id="market-board")
    with gr.Accordion("New post", open=False):
        category = gr.Dropdown(CATEGORIES, value="offer", label="Category", elem_id="market-category")
        title = gr.Textbox(label="Title", elem_id="market-title")
        body = gr.Textbox(label="Details", lines=3, elem_id="market-body")
        tags = gr.Textbox(label="Tags (comma separated)", elem_id="market-tags")
        post = gr.Button("Post", variant="primary", elem_id="market-post")
    with gr.Row():
        done_id = gr.Textbox(label="Mark fulfilled: post id (or 6+ characters of it)", scale=3,
                             elem_id="market-done-id")
        done = gr.Button("Mark fulfilled", scale=1, elem_id="market-done")

    refresh.click(lambda: list_board(client), None, [board, notice])
    search.click(lambda q: search_board(client, q), [query], [board, notice])
    query.submit(lambda q: search_board(client, q), [query], [board, notice])
    post.click(lambda c, t, b, g: new_post(client, c, t, b, g), [category, title, body, tags],
               [notice, board, title, body])
    done.click(lambda i: fulfil(client, i), [done_id], [notice, board])
    # Timed and live refreshes write `status`, never `notice`: a tick must not wipe "Posted".
    gr.on([gr.Timer(10).tick], lambda: list_board(client), None, [board, status])
    return lambda: list_board(client), None, [board, status]


def render_posts(posts: list[dict[str, Any]]) -> str:
    rows = [(f"<code>{esc(p.get('event_id', '')[:12])}</code>", esc(p.get("category")),
             f"<b>{esc(p.get('title'))}</b><br>{esc(p.get('body'))}",
             esc(", ".join(p.get("tags") or [])), esc(short(p.get("author"))), esc(p.get("status")))
            for p in posts if isinstance(p, dict)]
    return table(["id", "category", "post", "tags", "by", "status"], rows, "No posts.")


def list_board(client: UiClient) -> tuple[str, str]:
    missing = client.missing("market.list")
    if missing:
        return "", missing
    try:
        return render_posts(client.call("market.list", {"limit": 100}).get("posts") or []), ""
    except UiError as exc:
        return "", problem(exc.message)


def search_board(client: UiClient, q: str) -> tuple[str, str]:
    q = (q or "").strip()
    if not q:
        return list_board(client)
    missing = client.missing("market.search")
    if missing:
        return "", missing
    try:
        out = client.call("market.search", {"query": q[:500], "k": 20})
    except UiError as exc:
        return "", problem(exc.message)
    return render_posts(out.get("posts") or []), ""


def new_post(client: UiClient, category: str, title: str, body: str, tags: str) -> tuple[str, str, str, str]:
    title, body = (title or "").strip(), (body or "").strip()
    if not title:
        return problem("A post needs a title."), gr.update(), title, body
    missing = client.missing("market.post")
    if missing:
        return missing, gr.update(), title, body
    tag_list = [t.strip().lower() for t in (tags or "").split(",") if t.strip()]
    try:
        out = client.call("market.post", {"client_id": uuid.uuid4().hex, "category": category or "offer",
                                          "title": title, "body": body, "tags": tag_list})
    except UiError as exc:
        return problem(exc.message), gr.update(), title, body
    board, _ = list_board(client)
    return ok(f"Posted ({out.get('event_id', '')[:12]})."), board, "", ""


def fulfil(client: UiClient, post_id: str) -> tuple[str, str]:
    post_id = (post_id or "").strip()
    if len(post_id) < 6:
        return problem("Give the post's id (at least 6 characters)."), gr.update()
    try:
        client.call("market.expire", {"client_id": uuid.uuid4().hex, "event_id": post_id, "reason": "fulfilled"})
    except UiError as exc:
        return problem(exc.message), gr.update()
    board, _ = list_board(client)
    return ok("Marked fulfilled."), board
