"""The one renderer: every command returns a result object, and this module prints it.

A result has `to_dict()` (its `--json` keys) and `human(out)` (what a person sees, drawn
on `out`, an `Output`). A result may also have `write_json(out)` when its JSON form is a
stream (the log prints JSON Lines) and an `exit_code` attribute when success is not 0
(doctor).

Every `--json` document has one shape, the envelope (README "JSON output"), printed with
sorted keys and indent 2:
  a result  {"ok": <exit code is 0>, "schema_version": 1, ...the result's own keys}
  an error  {"ok": false, "schema_version": 1, "error": {"code", "message", "hint"}}
The result's keys stay flat beside `ok` so that a script reading `doc["checks"]` keeps
working. Streams (JSON Lines: `log`, `call --stream`, `watch`) print one object per
record or frame, without the envelope; an error ends them with the error envelope.

Rich is imported only when a human table is drawn, never for `--json` or errors.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

import click

from hearthnet.units import cell as _cell
from hearthnet.units import duration, short_node_id  # noqa: F401  (the CLI's formatters, click-free)

if TYPE_CHECKING:
    from rich.console import Console


class Result(Protocol):
    def to_dict(self) -> dict[str, Any]: ...

    def human(self, out: "Output") -> None: ...


@dataclass
class Notice:
    """What a write command reports: the node's answer for --json, one line for people."""

    doc: dict[str, Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def human(self, out: "Output") -> None:
        out.echo(self.message)


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str)


class Output:
    """stdout/stderr for one command run. Tests can pass their own streams."""

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        # Resolved at call time so click's CliRunner (which swaps sys.stdout) works.
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self._console: "Console | None" = None
        self._err_console: "Console | None" = None
        # True while stdout holds streamed text not yet ended by a newline.
        self.partial_line = False
        # True once stdout holds JSON Lines: an error then ends the stream as one line too.
        self.json_lines = False

    # plain text -------------------------------------------------------------------------
    def echo(self, text: str = "", *, err: bool = False, nl: bool = True) -> None:
        click.echo(text, file=self.err if err else self.out, nl=nl)
        if not err and (nl or text):
            self.partial_line = not nl and not text.endswith("\n")

    def write(self, text: str, *, err: bool = False) -> None:
        """Write without a newline and flush at once (streamed tokens)."""
        stream = self.err if err else self.out
        stream.write(text)
        stream.flush()
        if not err and text:
            self.partial_line = not text.endswith("\n")

    def style(self, text: str, **styles: Any) -> str:
        return click.style(text, **styles)

    def json(self, doc: Any) -> None:
        self.echo(dumps(doc))

    def json_line(self, doc: Any, *, err: bool = False) -> None:
        self.echo(json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str), err=err)
        self.json_lines = self.json_lines or not err
        (self.err if err else self.out).flush()

    # rich -------------------------------------------------------------------------------
    @property
    def console(self) -> "Console":
        if self._console is None:
            from rich.console import Console

            isatty = getattr(self.out, "isatty", lambda: False)()
            # Piped output keeps whole rows instead of folding them at 80 columns.
            self._console = Console(
                file=self.out, highlight=False, soft_wrap=False, width=None if isatty else 200
            )
        return self._console

    @property
    def err_console(self) -> "Console":
        """For prompts and progress: keeps stdout for the result (and for --json)."""
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(file=self.err, highlight=False, soft_wrap=False)
        return self._err_console

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        title: str | None = None,
        right: Iterable[str] = (),
    ) -> None:
        from rich.table import Table
        from rich.text import Text

        right_set = set(right)
        table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
        for name in columns:
            # Fold rather than "…": ids and paths must stay whole to be copied.
            table.add_column(name, justify="right" if name in right_set else "left", overflow="fold")
        for row in rows:
            table.add_row(*[cell if isinstance(cell, Text) else Text(_cell(cell)) for cell in row])
        self.console.print(table)

    def text(self, text: str, style: str | None = None) -> Any:
        """A rich Text cell/line (never parsed as markup)."""
        from rich.text import Text

        return Text(text, style=style or "")

    def print(self, *parts: Any, style: str | None = None) -> None:
        """Print literally (no markup parsing) through the rich console."""
        from rich.text import Text

        self.console.print(*[Text(p) if isinstance(p, str) else p for p in parts], style=style, sep="")


# The version of the envelope below (not of any one command's keys): bumped only if
# `ok`, `schema_version` or `error` change meaning.
SCHEMA_VERSION = 1
ENVELOPE_KEYS = ("ok", "schema_version")


def envelope(doc: dict[str, Any], *, exit_code: int = 0) -> dict[str, Any]:
    """A result's `--json` document: `ok` (the command exits 0) and `schema_version` beside
    the result's own keys. A result that reports a failure in its own keys (doctor's
    failing check, export --verify of a damaged file) has `ok: false` and no `error`."""
    if not isinstance(doc, dict):
        raise TypeError(f"a --json result must be a JSON object, not {type(doc).__name__}")
    return {**doc, "ok": exit_code == 0, "schema_version": SCHEMA_VERSION}


def error_envelope(code: str, message: str, hint: str | None) -> dict[str, Any]:
    return {"ok": False, "schema_version": SCHEMA_VERSION,
            "error": {"code": code, "message": message, "hint": hint}}


def emit(result: Any, *, as_json: bool, out: Output) -> None:
    """Print a command's result for a person or as JSON."""
    if as_json:
        writer = getattr(result, "write_json", None)
        if writer is not None:
            writer(out)
        else:
            out.json(envelope(result.to_dict(), exit_code=int(getattr(result, "exit_code", 0))))
    else:
        result.human(out)


def error(code: str, message: str, hint: str | None, *, as_json: bool, out: Output) -> None:
    """Print an error: `Error: ...` (+ hint) on stderr, or the JSON envelope on stdout."""
    if as_json:
        doc = error_envelope(code, message, hint)
        out.json_line(doc) if getattr(out, "json_lines", False) else out.json(doc)
        return
    from hearthnet.errors import HTTP_STATUS

    if code in HTTP_STATUS and code != "internal_error":  # name the contract code
        message = f"{message} ({code})"
    out.echo(out.style("Error:", fg="red", bold=True) + " " + message, err=True)
    if hint:
        out.echo(out.style("hint:", fg="yellow") + " " + hint, err=True)


# ------------------------------------------------------------------------- formatting


def ms(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
