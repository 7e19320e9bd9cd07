"""`hearthnet log`: merge, filter and follow the node's log files (no node needed)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.logview import LogRecord

_LEVEL_STYLE = {"debug": {"dim": True}, "warning": {"fg": "yellow"}, "error": {"fg": "red"}, "critical": {"fg": "red", "bold": True}}
_SHOWN = {"ts", "level", "logger", "msg", "component", "exc", "source", "raw"}


def format_human(rec: "LogRecord") -> str:
    head = click.style(f"{rec.level.upper():<8}", **_LEVEL_STYLE.get(rec.level, {}))
    extras = " ".join(f"{k}={v}" for k, v in rec.doc.items() if k not in _SHOWN)
    if rec.raw:
        line = f"{rec.ts} {head} {rec.source:<10} | {rec.msg}"
    else:
        who = f"{rec.logger}: " if rec.logger and rec.logger != rec.source else ""
        line = f"{rec.ts} {head} {rec.source:<10} {who}{rec.msg}" + (f"  {extras}" if extras else "")
    exc = rec.doc.get("exc")
    if exc:
        line += "\n" + "\n".join("    " + part for part in str(exc).rstrip().splitlines())
    return line


def emit_record(out: Output, rec: "LogRecord", as_json: bool) -> None:
    if as_json:
        out.json_line(rec.to_dict())
    else:
        out.echo(format_human(rec))
        out.out.flush()


@dataclass
class LogResult:
    """Recent records. `--json` prints JSON Lines (one record per line, like the files
    and like `--follow --json`), so scripts read both modes the same way."""

    records: list["LogRecord"]
    log_dir: str

    def to_dict(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "records": [r.to_dict() for r in self.records]}

    def write_json(self, out: Output) -> None:
        for rec in self.records:
            emit_record(out, rec, True)

    def human(self, out: Output) -> None:
        if not self.records:
            out.echo(f"no matching log lines in {self.log_dir}", err=True)
        for rec in self.records:
            emit_record(out, rec, False)


def show_log(
    log_dir: Path,
    *,
    level: str | None,
    components: tuple[str, ...],
    lines: int,
    follow: bool,
    as_json: bool,
    out: Output,
    stop: threading.Event | None = None,
) -> LogResult | None:
    from hearthnet.logview import LogFilter, LogReader

    reader = LogReader(log_dir, LogFilter(min_level=level, components=components))
    try:
        recent = reader.start(lines)
        if not follow:
            return LogResult(recent, str(log_dir))
        if not reader.files():
            out.echo(f"waiting for log files in {log_dir} …", err=True)
        for rec in recent:
            emit_record(out, rec, as_json)
        try:
            reader.follow(lambda rec: emit_record(out, rec, as_json), stop=stop)
        except KeyboardInterrupt:
            return None  # Ctrl-C is how one leaves --follow: a normal end, exit 0
        return None
    finally:
        reader.close()


@click.command("log")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (like tail -F).")
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="Minimum level to show.")
@click.option("--component", "components", multiple=True, metavar="NAME",
              help="Only this component: a log file name (llm_00), its program (llm) or a logger name. Repeatable.")
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(min=0),
              help="How many recent lines to show first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def cli(state: "CliState", follow: bool, level: str | None, components: tuple[str, ...], lines: int, as_json: bool) -> None:
    """Show the node's logs, merged across components by time."""
    out = Output()
    boundary.run(
        lambda: show_log(state.config().paths.log_dir, level=level, components=components, lines=lines,
                         follow=follow, as_json=as_json, out=out),
        as_json=as_json,
        state=state,
        out=out,
    )
