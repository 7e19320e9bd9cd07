"""`hearthnet status`: this node, its community, per-worker health, local capabilities."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary, render
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.config import Config

_STATE_STYLE = {"RUNNING": "green", "STARTING": "yellow", "BACKOFF": "yellow", "FATAL": "red", "EXITED": "red"}
_SHOW_LOG_TAIL = ("FATAL", "BACKOFF")


@dataclass
class StatusResult:
    """The node's `GET /api/v1/status` document; `--json` prints it unchanged."""

    doc: dict[str, Any]
    config_file: str = ""
    backend_snippet: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def human(self, out: Output) -> None:
        node, comm = self.doc["node"], self.doc.get("community") or {}
        uptime = render.duration(node.get("uptime_seconds"))
        out.print(
            out.text("Node       ", "bold"),
            out.text(f"{node.get('display_name') or '(unnamed)'}  {node.get('node_id_short') or render.short_node_id(node.get('node_id'))}"),
            out.text(f"  profile {node.get('profile') or '-'}  up {uptime}  "
                     f"hearthnet {node.get('version', '?')} (contract {node.get('contract_version', '?')})", "dim"),
        )
        members = comm.get("member_count")
        out.print(
            out.text("Community  ", "bold"),
            out.text(f"{comm.get('name') or '-'}  {render.short_node_id(comm.get('community_id'))}"),
            out.text(f"  {members if members is not None else '?'} member(s)", "dim"),
        )
        out.print(out.text("In flight  ", "bold"), out.text(str(self.doc.get("in_flight", 0))))
        log_head = self.doc.get("event_log") or {}
        if log_head:
            out.print(out.text("Event log  ", "bold"),
                      out.text(f"head {log_head.get('head')}  {log_head.get('count')} event(s)"))
        _blob_store(out, self.doc.get("blob_store"))
        if "emergency" in self.doc:
            _emergency(out, self.doc["emergency"])
        out.echo()
        _workers_table(out, self.doc.get("workers") or [])
        if "peers" in self.doc:
            out.echo()
            _peers(out, self.doc.get("peers") or [], self.doc.get("discovery") or {})
        caps = [c for c in self.doc.get("capabilities") or [] if c.get("local", True)]
        names = sorted({f"{c.get('name')}@{c.get('version')}" for c in caps})
        out.echo()
        out.print(out.text(f"Local capabilities ({len(names)})", "bold"))
        out.print("  " + (", ".join(names) if names else "none"))
        self._notes(out)
        _log_tails(out, self.doc.get("workers") or [])

    def _notes(self, out: Output) -> None:
        notes = self.doc.get("notes") or []
        if not notes:
            return
        out.echo()
        out.print(out.text("Notes", "bold"))
        for note in notes:
            first, *rest = str(note).rstrip().splitlines() or [""]
            out.print(out.text(f"  ! {first}", "yellow"))
            for line in rest:
                out.print(out.text(f"      {line}", "dim"))
            if first.startswith("llm") and "backend" in first and "[[llm.backends]]" not in note:
                # The node named the problem but not the fix: show the config snippet.
                from hearthnet.config import LLM_BACKEND_SNIPPET

                out.print(f"    add a backend to {self.config_file or 'config.toml'}, for example:")
                for line in (self.backend_snippet or LLM_BACKEND_SNIPPET).rstrip().splitlines():
                    out.print(out.text(f"      {line}", "dim"))


def _emergency(out: Output, em: dict[str, Any] | None) -> None:
    """The detector's mode, since when, and what it changes (README "Emergency detector")."""
    if not em:
        out.print(out.text("Internet   ", "bold"), out.text("unknown (the emergency worker is not running)", "dim"))
        return
    mode = str(em.get("mode"))
    style = {"online": "green", "degraded": "yellow", "offline": "red"}.get(mode, "")
    fx, applied = em.get("effects") or {}, em.get("applied") or {}
    failing = [p.get("target") for p in em.get("probes") or [] if not p.get("ok") and p.get("deciding")]
    peers = em.get("peers_reachable")
    out.print(out.text("Internet   ", "bold"), out.text(mode, style),
              out.text(f"  since {em.get('since')}" + ("  (flap hold)" if em.get("flap_hold") else "")
                       + (f"  failing: {', '.join(map(str, failing))}" if failing else "")
                       + f"  peers reachable: {peers if peers is not None else '?'}", "dim"))
    if mode == "offline":
        sync = applied.get("sync_interval_seconds", fx.get("sync_interval_seconds"))
        out.print(out.text("  outage   ", "bold"), out.text(
            f"sync every {sync:g} s; LLM internet backends {fx.get('llm_internet_backends')}; "
            f"file transfers over {int(fx.get('big_file_bytes') or 0) >> 20} MiB yield to small ones", "yellow"))


def _blob_store(out: Output, store: dict[str, Any] | None) -> None:
    """The file worker's file.status: what the store holds and how full its disk is."""
    if not store:
        return
    from hearthnet.units import size_text as human_size

    pinned, incomplete = store.get("pinned", 0), int(store.get("blobs") or 0) - int(store.get("complete") or 0)
    extra = f"{pinned} pinned" + (f", {incomplete} incomplete" if incomplete > 0 else "")
    out.print(out.text("Blob store ", "bold"),
              out.text(f"{store.get('complete', 0)} file(s), {human_size(int(store.get('store_bytes') or 0))} "
                       f"({extra})"),
              out.text(f"  {human_size(int(store.get('free_bytes') or 0))} free of "
                       f"{human_size(int(store.get('capacity_bytes') or 0))} "
                       f"({float(store.get('fraction') or 0) * 100:.0f} % used)", "dim"))


def _peers(out: Output, peers: list[dict[str, Any]], discovery: dict[str, Any]) -> None:
    """Peers with how each was found and the last sync; or, when none, why not."""
    out.print(out.text(f"Peers ({len(peers)})", "bold"))
    if not peers:
        for reason in discovery.get("diagnose") or ["discovery is not running"]:
            out.print(out.text(f"  - {reason}", "yellow"))
        return
    for p in peers:
        last = p.get("last_sync") or {}
        sync = ("never" if not last else
                f"{'ok' if last.get('ok') else 'failed'} (sent {last.get('sent', 0)}, "
                f"received {last.get('received', 0)})")
        ep = p.get("endpoint") or {}
        out.print(f"  {p.get('display_name') or '?'}  {p.get('node_id_short') or ''}  "
                  f"{ep.get('host')}:{ep.get('port')}  found by {p.get('source')}  last sync {sync}")


def _workers_table(out: Output, workers: list[dict[str, Any]]) -> None:
    rows = []
    for w in workers:
        state = str(w.get("state", "?"))
        style = _STATE_STYLE.get(state, "dim")
        label = state
        if state == "RUNNING" and w.get("healthy") is False:
            label, style = "RUNNING (no heartbeat)", "yellow"
        hb = w.get("last_heartbeat_ms_ago")
        rows.append([
            w.get("name"), out.text(label, style), w.get("pid"), render.duration(w.get("uptime_seconds")),
            w.get("restarts", 0), "-" if hb is None else f"{hb / 1000:.1f}s ago",
            w.get("in_flight", 0), w.get("served", 0), w.get("errors", 0), _first_line(w.get("note")),
        ])
    columns = ["worker", "state", "pid", "uptime", "restarts", "last hb", "in-flight", "served", "errors", "note"]
    out.table(columns, rows, title="Workers", right=("pid", "restarts", "in-flight", "served", "errors"))


def _first_line(text: str | None, limit: int = 48) -> str:
    """Notes can carry a whole config snippet; the table shows their first line."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    line = line.split(" — ")[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _log_tails(out: Output, workers: list[dict[str, Any]]) -> None:
    for w in workers:
        tail = w.get("log_tail") or []
        if w.get("state") in _SHOW_LOG_TAIL and tail:
            out.echo()
            out.print(out.text(f"{w.get('name')} is {w.get('state')}; last log lines:", "red"))
            for line in tail:
                out.print(f"    {line}")
            out.print(out.text(f"    (more: hearthnet log --component {w.get('name')})", "dim"))


def _check_shape(doc: dict[str, Any]) -> None:
    from hearthnet.errors import HearthNetError

    problems = [k for k, t in (("node", dict), ("workers", list), ("capabilities", list)) if not isinstance(doc.get(k), t)]
    if problems:
        raise HearthNetError("bad_response", f"the node's status lacks {', '.join(problems)}; is it a HearthNet node?")


def fetch_status() -> StatusResult:
    from hearthnet.localapi import LocalApi

    # The running node is found through its run dir: config.toml is not read (fast).
    doc = LocalApi.for_running_node().get("/api/v1/status")
    _check_shape(doc)
    return StatusResult(doc, config_file=str(doc["node"].get("config_file") or ""))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the node's status document as JSON.")
@click.pass_obj
def cli(state: "CliState", as_json: bool) -> None:
    """Show this node: identity, community, worker health, capabilities, notes.

    Exit 0 if the node answered, 3 if no node is running, 1 on a bad answer.
    """
    boundary.run(fetch_status, as_json=as_json, state=state)
