"""`hearthnet export`: everything this node holds about you, as one signed ZIP, and
`hearthnet export --verify` to check one (hearthnet.export does the work)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from hearthnet.cli import boundary, render
from hearthnet.cli.render import Output
from hearthnet.units import size_text as human_size

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.export import ExportResult, Progress, VerifyResult


@dataclass
class ExportCommandResult:
    result: "ExportResult"

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def human(self, out: Output) -> None:
        r = self.result
        out.print(out.text("Wrote ", "bold"), str(r.path),
                  out.text(f"  ({human_size(r.bytes)}, signed by {render.short_node_id(r.node_id)})", "dim"))
        c = r.counts
        out.print(f"  {c.get('events', 0)} event(s) you wrote, {c.get('chat', 0)} chat message(s), "
                  f"{c.get('market', 0)} market post(s), {c.get('files', 0)} pinned file(s); settings without secrets")
        out.print(out.text(f"  check it with: hearthnet export --verify {r.path}", "dim"))


@dataclass
class VerifyCommandResult:
    result: "VerifyResult"

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def human(self, out: Output) -> None:
        r = self.result
        who = f"node {render.short_node_id(r.node_id)}, created {r.created_at}"
        if r.valid:
            out.echo(out.style("✔", fg="green") + f"  valid export of {who}: signature and "
                     f"{len(r.files)} file hash(es) check out")
            return
        out.echo(out.style("✘", fg="red", bold=True) + f"  NOT a valid export of {who}:")
        for problem in r.problems:
            out.echo(f"   - {problem}")




@contextmanager
def progress_bar(out: Output, enabled: bool) -> Iterator["Progress | None"]:
    """A rich progress bar on stderr for people at a terminal; nothing otherwise."""
    if not enabled or not out.err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=out.err_console, transient=True) as bar:
        task = bar.add_task("exporting", total=None)

        def tick(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        yield tick


def export(state: "CliState", *, out_path: Path | None, force: bool, show_progress: bool,
           out: Output) -> ExportCommandResult:
    from hearthnet.export import build_export, resolve_out_path

    cfg = state.config()
    target = resolve_out_path(out_path, force=force)
    with progress_bar(out, show_progress) as tick:
        return ExportCommandResult(build_export(cfg, target, force=force, progress=tick))


def verify(path: Path) -> VerifyCommandResult:
    from hearthnet.export import verify_export

    return VerifyCommandResult(verify_export(path))


@click.command("export")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Where to write the ZIP (default ~/hearthnet-export-<YYYY-MM-DD>.zip; a folder gets that name inside).")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option("--verify", "verify_path", type=click.Path(path_type=Path), metavar="PATH",
              help="Check an export's signature and hashes instead of writing one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def cli(state: "CliState", out_path: Path | None, force: bool, verify_path: Path | None, as_json: bool) -> None:
    """Export your data from this node (GDPR): a signed ZIP with the node manifest, the
    community manifest, the events you wrote, your chat messages, market posts and pinned
    files, and your settings without secrets. It never contains a private key or token.

    Exit 0 on success. With --verify: 0 valid, 4 bad signature or hash, 2 not an export.
    """
    if verify_path is not None and (out_path is not None or force):
        raise click.UsageError("--verify checks a file; it cannot be combined with --out or --force")
    out = Output()
    if verify_path is not None:
        body = lambda: verify(verify_path)  # noqa: E731
    else:
        body = lambda: export(state, out_path=out_path, force=force, show_progress=not as_json, out=out)  # noqa: E731
    boundary.run(body, as_json=as_json, state=state, out=out)
