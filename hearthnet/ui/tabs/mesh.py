"""Mesh: members (community.members.list), peers with how they were found and their last
sync (/api/v1/status), and who called whom from the traces (/api/v1/traces) as an SVG."""
from __future__ import annotations

import time
from typing import Any

import gradio as gr

from hearthnet.ui import topology
from hearthnet.ui.tabs.common import Loader
from hearthnet.ui.client import UiClient, UiError
from hearthnet.ui.tabs.common import esc, problem, short, table


def build(client: UiClient) -> "Loader":
    notice = gr.Markdown(elem_id="mesh-notice")
    members = gr.HTML(elem_id="mesh-members")
    peers = gr.HTML(elem_id="mesh-peers")
    gr.Markdown("**Who called whom** (recent calls; colour = capability)")
    picture = gr.HTML(elem_id="mesh-topology", elem_classes=["hn-topology"])
    refresh = gr.Button("Refresh", size="sm", elem_id="mesh-refresh")
    refresh.click(lambda: load(client), None, [members, peers, picture, notice])
    gr.on([gr.Timer(5).tick], lambda: load(client), None, [members, peers, picture, notice])
    return lambda: load(client), None, [members, peers, picture, notice]


def load(client: UiClient) -> tuple[str, str, str, str]:
    try:
        status = client.status()
        traces = client.traces(500)
    except UiError as exc:
        return "", "", "", problem(exc.message)
    names = {}
    member_html = client.missing("community.members.list") or ""
    if not member_html:
        try:
            doc = client.call("community.members.list")
            rows = []
            for m in doc.get("members") or []:
                names[short(m.get("node_id"))] = m.get("display_name") or short(m.get("node_id"))
                rows.append((esc(m.get("display_name")), f"<code>{esc(short(m.get('node_id')))}</code>",
                             esc(m.get("level")), esc(m.get("added_at"))))
            member_html = "<h4>Members</h4>" + table(["name", "id", "level", "since"], rows)
        except UiError as exc:
            member_html = esc(problem(exc.message))
    peer_rows = []
    for p in status.get("peers") or []:
        last = p.get("last_sync") or {}
        names[short(p.get("node_id"))] = p.get("display_name") or short(p.get("node_id"))
        sync = sync_text(last)
        peer_rows.append((esc(p.get("display_name")), f"<code>{esc(short(p.get('node_id')))}</code>",
                          esc(p.get("source")), esc(endpoint_text(p.get("endpoint"))), sync))
    diagnose = (status.get("discovery") or {}).get("diagnose") or []
    why = "; ".join(str(d.get("message") if isinstance(d, dict) else d) for d in diagnose) if not peer_rows else ""
    peers_html = "<h4>Peers</h4>" + table(["name", "id", "found by", "endpoint", "last sync"], peer_rows,
                                          why or "No peers right now.")
    own = str((status.get("node") or {}).get("node_id") or "")
    svg = topology.render_svg(topology.edges_from_traces(traces, own), names)
    return member_html, peers_html, svg, ""


def sync_text(last: dict[str, Any]) -> str:
    if not last:
        return "not yet"
    at = last.get("at")
    when = time.strftime("%H:%M:%S", time.localtime(at)) if isinstance(at, (int, float)) else ""
    outcome = f"ok (+{last.get('received', 0)}/-{last.get('sent', 0)})" if last.get("ok") else \
        f"failed: {last.get('error') or '?'}"
    return esc(f"{when} {outcome}")


def endpoint_text(ep: Any) -> str:
    if isinstance(ep, dict) and ep.get("host"):
        return f"{ep['host']}:{ep.get('port', '')}"
    return str(ep or "")
