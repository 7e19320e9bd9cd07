"""`hearthnet bundle export`: write a bundle of the running node's log events and blobs.

Events come from the ledger over the local API (`community.log.ids`, then
`community.log.events` by id, 2 000 at a time, in replay order). Blobs are read from
the node's blob store on disk, read-only (StoreReader), every chunk verified as it is
read. Which blobs: `--cids` names them; otherwise every blob the node holds complete
(`--pinned` only the pinned ones, `--no-blobs` none); either way minus those the
receiver is known to hold (`--since`).

Order of writing: bundle.json is removed first and written last (temp file + rename),
so a directory whose export was interrupted is never taken for a bundle.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import blake3

from hearthnet.blobs.cids import BlobError, check_cid
from hearthnet.bundles.format import (BLOBS_DIR, BUNDLE_FILE, EVENTS_FILE, PIECE_RE, PIECE_SIZE_BYTES, BundleBlob,
                                      BundleError, BundleManifest, EventsEntry)
from hearthnet.bundles.node import BlobView, NodeClient
from hearthnet.bundles.pieces import write_blob
from hearthnet.bundles.summary import Known, known_from
from hearthnet.errors import HearthNetError
from hearthnet.fsutil import fsync_dir
from hearthnet.identity.keys import KeyPair
from hearthnet.identity.manifest import rfc3339

EVENT_BATCH = 2000  # ids per community.log.events call: ~1 MB of JSON
Progress = Callable[[str, int, int], None]  # (stage, done, total): stage "events" | "blobs" (bytes)


@dataclass
class ExportOptions:
    out: Path
    since: str | None = None
    cids: list[str] | None = None
    pinned_only: bool = False
    no_blobs: bool = False
    force: bool = False
    piece_size: int = PIECE_SIZE_BYTES


@dataclass
class ExportResult:
    out: Path
    manifest: BundleManifest
    events_skipped: int
    blobs_skipped: list[str]
    bytes: int
    ignored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "out": str(self.out), "community_id": m.community_id, "exporter": m.exporter,
            "created_at": m.created_at, "since": m.since, "bytes": self.bytes,
            "events": {"count": m.events.count, "skipped": self.events_skipped, "hash": m.events.hash},
            "blobs": [{"cid": b.manifest.cid, "filename": b.manifest.filename, "size_bytes": b.manifest.size_bytes,
                       "pieces": len(b.pieces)} for b in m.blobs],
            "blobs_skipped": list(self.blobs_skipped), "ignored_summaries": list(self.ignored),
        }


def export_bundle(node: NodeClient, store: BlobView, kp: KeyPair, community_id: str,
                  opts: ExportOptions, progress: Progress | None = None) -> ExportResult:
    if opts.piece_size < 1:
        raise HearthNetError("usage", "the piece size must be at least 1 byte")
    known = known_from(opts.since, community_id)  # before the out dir is touched: it may be the same dir
    blobs, skipped_blobs = _choose_blobs(store, opts, known)
    wanted, skipped = _event_ids(node, known)
    root = _prepare(opts.out, opts.force)
    events = _write_events(node, root, wanted, community_id, progress)
    written = _write_blobs(store, root, blobs, opts.piece_size, progress)
    manifest = BundleManifest(community_id, kp.node_id_full, rfc3339(datetime.now(timezone.utc)),
                              opts.piece_size, events, tuple(written), known.describe())
    _publish(root, manifest.signed(kp))
    total = events.size_bytes + sum(b.manifest.size_bytes for b in written)
    return ExportResult(root, manifest, skipped, skipped_blobs, total, known.ignored)


# --------------------------------------------------------------------------- what


def _requested(store: BlobView, opts: ExportOptions) -> list[str]:
    if opts.no_blobs:
        return []
    if opts.cids is not None:
        return list(dict.fromkeys(check_cid(c, "--cids") for c in opts.cids))
    if opts.pinned_only:
        return [c for c in store.pinned() if store.is_complete(c)]
    return store.complete_cids()


def _choose_blobs(store: BlobView, opts: ExportOptions, known: Known) -> tuple[list[str], list[str]]:
    """(blobs to write, blobs left out because the receiver holds them)."""
    requested = _requested(store, opts)
    chosen = [c for c in requested if c not in known.blobs]
    for cid in chosen:  # a named blob we cannot carry whole is an error, before anything is written
        if not store.is_complete(cid):
            raise BlobError("not_found", f"blob {cid} is not complete in this node's store")
    return chosen, sorted(set(requested) & known.blobs)


def _event_ids(node: NodeClient, known: Known) -> tuple[list[str], int]:
    ids = node.call("community.log.ids", {"since_lamport": known.since_lamport}).get("ids")
    if not isinstance(ids, list):
        raise HearthNetError("bad_response", "community.log.ids answered without ids")
    wanted = [i for i in ids if i not in known.event_ids]
    return wanted, len(ids) - len(wanted)


# --------------------------------------------------------------------------- writing


def _prepare(out: Path, force: bool) -> Path:
    """The bundle dir, emptied of a previous bundle's files (only those: an --out on a
    stick's root must not lose anything else); have/ summaries stay."""
    root = Path(out).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise HearthNetError("usage", f"{root} exists and is not a directory")
    if (root / BUNDLE_FILE).exists():
        if not force:
            raise BundleError("bundle_exists", f"{root} already holds a bundle",
                              hint="pass --force to replace it (have/ summaries are kept), or choose another --out")
        (root / BUNDLE_FILE).unlink()  # first: a half-replaced bundle is no bundle
    if not root.parent.is_dir():  # a stick that is not mounted: never fill the local disk instead
        raise HearthNetError("usage", f"the folder {root.parent} does not exist")
    root.mkdir(exist_ok=True)
    (root / EVENTS_FILE).unlink(missing_ok=True)
    blobs = root / BLOBS_DIR
    if blobs.is_dir():  # pieces of an earlier or interrupted export, by their exact names
        for entry in blobs.iterdir():
            if PIECE_RE.match(f"{BLOBS_DIR}/{entry.name}") and entry.is_file():
                entry.unlink()
        if not any(blobs.iterdir()):
            blobs.rmdir()
    return root


def _write_events(node: NodeClient, root: Path, ids: list[str], community_id: str,
                  progress: Progress | None) -> EventsEntry:
    hasher, size, count = blake3.blake3(), 0, 0
    path = root / EVENTS_FILE
    with path.open("wb") as fh:
        for start in range(0, len(ids), EVENT_BATCH):
            batch = ids[start:start + EVENT_BATCH]
            events = node.call("community.log.events", {"ids": batch}).get("events")
            if not isinstance(events, list):
                raise HearthNetError("bad_response", "community.log.events answered without events")
            for ev in events:
                if ev.get("community_id") != community_id:
                    continue  # another community's log: never ours to carry
                line = json.dumps(ev, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                fh.write(line)
                hasher.update(line)
                size += len(line)
                count += 1
            if progress is not None:
                progress("events", min(start + len(batch), len(ids)), len(ids))
        fh.flush()
        os.fsync(fh.fileno())
    return EventsEntry(count, size, "blake3:" + hasher.hexdigest())


def _write_blobs(store: BlobView, root: Path, cids: list[str], piece_size: int,
                 progress: Progress | None) -> list[BundleBlob]:
    manifests = [store.manifest(cid) for cid in cids]
    total, done = sum(m.size_bytes for m in manifests), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress("blobs", done, total)

    out = []
    for manifest in manifests:
        pieces = write_blob(root, manifest.cid, store.chunks(manifest), piece_size, tick)
        out.append(BundleBlob(manifest, tuple(pieces)))
    return out


def _publish(root: Path, doc: dict[str, Any]) -> None:
    tmp = root / f".{BUNDLE_FILE}.tmp"
    with tmp.open("wb") as fh:
        fh.write(json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False).encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / BUNDLE_FILE)
    try:
        fsync_dir(root)
    except OSError:
        pass  # not every filesystem syncs a directory; the file itself is synced
