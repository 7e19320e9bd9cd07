"""`hearthnet bundle export|import|have|verify`: sneakernet bundles, a directory on a USB
stick that carries log events and files between nodes that never share a network
(hearthnet/bundles/ does the work; README "Sneakernet bundles")."""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.render import Output
from hearthnet.units import size_text as human_size

if TYPE_CHECKING:
    from hearthnet.bundles.export import ExportResult
    from hearthnet.bundles.importer import ImportResult
    from hearthnet.bundles.verify import VerifiedBundle
    from hearthnet.cli.state import CliState

Tick = Callable[[str, int, int], None]
MAX_PIECE_BYTES = 4 * 1024 ** 3 - 1  # FAT32
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
STAGES = {"verify": "verifying", "events": "events", "blobs": "files"}


# --------------------------------------------------------------------------- results




def _short(node_id: str | None) -> str:
    from hearthnet.cli.render import short_node_id

    return short_node_id(node_id)


def _cid(cid: str) -> str:
    return cid.split(":", 1)[-1][:16]


@dataclass
class ExportCommandResult:
    result: "ExportResult"

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def human(self, out: Output) -> None:
        d = self.to_dict()
        since = d["since"]
        out.echo(f"Wrote a bundle to {d['out']} ({human_size(d['bytes'])}).")
        skipped = f", {d['events']['skipped']} the receiver has" if since else ""
        out.echo(f"  events: {d['events']['count']}{skipped}")
        out.echo(f"  files: {len(d['blobs'])}" + (f", {len(d['blobs_skipped'])} the receiver has" if since else ""))
        if d["blobs"]:
            out.table(["cid", "name", "size", "pieces"],
                      [[_cid(b["cid"]), b["filename"] or "", human_size(b["size_bytes"]), b["pieces"]]
                       for b in d["blobs"]], right=("size", "pieces"))
        for note in d["ignored_summaries"]:
            out.echo(out.style("note:", fg="yellow") + f" ignored have summary {note}")
        out.echo("Import it on the other node with `hearthnet bundle import DIR`; its summary then lets "
                 "`bundle export --since DIR` carry only what it lacks.")


@dataclass
class ImportCommandResult:
    result: "ImportResult"

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def human(self, out: Output) -> None:
        d = self.to_dict()
        e = d["events"]
        out.echo(f"Imported the bundle of {_short(d['exporter'])} made {d['created_at']}:")
        out.echo(f"  events: {e['accepted']} added, {e['duplicates']} already here, {e['rejected']} refused "
                 f"(of {e['in_bundle']})")
        for r in e["rejected_reasons"][:10]:
            out.echo(f"    refused {r.get('event_id')}: {r.get('reason')}")
        if e["rejected"] > 10:
            out.echo(f"    … and {e['rejected'] - 10} more (--json lists them)")
        if d["blobs"]:
            out.echo(f"  files: {d['blobs_added']} added, {len(d['blobs']) - d['blobs_added']} already here")
            out.table(["cid", "name", "size", ""],
                      [[_cid(b["cid"]), b["filename"] or "", human_size(b["size_bytes"]),
                        "added" if b["added"] else "already here"] for b in d["blobs"]], right=("size",))
        if d["have"]:
            out.echo(f"Wrote what this node has to {d['have']}.")
        elif d["have_error"]:
            out.echo(out.style("note:", fg="yellow") + f" {d['have_error']}")


@dataclass
class HaveResult:
    path: Path
    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "node_id": self.doc["node_id"], "community_id": self.doc["community_id"],
                "created_at": self.doc["created_at"], "head": self.doc["head"],
                "event_count": self.doc["event_count"], "blobs": len(self.doc["blobs"])}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        out.echo(f"Wrote {d['path']}: {d['event_count']} events (head {d['head']}), {d['blobs']} files.")


@dataclass
class VerifyCommandResult:
    bundle: "VerifiedBundle"

    def to_dict(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {"valid": True, "bundle": str(self.bundle.root), "exporter": m.exporter,
                "exporter_level": self.bundle.exporter_level, "community_id": m.community_id,
                "created_at": m.created_at, "events": m.events.count, "since": m.since,
                "blobs": [{"cid": b.manifest.cid, "filename": b.manifest.filename,
                           "size_bytes": b.manifest.size_bytes, "pieces": len(b.pieces)} for b in m.blobs],
                "bytes": self.bundle.total_bytes}

    def human(self, out: Output) -> None:
        d = self.to_dict()
        who = _short(d["exporter"]) + (f" ({d['exporter_level']})" if d["exporter_level"] else "")
        out.echo(out.style("✔", fg="green") + f"  valid bundle of {who}, made {d['created_at']}: {d['events']} "
                 f"events, {len(d['blobs'])} files, {human_size(d['bytes'])}; signature and every hash check out")


# --------------------------------------------------------------------------- progress


@contextmanager
def progress_bars(out: Output, enabled: bool) -> Iterator[Tick | None]:
    """Rich bars on stderr (one per stage, with rate and ETA) at a terminal; else nothing."""
    if not enabled or not out.err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description:<10}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=out.err_console) as bar:
        tasks: dict[str, tuple[Any, float]] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = (bar.add_task(STAGES.get(stage, stage), total=total, amount="", rate=""),
                                time.monotonic())
            task, t0 = tasks[stage]
            elapsed = max(time.monotonic() - t0, 1e-3)
            if stage == "events":
                amount, rate = f"{done}/{total}", f"{done / elapsed:,.0f}/s"
            else:
                amount, rate = f"{human_size(done)}/{human_size(total)}", f"{human_size(int(done / elapsed))}/s"
            bar.update(task, completed=done, total=total, amount=amount, rate=rate)

        yield tick


# --------------------------------------------------------------------------- logic


def _local(cfg: Any) -> Any:
    from hearthnet.bundles.node import LocalNode
    from hearthnet.localapi import LocalApi

    return LocalNode(LocalApi.for_running_node(cfg.paths))


def _node(state: "CliState") -> tuple[Any, Any, Any, str]:
    """(config, device key, local API client, community id) of the running node."""
    from hearthnet.errors import HearthNetError
    from hearthnet.identity import keys

    cfg = state.config()
    if not cfg.community.community_id:
        raise HearthNetError("not_found", "this node has no community yet, so it has nothing to bundle",
                             hint="run `hearthnet init` or redeem an invite first")
    kp = keys.load(cfg.identity.keys_dir)
    return cfg, kp, _local(cfg), cfg.community.community_id


def _store(cfg: Any, node: Any) -> Any:
    from hearthnet.bundles.node import blob_view

    return blob_view(cfg.file.blobs_dir, node)


def parse_size(text: str) -> int:
    """`2G`, `512M`, `100000`: binary units; 1 byte .. 4 GiB - 1 (FAT32)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 2G, 700M, 100000)")
    n = int(match.group(1)) * _UNITS.get((match.group(2) or " ")[0].lower(), 1)
    if not 1 <= n <= MAX_PIECE_BYTES:
        raise click.BadParameter(f"the piece size must be 1 byte .. {MAX_PIECE_BYTES} (FAT32 holds no file of 4 GiB)")
    return n


def do_export(state: "CliState", *, out_dir: Path, since: str | None, cids: tuple[str, ...], pinned: bool,
              no_blobs: bool, force: bool, piece_size: int, out: Output, show_progress: bool) -> ExportCommandResult:
    from hearthnet.bundles.export import ExportOptions, export_bundle

    cfg, kp, node, community_id = _node(state)
    wanted = [c.strip() for group in cids for c in group.split(",") if c.strip()] or None
    opts = ExportOptions(out=out_dir, since=since, cids=wanted, pinned_only=pinned, no_blobs=no_blobs,
                         force=force, piece_size=piece_size)
    with progress_bars(out, show_progress) as tick:
        return ExportCommandResult(export_bundle(node, _store(cfg, node), kp, community_id, opts, tick))


def do_import(state: "CliState", *, bundle_dir: Path, write_have: bool, out: Output,
              show_progress: bool) -> ImportCommandResult:
    from hearthnet.bundles.format import read_bundle_doc
    from hearthnet.bundles.importer import import_bundle

    read_bundle_doc(bundle_dir)  # a wrong path is the first thing to say (exit 2, with the path)
    cfg, kp, node, community_id = _node(state)
    with progress_bars(out, show_progress) as tick:
        return ImportCommandResult(import_bundle(bundle_dir, node, community_id=community_id, kp=kp,
                                                 store=_store(cfg, node), write_summary=write_have, progress=tick))


def do_have(state: "CliState", *, bundle_dir: Path) -> HaveResult:
    from hearthnet.bundles.summary import build_have, write_have
    from hearthnet.errors import HearthNetError

    if not bundle_dir.is_dir():
        raise HearthNetError("usage", f"{bundle_dir} is not a directory")
    cfg, kp, node, community_id = _node(state)
    doc = build_have(node, _store(cfg, node), kp, community_id)
    return HaveResult(write_have(bundle_dir, doc), doc)


def do_verify(state: "CliState", *, bundle_dir: Path, out: Output, show_progress: bool) -> VerifyCommandResult:
    """Signature and every hash; membership too when this node runs (else skipped)."""
    from hearthnet.bundles.verify import verify_bundle
    from hearthnet.errors import NodeNotRunning

    cfg = state.config()
    community_id, members = cfg.community.community_id, None
    if community_id:
        try:
            members = _local(cfg).call("community.members.get", {})
        except NodeNotRunning:
            pass  # offline: signature and hashes only
    with progress_bars(out, show_progress) as tick:
        verified = verify_bundle(bundle_dir, community_id=community_id, members=members,
                                 progress=None if tick is None else lambda d, t: tick("verify", d, t))
    return VerifyCommandResult(verified)


# --------------------------------------------------------------------------- click


@click.group("bundle")
def cli() -> None:
    """Sneakernet bundles: carry log events and files on a USB stick between nodes that
    never share a network."""


@cli.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The bundle directory to write (e.g. on the stick).")
@click.option("--since", metavar="BUNDLE_OR_HAVE",
              help="Carry only what the receiver lacks: a bundle dir (its have/ summaries, else what it carried), "
                   "a have summary file, or a lamport number.")
@click.option("--cids", multiple=True, metavar="CID[,CID...]",
              help="Only these files (manifest CIDs; repeat or comma-separate). Default: every file this node "
                   "holds complete.")
@click.option("--pinned", is_flag=True, help="Only the files pinned on this node.")
@click.option("--no-blobs", is_flag=True, help="Events only, no files.")
@click.option("--force", is_flag=True, help="Replace a bundle already in --out (have/ summaries are kept).")
@click.option("--piece-size", default="2G", show_default=True, metavar="SIZE",
              help="Split files into pieces of at most this size (FAT32: under 4G).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def export_cmd(state: "CliState", out_dir: Path, since: str | None, cids: tuple[str, ...], pinned: bool,
               no_blobs: bool, force: bool, piece_size: str, as_json: bool) -> None:
    """Write a signed bundle of this node's log events and files to a directory.

    The node must be running. Exit 0 on success, 1 for an unknown CID, 2 for bad
    arguments or an existing bundle without --force, 3 if no node runs, 5 if the stick
    is full.
    """
    if cids and (pinned or no_blobs):
        raise click.UsageError("--cids names the files; it cannot be combined with --pinned or --no-blobs")
    size = parse_size(piece_size)
    out = Output()
    boundary.run(lambda: do_export(state, out_dir=out_dir, since=since, cids=cids, pinned=pinned, no_blobs=no_blobs,
                                   force=force, piece_size=size, out=out, show_progress=not as_json),
                 as_json=as_json, state=state, out=out)


@cli.command("import")
@click.argument("bundle_dir", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--no-have", is_flag=True, help="Do not write this node's have summary into DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def import_cmd(state: "CliState", bundle_dir: Path, no_have: bool, as_json: bool) -> None:
    """Verify a bundle whole, then import its events and files into this node.

    Nothing is imported unless the signature, the exporter's membership and every hash
    check out. Importing a bundle again adds nothing. Exit 0 (events the ledger refuses
    are listed), 2 not a bundle or another community's, 3 no node, 4 forged, tampered
    or from a non-member, 5 no room for the files.
    """
    out = Output()
    boundary.run(lambda: do_import(state, bundle_dir=bundle_dir, write_have=not no_have, out=out,
                                   show_progress=not as_json),
                 as_json=as_json, state=state, out=out)


@cli.command("have")
@click.argument("bundle_dir", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def have_cmd(state: "CliState", bundle_dir: Path, as_json: bool) -> None:
    """Write what this node has (event ids, complete files) to DIR/have/<ID>.json, so the
    next `bundle export --since DIR` elsewhere carries only what this node lacks."""
    boundary.run(lambda: do_have(state, bundle_dir=bundle_dir), as_json=as_json, state=state)


@cli.command("verify")
@click.argument("bundle_dir", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def verify_cmd(state: "CliState", bundle_dir: Path, as_json: bool) -> None:
    """Check a bundle without importing it: signature and every hash (and, when this
    node runs, that the exporter is a member). Exit 0 valid, 2 not a bundle, 4 forged
    or tampered."""
    out = Output()
    boundary.run(lambda: do_verify(state, bundle_dir=bundle_dir, out=out, show_progress=not as_json),
                 as_json=as_json, state=state, out=out)
