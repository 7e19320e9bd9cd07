"""`hearthnet model`: give the node a model in one step (hearthnet.models does the work).

    model add FILE.gguf [--name N]          validate, write [[llm.backends]], restart only llm
    model add --ollama [URL] [--model M]    an Ollama server on this machine
    model add --llama-server [URL] [--model M]   a llama.cpp server on this machine
    model ls                                configured, served by the running node, detected
    model rm NAME [--delete-file]           the entry goes (the file stays unless asked)
    model pull NAME [--sha256 HEX]          download a catalogue model (online only), then add
    model catalogue                         the known small models
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.models.ops import Added, Listing, Removed


def _restart_line(doc: dict[str, Any], name: str, out: Output, *, added: bool = True) -> None:
    if not doc["node_running"]:
        out.echo("The node is not running; `hearthnet run` starts it with this model." if added
                 else "The node is not running.")
    elif doc["loaded"] is not added:
        out.echo(f"Restarted {', '.join(doc['restarted'])}, but the llm worker "
                 f"{'does not list' if added else 'still lists'} {name!r}: see `hearthnet status` "
                 "and `hearthnet log --component llm`.")
    else:
        out.echo(f"Restarted only {', '.join(doc['restarted'])}; the node serves: "
                 f"{', '.join(doc['serving']) or 'no model'}.")


@dataclass
class AddedResult:
    added: "Added"

    def to_dict(self) -> dict[str, Any]:
        return self.added.to_dict()

    def human(self, out: Output) -> None:
        a = self.added
        d = a.download
        if d is not None and d.get("already_present"):
            out.echo(f"Already downloaded (sha256 {d['sha256']} checked).")
        elif d is not None:
            resumed = f", resumed from byte {d['resumed_from']}" if d["resumed_from"] else ""
            retries = f", {d['attempts']} attempts" if d["attempts"] > 1 else ""
            out.echo(f"Downloaded {d['size']} bytes from {d['url']}{resumed}{retries}; sha256 {d['sha256']} ok.")
        if a.gguf is not None:
            g = a.gguf
            out.echo(f"{g.path}: GGUF v{g.version}, {g.architecture}, {g.tensor_count} tensors, "
                     f"context {g.context_length or 'unknown'}")
        if a.load_check is not None:
            out.echo(a.load_check.detail)
        where = a.entry.get("model_path") or a.entry.get("url")
        out.echo(f"Added model {a.name!r} ({a.entry['name']}: {where}) to {a.config_path}.")
        _restart_line(a.restart.to_dict(), a.name, out)


@dataclass
class RemovedResult:
    removed: "Removed"

    def to_dict(self) -> dict[str, Any]:
        return self.removed.to_dict()

    def human(self, out: Output) -> None:
        r = self.removed
        kept = r.entry.get("model_path")
        out.echo(f"Removed model {r.name!r} from {r.config_path}.")
        if r.deleted_file:
            out.echo(f"Deleted {r.deleted_file}.")
        elif kept:
            out.echo(f"The file {kept} is kept (--delete-file removes it).")
        _restart_line(r.restart.to_dict(), r.name, out, added=False)


@dataclass
class ListResult:
    listing: "Listing"

    def to_dict(self) -> dict[str, Any]:
        return self.listing.to_dict()

    def human(self, out: Output) -> None:
        ls = self.listing
        if ls.configured:
            serving = (lambda v: "-" if v is None else ("yes" if v else "NO"))
            out.table(["name", "backend", "where", "serving"],
                      [(c["name"], c["backend"], c["where"], serving(c["serving"])) for c in ls.configured])
        else:
            out.echo("No model configured. Add one: `hearthnet model add FILE.gguf` or "
                     "`hearthnet model pull NAME` (see `hearthnet model catalogue`).")
        if not ls.node_running:
            out.echo("(the node is not running: nothing is served now)")
        for d in ls.detected:
            out.echo(f"Detected: {d['kind']} at {d['url']} with {', '.join(d['models']) or 'no model'}; "
                     f"add it with `{d['add_command']}`")


@dataclass
class CatalogueResult:
    entries: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"models": self.entries}

    def human(self, out: Output) -> None:
        def size(e: dict[str, Any]) -> str:
            if e["size_bytes"]:
                return f"{e['size_bytes'] / 1e6:.0f} MB"
            return f"~{e['approx_mb']} MB" if e["approx_mb"] else "?"

        out.table(["name", "size", "license", "verified", "description"],
                  [(e["name"], size(e), e["license"], "yes" if e["verified"] else "no (--sha256)",
                    e["description"]) for e in self.entries], right=("size",))


# --------------------------------------------------------------------------- commands


@click.group("model")
def cli() -> None:
    """The node's LLM models: add a GGUF file or a local server, list, remove, pull."""


@cli.command("add")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="The model name the node serves it under (default: the file's stem).")
@click.option("--ollama", "server", flag_value="ollama", help="Add an Ollama server on this machine.")
@click.option("--llama-server", "server", flag_value="llama_server",
              help="Add a llama.cpp server (OpenAI API) on this machine.")
@click.option("--url", help="The server's URL (default: its usual loopback port).")
@click.option("--model", "model", help="The server's model to use (default: the first it lists).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def add_cmd(state: "CliState", path: Path | None, name: str | None, server: str | None,
            url: str | None, model: str | None, as_json: bool) -> None:
    """Validate PATH (a GGUF model file), add it to config.toml and restart only the llm
    worker of a running node. Or, with --ollama / --llama-server, add a server already
    running here.

    Exit 0 added, 2 not a whole GGUF file / an architecture llama.cpp cannot load / bad
    name (config.toml is then unchanged), 1 error.
    """
    if (path is None) == (server is None):
        raise click.UsageError("give a GGUF file, or --ollama / --llama-server (not both)")
    if server is None and (url or model):
        raise click.UsageError("--url and --model go with --ollama / --llama-server")

    def body() -> AddedResult:
        from hearthnet.models import ops

        cfg = state.config()
        if server is not None:
            return AddedResult(ops.add_server(cfg, server, url, model))
        assert path is not None
        return AddedResult(ops.add_file(cfg, path, name))

    boundary.run(body, as_json=as_json, state=state)


@cli.command("ls")
@click.option("--no-detect", is_flag=True, help="Do not look for local Ollama / llama.cpp servers.")
@click.option("--json", "as_json", is_flag=True, help="Print {configured, node_running, serving, detected}.")
@click.pass_obj
def ls_cmd(state: "CliState", no_detect: bool, as_json: bool) -> None:
    """The configured models, what the running node serves, and local servers not added yet."""
    def body() -> ListResult:
        from hearthnet.models import ops

        return ListResult(ops.listing(state.config(), detect_servers=not no_detect))

    boundary.run(body, as_json=as_json, state=state)


@cli.command("rm")
@click.argument("name")
@click.option("--delete-file", is_flag=True, help="Also delete the GGUF file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def rm_cmd(state: "CliState", name: str, delete_file: bool, as_json: bool) -> None:
    """Remove model NAME from config.toml and restart only the llm worker.

    Exit 0 removed, 1 no such model.
    """
    def body() -> RemovedResult:
        from hearthnet.models import ops

        return RemovedResult(ops.remove(state.config(), name, delete_file=delete_file))

    boundary.run(body, as_json=as_json, state=state)


@cli.command("catalogue")
@click.option("--json", "as_json", is_flag=True, help="Print {models: [...]}.")
@click.pass_obj
def catalogue_cmd(state: "CliState", as_json: bool) -> None:
    """Known small models `model pull` can download."""
    def body() -> CatalogueResult:
        from hearthnet.models import catalogue

        return CatalogueResult([e.to_dict() for e in catalogue.load(state.config())])

    boundary.run(body, as_json=as_json, state=state)


@cli.command("pull")
@click.argument("name")
@click.option("--sha256", help="The file's sha256, for an entry the catalogue has not verified.")
@click.option("--as", "as_name", help="The model name the node serves it under (default: NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
@click.pass_obj
def pull_cmd(state: "CliState", name: str, sha256: str | None, as_name: str | None, as_json: bool) -> None:
    """Download catalogue model NAME into <DATA>/models/ (online only; an interrupted
    download resumes), check its sha256, then add it like `model add`.

    Exit 0 added, 1 offline / download failed / checksum mismatch (the file is deleted),
    2 not in the catalogue's terms (no sha256) or not a loadable GGUF.
    """
    out = Output()

    def body() -> AddedResult:
        from hearthnet.models import ops

        cfg = state.config()
        if as_json:
            return AddedResult(ops.pull(cfg, name, sha256=sha256, as_name=as_name))
        with _progress(out, name) as progress:
            added = ops.pull(cfg, name, sha256=sha256, as_name=as_name, progress=progress)
        return AddedResult(added)

    boundary.run(body, as_json=as_json, state=state, out=out)


class _progress:
    """A rich progress bar on stderr, fed by the download's (done, total) callback."""

    def __init__(self, out: Output, name: str) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.bar = Progress("[bold]{task.description}", BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), console=out.err_console,
                            transient=True)
        self.task = self.bar.add_task(name, total=None)

    def __enter__(self) -> Any:
        self.bar.start()
        return self.update

    def update(self, done: int, total: int | None) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()
