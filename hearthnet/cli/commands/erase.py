"""`hearthnet erase`: stop the node and delete its local state, after asking three times
(hearthnet.erase does the work; this module asks and shows)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.commands.export import human_size as size
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.erase import ErasePlan, EraseResult

_STATUS_STYLE = {"removed": "green", "kept": "yellow", "absent": "dim", "failed": "red"}


@dataclass
class EraseCommandResult:
    result: "EraseResult"

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def human(self, out: Output) -> None:
        r = self.result
        if not r.erased:
            out.echo("Nothing to erase: this node has no data here.")
            return
        s = r.stop
        if s.running:
            extra = f"; killed {', '.join(map(str, s.killed))}" if s.killed else ""
            out.echo(f"Stopped the running node ({s.signalled} PID {s.signalled_pid}) in {s.seconds:.1f} s{extra}.")
        rows = []
        for step in r.steps:
            status = out.text(step.status if not step.error else f"failed: {step.error}",
                              _STATUS_STYLE.get(step.status, ""))
            rows.append([step.step, status, size(step.bytes) if step.status == "removed" else "-",
                         str(step.path)])
        out.table(["what", "status", "size", "path"], rows, right=("size",))
        config = {"deleted": "deleted", "updated": "kept, community settings removed",
                  "absent": "absent", "failed": f"failed: {r.config_error}"}[r.config_status]
        out.echo(f"config.toml: {config} ({r.config_file})")
        if r.leftovers:
            out.echo("Not touched (not part of the erase):")
            for path in r.leftovers:
                out.echo(f"  {path}")
        out.echo(f"Erased {size(r.bytes_removed)}. Run `hearthnet init` to start again.")


class RichConfirm:
    """Questions on stderr (stdout keeps the result, so `--json` stays parseable)."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def __call__(self, text: str) -> bool:
        from rich.prompt import Confirm

        return Confirm.ask(self.out.text(text), console=self.out.err_console, default=False)


def show_plan(plan: "ErasePlan", out: Output) -> None:
    sizes = plan.sizes()
    out.echo("hearthnet erase will stop the node (if it runs) and delete:", err=True)
    for t in plan.targets:
        if t.keep:
            out.echo(f"  keep    {t.step:<12} {t.path}  ({t.keep_flag})", err=True)
        elif t.path in sizes:
            out.echo(f"  delete  {t.step:<12} {t.path}  ({size(sizes[t.path])})", err=True)
    action = "remove community_id and name from" if plan.keep_keys else "delete"
    if plan.config_file.exists():
        out.echo(f"  and {action} {plan.config_file}", err=True)


def erase(state: "CliState", *, keep_keys: bool, keep_blobs: bool, keep_logs: bool, yes: bool,
          out: Output) -> EraseCommandResult:
    from hearthnet.erase import erase_node, plan_erase

    plan = plan_erase(state.config(), keep_keys=keep_keys, keep_blobs=keep_blobs, keep_logs=keep_logs)
    if not yes and not plan.nothing_to_do:
        show_plan(plan, out)  # what the three questions are about
    return EraseCommandResult(erase_node(plan, confirm=None if yes else RichConfirm(out)))


@click.command("erase")
@click.option("--keep-keys", is_flag=True, help="Keep the device key (and TLS files): rejoin later as the same node.")
@click.option("--keep-blobs", is_flag=True, help="Keep stored files (<DATA>/blobs).")
@click.option("--keep-logs", is_flag=True, help="Keep the logs.")
@click.option("--yes", is_flag=True, help="Do not ask (scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@click.pass_obj
def cli(state: "CliState", keep_keys: bool, keep_blobs: bool, keep_logs: bool, yes: bool, as_json: bool) -> None:
    """Stop this node and erase its local data: communities, events, stored files,
    caches, logs, device key and config.toml. Asks three times unless --yes.

    Exit 0 when erased, 2 if you abort (nothing is removed), 1 on error.
    """
    out = Output()
    boundary.run(lambda: erase(state, keep_keys=keep_keys, keep_blobs=keep_blobs, keep_logs=keep_logs,
                               yes=yes, out=out),
                 as_json=as_json, state=state, out=out)
