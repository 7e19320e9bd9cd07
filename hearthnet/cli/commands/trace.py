"""`hearthnet trace recent [N]`: the newest entries of the node's call trace ring buffer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary, render
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.config import Config


@dataclass
class TraceResult:
    traces: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"traces": self.traces}

    def human(self, out: Output) -> None:
        if not self.traces:
            out.echo("no calls traced yet")
            return
        rows = []
        for t in self.traces:
            result = str(t.get("result", "?"))
            tokens = "-" if t.get("tokens_in") is None and t.get("tokens_out") is None else (
                f"{t.get('tokens_in') or 0}/{t.get('tokens_out') or 0}")
            rows.append([
                _time(t.get("ts")), t.get("trace_id"), f"{t.get('capability')}@{t.get('version')}",
                render.short_node_id(t.get("caller")), t.get("route"), t.get("worker"),
                out.text(result, "green" if result == "ok" else "red"), render.ms(t.get("ms")), tokens,
                "yes" if t.get("redispatched") else "",
            ])
        columns = ["time (UTC)", "trace", "capability", "caller", "route", "worker", "result", "ms", "tok in/out", "redispatched"]
        out.table(columns, rows, right=("ms", "tok in/out"))


def _time(ts: Any) -> str:
    """The UTC time of day (recent calls are from today): 08:14:22.281."""
    if isinstance(ts, (int, float)):
        import time

        return time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}"
    text = str(ts or "-")
    _, sep, rest = text.partition("T")
    return rest.rstrip("Z") if sep else text


def recent_traces(n: int, capability: str | None) -> TraceResult:
    from hearthnet.errors import HearthNetError
    from hearthnet.localapi import LocalApi

    doc = LocalApi.for_running_node().get("/api/v1/traces", {"n": n, "capability": capability})
    traces = doc.get("traces")
    if not isinstance(traces, list):
        raise HearthNetError("bad_response", "the node's trace list is missing")
    return TraceResult([t for t in traces if isinstance(t, dict)][-n:])


@click.group("trace")
def cli() -> None:
    """Inspect the node's recent capability calls."""


@cli.command("recent")
@click.argument("n", default=20, type=click.IntRange(1, 10_000))
@click.option("--capability", metavar="NAME", help="Only calls of this capability.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"traces\": [...]} as JSON.")
@click.pass_obj
def recent(state: "CliState", n: int, capability: str | None, as_json: bool) -> None:
    """Show the last N calls (default 20), oldest first: route, worker, result, time."""
    boundary.run(lambda: recent_traces(n, capability), as_json=as_json, state=state)
