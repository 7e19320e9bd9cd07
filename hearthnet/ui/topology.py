"""Who called whom, drawn from the broker's recent traces as an inline SVG we render
ourselves (no Cytoscape, no CDN: the picture must work with the internet gone)."""
from __future__ import annotations

import html
import math
from collections import Counter
from typing import Any

EDGE_COLOURS = {"llm": "#14b8a6", "rag": "#6d28d9", "file": "#d97706", "chat": "#2563eb",
                "market": "#15803d", "community": "#6b7280"}
MAX_NODES = 50
SIZE = 420


def edges_from_traces(traces: list[dict[str, Any]], own_id: str = "", self_label: str = "this node") -> Counter:
    """(caller, callee, capability prefix) -> calls. A local route ends at this node; a
    remote one at the peer; a call with no caller (the owner's own) starts here."""
    edges: Counter = Counter()
    for t in traces:
        route = str(t.get("route") or "")
        caller = str(t.get("caller") or "") or self_label
        if caller in ("self", "local", "owner", own_id):
            caller = self_label
        callee = route.split(":", 1)[1] if route.startswith("remote:") else self_label
        prefix = str(t.get("capability") or "?").split(".", 1)[0]
        edges[(_short(caller), _short(callee), prefix)] += 1
    return edges


def _short(node: str) -> str:
    if node.startswith("ed25519:") or len(node) > 24:
        return node.removeprefix("ed25519:")[:10]
    return node


def render_svg(edges: Counter, names: dict[str, str] | None = None, self_label: str = "this node") -> str:
    names = names or {}
    nodes = sorted({a for a, _, _ in edges} | {b for _, b, _ in edges} | {self_label})[:MAX_NODES]
    pos = _circle(nodes, self_label)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SIZE} {SIZE}" role="img" '
             f'aria-label="who called whom">']
    for (a, b, prefix), count in sorted(edges.items()):
        if a not in pos or b not in pos:
            continue
        colour = EDGE_COLOURS.get(prefix, "#9ca3af")
        (x1, y1), (x2, y2) = pos[a], pos[b]
        width = min(6.0, 1.0 + math.log2(count))
        if a == b:  # a call served here: a small loop above the node
            parts.append(f'<circle cx="{x1:.0f}" cy="{y1 - 22:.0f}" r="14" fill="none" stroke="{colour}" '
                         f'stroke-width="{width:.1f}"><title>{html.escape(prefix)}.* ×{count}</title></circle>')
        else:
            parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{colour}" '
                         f'stroke-width="{width:.1f}"><title>{html.escape(a)} → {html.escape(b)}: '
                         f'{html.escape(prefix)}.* ×{count}</title></line>')
    for node, (x, y) in pos.items():
        fill = "#b45309" if node == self_label else "#15803d"
        label = html.escape(names.get(node, node))
        parts.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="9" fill="{fill}"/>'
                     f'<text x="{x:.0f}" y="{y + 24:.0f}" font-size="12" text-anchor="middle">{label}</text>')
    legend = " ".join(f'<tspan fill="{c}">■ {p}</tspan>' for p, c in EDGE_COLOURS.items())
    parts.append(f'<text x="4" y="{SIZE - 6}" font-size="11">{legend}</text></svg>')
    return "".join(parts)


def _circle(nodes: list[str], centre: str) -> dict[str, tuple[float, float]]:
    """This node in the middle, the others on a circle around it."""
    c = SIZE / 2
    pos = {centre: (c, c)}
    others = [n for n in nodes if n != centre]
    for i, node in enumerate(others):
        angle = 2 * math.pi * i / max(1, len(others)) - math.pi / 2
        pos[node] = (c + 150 * math.cos(angle), c + 150 * math.sin(angle))
    return pos
