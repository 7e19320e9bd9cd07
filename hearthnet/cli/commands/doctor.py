"""`hearthnet doctor`: self-diagnostics with a fix for every failure (hearthnet.doctor)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.doctor import CheckResult

_MARK = {
    "ok": ("✔", {"fg": "green"}),
    "fail": ("✘", {"fg": "red"}),
    "crashed": ("✘", {"fg": "red", "bold": True}),
    "warn": ("⚠", {"fg": "yellow"}),
    "skipped": ("-", {"dim": True}),
}


@dataclass
class DoctorResult:
    checks: list["CheckResult"]

    @property
    def exit_code(self) -> int:
        from hearthnet.doctor import exit_code

        return exit_code(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.exit_code == 0, "checks": [c.to_dict() for c in self.checks]}

    def human(self, out: Output) -> None:
        width = max((len(c.name) for c in self.checks), default=0)
        for c in self.checks:
            mark, style = _MARK[c.status]
            first_line, *more = c.detail.splitlines() or [""]
            out.echo(f"{out.style(mark, **style)}  {c.name:<{width}}  {first_line}")
            for line in more:
                out.echo(f"   {'':<{width}}  {line}")
            if c.fix and c.status in ("fail", "warn", "crashed"):
                first, *rest = c.fix.splitlines()
                out.echo(f"   {'':<{width}}  → fix: {first}")
                for line in rest:
                    out.echo(f"   {'':<{width}}         {line}".rstrip())


def complete_check(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from hearthnet.doctor import check_names

    return [n for n in check_names() if n.startswith(incomplete)]


def run_doctor(config_path: Path | None, only: str | None) -> DoctorResult:
    from hearthnet.doctor import diagnose

    return DoctorResult(diagnose(config_path, only))


def run_mesh(state: "CliState", timeout: float, out: Output, show_progress: bool) -> Any:
    """`--mesh`: every member's signed health summary (hearthnet.meshdoctor)."""
    from hearthnet.meshdoctor import mesh_doctor

    api = state.api()
    if not show_progress or not out.err_console.is_terminal:
        return mesh_doctor(api, timeout=timeout)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=out.err_console, transient=True) as bar:
        def factory(total: int) -> Any:
            task = bar.add_task("asking members", total=total)
            return lambda res: bar.update(task, advance=1, description=f"heard {res.member.display_name or '?'}: "
                                                                         f"{res.state.replace('_', ' ')}")

        return mesh_doctor(api, timeout=timeout, progress_factory=factory)


@click.command("doctor")
@click.option("--check", "only", metavar="NAME", shell_complete=complete_check, help="Run only this check.")
@click.option("--mesh", is_flag=True, help="Ask every member for its signed health summary; one table.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=5.0, show_default=True,
              help="With --mesh: seconds to wait for each member.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"ok\", \"checks\": [...]} as JSON.")
@click.pass_obj
def cli(state: "CliState", only: str | None, mesh: bool, timeout: float, as_json: bool) -> None:
    """Check keys, community, config, ports, disk, LLM backends and, if the node runs,
    its workers and recent errors. Works without a running node.

    With --mesh (needs a running node): ask every member of the community for its
    signed health summary (node.health) and print who is up, their version, online
    state, sync lag and failing checks with the fix; a summary that does not verify is
    shown as "unverified", members that did not answer as "not heard from".

    Exit 0 if all pass (skips and warnings included), 1 if any fails (--mesh: any member
    unverified, not heard from or with a failing check), 2 if doctor itself crashed or
    the check name is unknown, 3 (--mesh) no running node.
    """
    if mesh and only:
        raise click.UsageError("--check and --mesh do not go together")
    if mesh:
        out = Output()
        boundary.run(lambda: run_mesh(state, timeout, out, not as_json), as_json=as_json, state=state, out=out)
    boundary.run(lambda: run_doctor(state.config_path, only), as_json=as_json, state=state)
