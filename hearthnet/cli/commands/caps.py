"""`hearthnet caps`: the capability entries this node can route to (local and remote)."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary, render
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.config import Config

_HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "quarantined": "red"}
_WILDCARDS = set("*?[")


@dataclass
class CapsResult:
    capabilities: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"capabilities": self.capabilities}

    def human(self, out: Output) -> None:
        if not self.capabilities:
            out.echo("no capabilities match")
            return
        rows = []
        for c in self.capabilities:
            health = str(c.get("health", "?"))
            node = render.short_node_id(c.get("node_id")) + (" (local)" if c.get("local") else "")
            rows.append([
                c.get("name"), c.get("version"), c.get("stability"), node, model_or_params(c.get("params")),
                out.text(health, _HEALTH_STYLE.get(health, "dim")), render.ms(c.get("p50_ms")),
                f"{c.get('in_flight', 0)}/{c.get('max_concurrent', '?')}",
            ])
        columns = ["name", "version", "stability", "node", "model/params", "health", "p50ms", "in_flight"]
        out.table(columns, rows, right=("p50ms", "in_flight"))


def model_or_params(params: Any, limit: int = 40) -> str:
    """The model a capability serves, else its params as k=v."""
    if not isinstance(params, dict) or not params:
        return "-"
    for key in ("model", "models"):
        value = params.get(key)
        if value:
            text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            return text if len(text) <= limit else text[: limit - 1] + "…"
    text = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def name_matches(name: str, pattern: str | None) -> bool:
    """fnmatch; a pattern without wildcards also matches its dotted children
    (`llm` matches `llm.chat`)."""
    if not pattern:
        return True
    if _WILDCARDS & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.startswith(pattern + ".")


def list_caps(*, local_only: bool = False, remote_only: bool = False, pattern: str | None = None) -> CapsResult:
    from hearthnet.errors import HearthNetError
    from hearthnet.localapi import LocalApi

    doc = LocalApi.for_running_node().get("/api/v1/capabilities")
    caps = doc.get("capabilities")
    if not isinstance(caps, list):
        raise HearthNetError("bad_response", "the node's capability list is missing")
    keep = [
        c for c in caps
        if isinstance(c, dict) and name_matches(str(c.get("name", "")), pattern)
        and not (local_only and not c.get("local")) and not (remote_only and c.get("local"))
    ]
    keep.sort(key=lambda c: (str(c.get("name")), str(c.get("version")), not c.get("local"), str(c.get("node_id"))))
    return CapsResult(keep)


@click.command("caps")
@click.option("--local-only", is_flag=True, help="Only capabilities served by this node.")
@click.option("--remote-only", is_flag=True, help="Only capabilities served by peers.")
@click.option("--name", "pattern", metavar="PATTERN", help="fnmatch pattern, e.g. 'llm.*' (a bare prefix such as 'llm' works too).")
@click.option("--json", "as_json", is_flag=True, help="Print {\"capabilities\": [...]} as JSON.")
@click.pass_obj
def cli(state: "CliState", local_only: bool, remote_only: bool, pattern: str | None, as_json: bool) -> None:
    """List capability entries: name, version, stability, node, model/params, health,
    p50 latency and in-flight calls."""
    if local_only and remote_only:
        raise click.UsageError("--local-only and --remote-only exclude each other")
    boundary.run(
        lambda: list_caps(local_only=local_only, remote_only=remote_only, pattern=pattern),
        as_json=as_json,
        state=state,
    )
