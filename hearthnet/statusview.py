"""`hearthnet status` for a person: the one renderer of the status document (GET
/api/v1/status) as plain text, with ANSI styles only on a terminal.

Both ways the command runs print with it: the fast path (hearthnet.fastcli, no click) and
the click command (hearthnet.cli.commands.status), so they print the same bytes for the
same document (tests/unit/test_fastcli.py). Standard library only and nothing heavy at
import: rich's Table alone costs the command more than the node takes to answer.

Styles: on a terminal (or with FORCE_COLOR), unless TERM is dumb; NO_COLOR keeps bold and
dim but drops the colours (no-color.org), as rich did before.
"""
from __future__ import annotations

import os

from hearthnet.units import cell, duration, short_node_id, size_text

TYPE_CHECKING = False  # not typing's: importing typing costs the fast path ~5 ms
if TYPE_CHECKING:
    from typing import IO, Any

_STATE_STYLE = {"RUNNING": "green", "STARTING": "yellow", "BACKOFF": "yellow", "FATAL": "red", "EXITED": "red"}
_SHOW_LOG_TAIL = ("FATAL", "BACKOFF")
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33"}
_COLOURS = ("red", "green", "yellow")
_COLUMNS = ("worker", "state", "pid", "uptime", "restarts", "last hb", "in-flight", "served", "errors", "note")
_RIGHT = frozenset({"pid", "restarts", "in-flight", "served", "errors"})
CAPS_WIDTH = 100  # the capabilities list wraps here (a fixed width: the same text anywhere)


def shape_problems(doc: object) -> list[str]:
    """The keys a status document lacks (or holds as the wrong type): not a HearthNet node."""
    if not isinstance(doc, dict):
        return ["node", "workers", "capabilities"]
    return [k for k, t in (("node", dict), ("workers", list), ("capabilities", list)) if not isinstance(doc.get(k), t)]


def wants_style(stream: "IO[str]", env: "dict[str, str] | os._Environ[str] | None" = None) -> str:
    """Which styles to write to `stream`: "all", "plain" (bold/dim, no colours) or ""."""
    env = os.environ if env is None else env
    if env.get("TERM", "") in ("dumb", "unknown") and not env.get("FORCE_COLOR"):
        return ""
    isatty = getattr(stream, "isatty", None)
    if not env.get("FORCE_COLOR") and not (isatty is not None and isatty()):
        return ""
    return "plain" if env.get("NO_COLOR") else "all"


class _Lines:
    """The text being built, and how to style it."""

    def __init__(self, styles: str) -> None:
        self.styles = styles
        self.lines: list[str] = []

    def s(self, text: str, style: str = "") -> str:
        codes = [_SGR[name] for name in style.split() if name in _SGR
                 and (self.styles == "all" or (self.styles == "plain" and name not in _COLOURS))]
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m" if codes and text else text

    def add(self, *parts: str) -> None:
        self.lines.append("".join(parts))


def render(doc: "dict[str, Any]", *, styles: str = "", config_file: str = "",
           backend_snippet: str = "") -> str:
    """The status document as text, every line ended by a newline."""
    o = _Lines(styles)
    node, comm = doc["node"], doc.get("community") or {}
    o.add(o.s("Node       ", "bold"),
          f"{node.get('display_name') or '(unnamed)'}  {node.get('node_id_short') or short_node_id(node.get('node_id'))}",
          o.s(f"  profile {node.get('profile') or '-'}  up {duration(node.get('uptime_seconds'))}  "
              f"hearthnet {node.get('version', '?')} (contract {node.get('contract_version', '?')})", "dim"))
    members = comm.get("member_count")
    o.add(o.s("Community  ", "bold"), f"{comm.get('name') or '-'}  {short_node_id(comm.get('community_id'))}",
          o.s(f"  {members if members is not None else '?'} member(s)", "dim"))
    o.add(o.s("In flight  ", "bold"), str(doc.get("in_flight", 0)))
    log_head = doc.get("event_log") or {}
    if log_head:
        o.add(o.s("Event log  ", "bold"), f"head {log_head.get('head')}  {log_head.get('count')} event(s)")
    _blob_store(o, doc.get("blob_store"))
    if "emergency" in doc:
        _emergency(o, doc["emergency"])
    o.add()
    _workers_table(o, doc.get("workers") or [])
    if "peers" in doc:
        o.add()
        _peers(o, doc.get("peers") or [], doc.get("discovery") or {})
    caps = [c for c in doc.get("capabilities") or [] if c.get("local", True)]
    names = sorted({f"{c.get('name')}@{c.get('version')}" for c in caps})
    o.add()
    o.add(o.s(f"Local capabilities ({len(names)})", "bold"))
    for line in _wrap(names) if names else ["none"]:
        o.add("  " + line)
    _notes(o, doc.get("notes") or [], config_file, backend_snippet)
    _log_tails(o, doc.get("workers") or [])
    return "".join(line + "\n" for line in o.lines)


def _wrap(names: list[str]) -> list[str]:
    """`a, b, c` in lines of at most CAPS_WIDTH (with the indent), broken after a comma."""
    lines, line = [], ""
    for name in names:
        if line and 2 + len(line) + 2 + len(name) + 1 > CAPS_WIDTH:
            lines.append(line + ",")
            line = name
        else:
            line = f"{line}, {name}" if line else name
    return [*lines, line]


def _notes(o: _Lines, notes: list[Any], config_file: str, backend_snippet: str) -> None:
    if not notes:
        return
    o.add()
    o.add(o.s("Notes", "bold"))
    for note in notes:
        first, *rest = str(note).rstrip().splitlines() or [""]
        o.add(o.s(f"  ! {first}", "yellow"))
        for line in rest:
            o.add(o.s(f"      {line}", "dim"))
        if first.startswith("llm") and "backend" in first and "[[llm.backends]]" not in str(note):
            # The node named the problem but not the fix: show the config snippet.
            if not backend_snippet:
                from hearthnet.config import LLM_BACKEND_SNIPPET as backend_snippet
            o.add(f"    add a backend to {config_file or 'config.toml'}, for example:")
            for line in backend_snippet.rstrip().splitlines():
                o.add(o.s(f"      {line}", "dim"))


def _emergency(o: _Lines, em: dict[str, Any] | None) -> None:
    """The detector's mode, since when, and what it changes (README "Emergency detector")."""
    if not em:
        o.add(o.s("Internet   ", "bold"), o.s("unknown (the emergency worker is not running)", "dim"))
        return
    mode = str(em.get("mode"))
    style = {"online": "green", "degraded": "yellow", "offline": "red"}.get(mode, "")
    fx, applied = em.get("effects") or {}, em.get("applied") or {}
    failing = [p.get("target") for p in em.get("probes") or [] if not p.get("ok") and p.get("deciding")]
    peers = em.get("peers_reachable")
    o.add(o.s("Internet   ", "bold"), o.s(mode, style),
          o.s(f"  since {em.get('since')}" + ("  (flap hold)" if em.get("flap_hold") else "")
              + (f"  failing: {', '.join(map(str, failing))}" if failing else "")
              + f"  peers reachable: {peers if peers is not None else '?'}", "dim"))
    if mode == "offline":
        sync = applied.get("sync_interval_seconds", fx.get("sync_interval_seconds"))
        o.add(o.s("  outage   ", "bold"), o.s(
            f"sync every {sync:g} s; LLM internet backends {fx.get('llm_internet_backends')}; "
            f"file transfers over {int(fx.get('big_file_bytes') or 0) >> 20} MiB yield to small ones", "yellow"))


def _blob_store(o: _Lines, store: dict[str, Any] | None) -> None:
    """The file worker's file.status: what the store holds and how full its disk is."""
    if not store:
        return
    pinned, incomplete = store.get("pinned", 0), int(store.get("blobs") or 0) - int(store.get("complete") or 0)
    extra = f"{pinned} pinned" + (f", {incomplete} incomplete" if incomplete > 0 else "")
    o.add(o.s("Blob store ", "bold"),
          f"{store.get('complete', 0)} file(s), {size_text(int(store.get('store_bytes') or 0))} ({extra})",
          o.s(f"  {size_text(int(store.get('free_bytes') or 0))} free of "
              f"{size_text(int(store.get('capacity_bytes') or 0))} "
              f"({float(store.get('fraction') or 0) * 100:.0f} % used)", "dim"))


def _peers(o: _Lines, peers: list[dict[str, Any]], discovery: dict[str, Any]) -> None:
    """Peers with how each was found and the last sync; or, when none, why not."""
    o.add(o.s(f"Peers ({len(peers)})", "bold"))
    if not peers:
        for reason in discovery.get("diagnose") or ["discovery is not running"]:
            o.add(o.s(f"  - {reason}", "yellow"))
        return
    for p in peers:
        last = p.get("last_sync") or {}
        sync = ("never" if not last else
                f"{'ok' if last.get('ok') else 'failed'} (sent {last.get('sent', 0)}, "
                f"received {last.get('received', 0)})")
        ep = p.get("endpoint") or {}
        o.add(f"  {p.get('display_name') or '?'}  {p.get('node_id_short') or ''}  "
              f"{ep.get('host')}:{ep.get('port')}  found by {p.get('source')}  last sync {sync}")


def _workers_table(o: _Lines, workers: list[dict[str, Any]]) -> None:
    """Columns two spaces apart, numbers right-aligned; cells are never cut (ids and
    names must stay whole to be copied), a long note only to its first line."""
    rows: list[list[tuple[str, str]]] = []
    for w in workers:
        state = str(w.get("state", "?"))
        style = _STATE_STYLE.get(state, "dim")
        label = state
        if state == "RUNNING" and w.get("healthy") is False:
            label, style = "RUNNING (no heartbeat)", "yellow"
        hb = w.get("last_heartbeat_ms_ago")
        cells = [w.get("name"), label, w.get("pid"), duration(w.get("uptime_seconds")), w.get("restarts", 0),
                 "-" if hb is None else f"{hb / 1000:.1f}s ago", w.get("in_flight", 0), w.get("served", 0),
                 w.get("errors", 0), _first_line(w.get("note"))]
        rows.append([(cell(c), style if i == 1 else "") for i, c in enumerate(cells)])
    widths = [max([len(name), *(len(row[i][0]) for row in rows)]) for i, name in enumerate(_COLUMNS)]
    o.add(o.s("Workers", "bold"))
    o.add(_row(o, [(name, "bold") for name in _COLUMNS], widths))
    for row in rows:
        o.add(_row(o, row, widths))


def _row(o: _Lines, cells: list[tuple[str, str]], widths: list[int]) -> str:
    out = []
    for (text, style), width, name in zip(cells, widths, _COLUMNS):
        pad = " " * (width - len(text))
        out.append(pad + o.s(text, style) if name in _RIGHT else o.s(text, style) + pad)
    return "  ".join(out).rstrip()


def _first_line(text: str | None, limit: int = 48) -> str:
    """Notes can carry a whole config snippet; the table shows their first line."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    line = line.split(" — ")[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _log_tails(o: _Lines, workers: list[dict[str, Any]]) -> None:
    for w in workers:
        tail = w.get("log_tail") or []
        if w.get("state") in _SHOW_LOG_TAIL and tail:
            o.add()
            o.add(o.s(f"{w.get('name')} is {w.get('state')}; last log lines:", "red"))
            for line in tail:
                o.add(f"    {line}")
            o.add(o.s(f"    (more: hearthnet log --component {w.get('name')})", "dim"))
