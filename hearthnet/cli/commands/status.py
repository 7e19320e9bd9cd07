"""`hearthnet status`: this node, its community, per-worker health, local capabilities."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.config import Config


@dataclass
class StatusResult:
    """The node's `GET /api/v1/status` document; `--json` prints it unchanged."""

    doc: dict[str, Any]
    config_file: str = ""
    backend_snippet: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def human(self, out: Output) -> None:
        # The one renderer, shared with the fast path (hearthnet.fastcli): same bytes.
        from hearthnet import statusview

        out.write(statusview.render(self.doc, styles=statusview.wants_style(out.out),
                                    config_file=self.config_file, backend_snippet=self.backend_snippet))


def _check_shape(doc: dict[str, Any]) -> None:
    from hearthnet.errors import HearthNetError
    from hearthnet.statusview import shape_problems

    if problems := shape_problems(doc):
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
