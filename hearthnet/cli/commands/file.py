"""`hearthnet file add|get|ls|pin|unpin|gc`: files in this node's blob store, through the
running node's file worker (file.add, file.get, file.ls, file.pin, file.unpin, file.gc;
see hearthnet/services/file/service.py and README "Files").

`add` and `get` stream `progress` frames, drawn as rich progress bars (rate, ETA) on
stderr for a person at a terminal; with --json there is no bar, only the result."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState
    from hearthnet.localapi import LocalApi

CID_HEX = 64
MIN_PREFIX = 4
Tick = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- results


def _size(n: Any) -> str:
    from hearthnet.units import size_text as human_size

    return human_size(int(n)) if isinstance(n, int) else "-"


def _short(cid: str) -> str:
    return cid.removeprefix("blake3:")[:16]


@dataclass
class AddResult:
    files: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files}

    def human(self, out: Output) -> None:
        for f in self.files:
            what = "added" if f["added"] else "already stored"
            pin = ", pinned" if f["pinned"] else ""
            out.echo(f"{what}: {f['path']}  ({_size(f['size_bytes'])}{pin})")
            out.echo(f"  {f['cid']}")


@dataclass
class GetResult:
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.doc

    def human(self, out: Output) -> None:
        d = self.doc
        name = d["filename"] or _short(d["cid"])
        if d["fetched"]:
            sources = ", ".join(f"{_node(n)} ({c} chunks)" for n, c in sorted(d["from"].items()))
            out.echo(f"fetched {name} ({_size(d['size_bytes'])}) in {d['ms'] / 1000:.1f} s from {sources}")
            if d.get("resumed_chunks"):
                out.echo(f"resumed: {d['resumed_chunks']} chunks were already here")
            for node in d.get("dropped") or []:
                out.echo(f"dropped {_node(node)} after {d['failures'].get(node, 0)} failures (bad or missing chunks)")
        else:
            out.echo(f"{name} ({_size(d['size_bytes'])}) is in this node's store")
        if d["out"]:
            out.echo(f"wrote {d['out']}")
        else:
            out.echo(f"write it out with: hearthnet file get {d['cid']} --out PATH")


@dataclass
class LsResult:
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.doc.get("files") or [], "usage": self.doc.get("usage") or {}}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        rows = [[_short(f["cid"]), f.get("filename") or "", _size(f.get("size_bytes")), f.get("pinned"),
                 "yes" if f.get("complete") else f"{f.get('chunks_missing')} chunks missing",
                 len(f.get("holders") or []), f.get("last_used") or ""] for f in d["files"]]
        if rows:
            out.table(["cid", "name", "size", "pinned", "complete", "holders", "last used"], rows,
                      right=("size", "holders"))
        else:
            out.echo("No files in this node's store yet (add one with `hearthnet file add PATH`).")
        u = d["usage"]
        if u:
            out.echo(f"\nstore {_size(u.get('store_bytes'))}; {_size(u.get('free_bytes'))} free of "
                     f"{_size(u.get('capacity_bytes'))} ({u.get('fraction', 0) * 100:.0f} % used)")


@dataclass
class PinResult:
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"cid": self.doc.get("cid"), "pinned": self.doc.get("pinned")}

    def human(self, out: Output) -> None:
        out.echo(f"{self.doc.get('cid')} {'pinned' if self.doc.get('pinned') else 'unpinned'}")


@dataclass
class GcResult:
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"freed_bytes": self.doc.get("freed_bytes", 0), "evicted": self.doc.get("evicted") or []}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        out.echo(f"freed {_size(d['freed_bytes'])}; evicted {len(d['evicted'])} file(s)")
        for cid in d["evicted"]:
            out.echo(f"  {cid}")


def _node(node_id: str) -> str:
    from hearthnet.cli.render import short_node_id

    return short_node_id(node_id)


# --------------------------------------------------------------------------- progress


@contextmanager
def progress_bar(out: Output, enabled: bool) -> Iterator[Callable[[str], Tick] | None]:
    """Rich bars (bytes, rate, ETA) on stderr for a person at a terminal; None otherwise.
    Yields `start(label)`, which opens one bar and returns its tick(progress frame)."""
    if not enabled or not out.err_console.is_terminal:
        yield None
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=out.err_console, transient=True) as bar:

        def start(label: str) -> Tick:
            task = bar.add_task(label, total=None)

            def tick(frame: dict[str, Any]) -> None:
                stage = frame.get("stage") or ""
                sources = f" ({frame['sources']} sources)" if frame.get("sources") else ""
                bar.update(task, description=f"{stage} {label}{sources}", completed=frame.get("current") or 0,
                           total=frame.get("total"))

            return tick

        yield start


# --------------------------------------------------------------------------- logic




def _stream(api: "LocalApi", cap: str, inp: dict[str, Any], tick: Tick | None) -> dict[str, Any]:
    """Follow a stream: progress frames to the bar, the `done` frame's data returned."""
    from hearthnet.errors import HearthNetError

    done: dict[str, Any] | None = None
    for event, data in api.call(cap, "1.0", {"params": {}, "input": inp}, stream=True):  # type: ignore[union-attr]
        if event == "progress" and tick is not None:
            tick(data)
        elif event == "done":
            done = data
        elif event == "response":  # the node answered without a stream
            done = data.get("output") if isinstance(data.get("output"), dict) else None
    if not isinstance(done, dict) or not done:
        raise HearthNetError("bad_response", f"the node's {cap} stream ended without a result")
    return done


def _local_paths(paths: tuple[Path, ...]) -> list[Path]:
    """Absolute paths of existing regular files, checked before anything is sent (exit 2)."""
    from hearthnet.errors import HearthNetError

    out = []
    for p in paths:
        full = Path(os.path.abspath(p.expanduser()))
        if not full.exists():
            raise HearthNetError("usage", f"{p} does not exist")
        if full.is_dir():
            raise HearthNetError("usage", f"{p} is a directory; add the files in it")
        if not full.is_file():
            raise HearthNetError("usage", f"{p} is not a regular file")
        out.append(full)
    return out


def add(state: "CliState", paths: tuple[Path, ...], *, pin: bool, show: bool, out: Output) -> AddResult:
    files = _local_paths(paths)
    api = state.api()
    result = AddResult()
    with progress_bar(out, show) as start:
        for path in files:
            done = _stream(api, "file.add", {"path": str(path), "pin": pin}, start(path.name) if start else None)
            m = done.get("manifest") or {}
            result.files.append({"path": str(path), "cid": m.get("cid"), "filename": m.get("filename"),
                                 "size_bytes": m.get("size_bytes"), "pinned": bool(done.get("pinned")),
                                 "added": bool(done.get("added"))})
    return result


def resolve_cid(api: "LocalApi", text: str) -> str:
    """A full CID as given; else a unique hex prefix (4+ digits) of a file in this store."""
    from hearthnet.errors import HearthNetError

    text = text.strip()
    hexed = text.removeprefix("blake3:")
    if len(hexed) == CID_HEX:
        return "blake3:" + hexed
    if len(hexed) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in hexed):
        raise HearthNetError("usage", f"{text!r} is not a CID (blake3: and 64 hex digits) or a prefix of "
                                      f"{MIN_PREFIX}+ hex digits of one")
    found = [f["cid"] for f in api.output("file.ls", {}).get("files") or [] if f["cid"][7:].startswith(hexed)]
    if len(found) > 1:
        raise HearthNetError("usage", f"{text!r} matches {len(found)} files; give more of the CID")
    if not found:
        raise HearthNetError("not_found", f"no file in this node's store starts with {text!r}",
                             hint="`hearthnet file ls` lists them; fetch another node's file by its full CID")
    return found[0]


def get(state: "CliState", cid: str, out_path: Path | None, *, show: bool, out: Output) -> GetResult:
    api = state.api()
    full = resolve_cid(api, cid)
    inp: dict[str, Any] = {"cid": full}
    if out_path is not None:
        inp["out"] = os.path.abspath(out_path.expanduser())
    with progress_bar(out, show) as start:
        done = _stream(api, "file.get", inp, start(_short(full)) if start else None)
    m = done.get("manifest") or {}
    sources = done.get("from") or {}
    return GetResult({"cid": m.get("cid", full), "filename": m.get("filename"), "size_bytes": m.get("size_bytes"),
                      "out": done.get("out"), "from": sources, "fetched": bool(sources),
                      "resumed_chunks": done.get("resumed_chunks", 0), "dropped": done.get("dropped") or [],
                      "failures": done.get("failures") or {}, "ms": done.get("ms", 0)})


def ls(state: "CliState") -> LsResult:
    return LsResult(state.api().output("file.ls", {}))


def pin(state: "CliState", cid: str, pinned: bool) -> PinResult:
    api = state.api()
    return PinResult(api.output("file.pin" if pinned else "file.unpin", {"cid": resolve_cid(api, cid)}))


def gc(state: "CliState") -> GcResult:
    return GcResult(state.api().output("file.gc", {}))


# --------------------------------------------------------------------------- commands

_EXITS = ("Exit 0 on success, 1 for an unknown CID (not_found), 2 for bad usage or a path that does not "
          "exist, 3 if no node runs, 4 if not allowed, 5 when the store is full (capacity_exceeded).")
_CID_HELP = "CID is a full manifest CID (blake3:<64 hex>) or, for a file already here, a unique prefix."


@click.group("file")
def cli() -> None:
    """Files in this node's blob store: add, fetch, list, pin, unpin, collect garbage."""


@cli.command("add", help=f"""Add files to this node's store (chunked, hashed, advertised to the
community). Each is addressed by its manifest CID. {_EXITS}""")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PATH...")
@click.option("--pin", is_flag=True, help="Pin them: garbage collection never removes a pinned file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {files: [{path, cid, filename, size_bytes, pinned, added}]}.")
@click.pass_obj
def add_cmd(state: "CliState", paths: tuple[Path, ...], pin: bool, as_json: bool) -> None:
    out = Output()
    boundary.run(lambda: add(state, paths, pin=pin, show=not as_json, out=out), as_json=as_json, state=state,
                 out=out)


@cli.command("get", help=f"""Fetch a file from the nodes that hold it (verified chunk by chunk,
from several at once) into this node's store, and write it to --out. {_CID_HELP} {_EXITS}""")
@click.argument("cid")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Write the file here (a folder gets the file's own name inside it).")
@click.option("--json", "as_json", is_flag=True,
              help="Print {cid, filename, size_bytes, out, from, fetched, resumed_chunks, dropped, failures, ms}.")
@click.pass_obj
def get_cmd(state: "CliState", cid: str, out_path: Path | None, as_json: bool) -> None:
    out = Output()
    boundary.run(lambda: get(state, cid, out_path, show=not as_json, out=out), as_json=as_json, state=state,
                 out=out)


@cli.command("ls")
@click.option("--json", "as_json", is_flag=True,
              help="Print {files: [{cid, filename, size_bytes, pinned, complete, chunks_missing, holders, "
                   "last_used}], usage}.")
@click.pass_obj
def ls_cmd(state: "CliState", as_json: bool) -> None:
    """List the files in this node's store: CID, name, size, pinned, complete, the other
    nodes known to hold each, and the store's usage."""
    boundary.run(lambda: ls(state), as_json=as_json, state=state)


@cli.command("pin", help=f"Keep a file: garbage collection never removes it. {_CID_HELP}")
@click.argument("cid")
@click.option("--json", "as_json", is_flag=True, help="Print {cid, pinned}.")
@click.pass_obj
def pin_cmd(state: "CliState", cid: str, as_json: bool) -> None:
    boundary.run(lambda: pin(state, cid, True), as_json=as_json, state=state)


@cli.command("unpin", help=f"Let garbage collection remove a file when room is needed. {_CID_HELP}")
@click.argument("cid")
@click.option("--json", "as_json", is_flag=True, help="Print {cid, pinned}.")
@click.pass_obj
def unpin_cmd(state: "CliState", cid: str, as_json: bool) -> None:
    boundary.run(lambda: pin(state, cid, False), as_json=as_json, state=state)


@cli.command("gc")
@click.option("--json", "as_json", is_flag=True, help="Print {freed_bytes, evicted}.")
@click.pass_obj
def gc_cmd(state: "CliState", as_json: bool) -> None:
    """Collect garbage: leftover chunks always; unpinned files, least recently used first,
    while the store is above file.gc_threshold of its disk (down to file.gc_target)."""
    boundary.run(lambda: gc(state), as_json=as_json, state=state)
