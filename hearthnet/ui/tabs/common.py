"""Small shared pieces of the tabs: HTML escaping, short ids, tables, notices."""
from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# What a tab's build() returns: (fn, inputs, outputs) to fill it when the page loads or
# the tab is selected (timers only refresh it later).
Loader = tuple[Callable[..., Any], Any, list[Any]]

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # the UI's own upload cap (gradio enforces it too)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def short(node_id: Any) -> str:
    text = str(node_id or "")
    return text.removeprefix("ed25519:")[:10]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "nothing yet") -> str:
    rows = list(rows)
    if not rows:
        return f"<p><em>{esc(empty)}</em></p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="hn-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def ok(text: str) -> str:
    return f"**OK:** {text}"


def problem(text: str) -> str:
    return f"**Problem:** {text}"
