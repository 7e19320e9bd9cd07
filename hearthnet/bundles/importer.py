"""`hearthnet bundle import`: verify a bundle whole, then hand its contents to the node.

Nothing is imported until `verify_bundle` has passed (signature, membership, every
hash, every chunk). Then:
* blobs go to the file worker's `file.put` (the owner's local call is trusted): first
  `{manifest}` -> `{needed}`, then the needed chunks, read from the pieces and checked
  against the manifest again, 16 a call. A blob the node holds already needs nothing.
  They go first because they are what can run out of room (capacity_exceeded): then no
  event has been ingested yet, and the blob that stopped resumes on the next import;
* events go to the ledger's `community.log.ingest` in batches of 2 000 (replay order),
  with the ledger's normal checks; what it refuses is reported with its reasons.
Both are idempotent, so importing the same bundle twice adds nothing the second time.
Last, unless told not to, the node writes its "what I have" summary into the bundle
directory (have/<SHORT-ID>.json) for the next export's `--since`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearthnet.blobs.cids import b64encode
from hearthnet.bundles.format import BundleBlob
from hearthnet.bundles.node import BlobView, NodeClient
from hearthnet.bundles.pieces import iter_chunks
from hearthnet.bundles.summary import build_have, write_have
from hearthnet.bundles.verify import VerifiedBundle, iter_events, verify_bundle
from hearthnet.errors import HearthNetError
from hearthnet.identity.keys import KeyPair

INGEST_BATCH = 2000  # events per community.log.ingest, as the sync rounds send them ...
INGEST_BATCH_BYTES = 8 * 1024 * 1024  # ... or fewer, well under the local API's 16 MiB body limit
PUT_BATCH = 16  # chunks per file.put call (the capability's limit)
MAX_REASONS = 1000  # refusals listed in the result (all are counted)
Progress = Callable[[str, int, int], None]  # (stage, done, total): "verify" / "blobs" bytes, "events" count


@dataclass
class BlobOutcome:
    cid: str
    filename: str | None
    size_bytes: int
    added: bool  # False: the node held it complete already
    chunks_sent: int
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        return {"cid": self.cid, "filename": self.filename, "size_bytes": self.size_bytes, "added": self.added,
                "chunks_sent": self.chunks_sent, "complete": self.complete}


@dataclass
class EventOutcome:
    in_bundle: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    rejected_reasons: list[dict[str, Any]] = field(default_factory=list)

    def add(self, reply: dict[str, Any]) -> None:
        self.accepted += int(reply.get("accepted") or 0)
        self.rejected += int(reply.get("rejected") or 0)
        self.duplicates += int(reply.get("duplicates") or 0)
        room = MAX_REASONS - len(self.rejected_reasons)
        self.rejected_reasons += list(reply.get("rejected_reasons") or [])[:max(room, 0)]

    def to_dict(self) -> dict[str, Any]:
        return {"in_bundle": self.in_bundle, "accepted": self.accepted, "rejected": self.rejected,
                "duplicates": self.duplicates, "rejected_reasons": list(self.rejected_reasons)}


@dataclass
class ImportResult:
    bundle: VerifiedBundle
    events: EventOutcome
    blobs: list[BlobOutcome]
    have: Path | None = None
    have_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {"bundle": str(self.bundle.root), "exporter": m.exporter, "exporter_level": self.bundle.exporter_level,
                "community_id": m.community_id, "created_at": m.created_at, "events": self.events.to_dict(),
                "blobs": [b.to_dict() for b in self.blobs], "blobs_added": sum(1 for b in self.blobs if b.added),
                "have": str(self.have) if self.have else None, "have_error": self.have_error}


def import_bundle(root: Path, node: NodeClient, *, community_id: str, kp: KeyPair, store: BlobView,
                  write_summary: bool = True, progress: Progress | None = None) -> ImportResult:
    members = node.call("community.members.get", {})
    verified = verify_bundle(root, community_id=community_id, members=members,
                             progress=None if progress is None else lambda d, t: progress("verify", d, t))
    if verified.manifest.blobs and "file.put" not in node.local_capabilities():
        raise HearthNetError("not_implemented", "the bundle holds files but this node runs no file worker "
                                                "(file.put); nothing was imported")
    blobs = _put_blobs(verified, node, progress)  # first: the part that can run out of room
    events = _ingest(verified, node, progress)
    result = ImportResult(verified, events, blobs)
    if write_summary:
        _summarise(result, node, store, kp, community_id)
    return result


def _ingest(bundle: VerifiedBundle, node: NodeClient, progress: Progress | None) -> EventOutcome:
    outcome, batch, size = EventOutcome(), [], 0
    total = bundle.manifest.events.count

    def grow(n: int) -> None:  # called with each line's length just before its event comes
        nonlocal size
        size += n

    def send() -> None:
        nonlocal size
        outcome.add(node.call("community.log.ingest", {"events": batch}))
        outcome.in_bundle += len(batch)
        batch.clear()
        size = 0
        if progress is not None:
            progress("events", outcome.in_bundle, total)

    for ev in iter_events(bundle.root, bundle.manifest, grow):
        batch.append(ev)
        if len(batch) >= INGEST_BATCH or size >= INGEST_BATCH_BYTES:
            send()
    if batch:
        send()
    return outcome


def _put_blobs(bundle: VerifiedBundle, node: NodeClient, progress: Progress | None) -> list[BlobOutcome]:
    total, done = sum(b.manifest.size_bytes for b in bundle.manifest.blobs), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress("blobs", done, total)

    return [_put_blob(bundle.root, blob, node, tick) for blob in bundle.manifest.blobs]


def _put_blob(root: Path, blob: BundleBlob, node: NodeClient, tick: Callable[[int], None]) -> BlobOutcome:
    m = blob.manifest
    needed = set(_needed(node.call("file.put", {"manifest": m.to_wire()})))
    outcome = BlobOutcome(m.cid, m.filename, m.size_bytes, bool(needed), 0, not needed)
    if not needed:
        tick(m.size_bytes)
        return outcome
    batch: list[dict[str, Any]] = []
    remaining = needed

    def send() -> None:
        nonlocal remaining
        remaining = set(_needed(node.call("file.put", {"manifest_cid": m.cid, "chunks": batch})))
        outcome.chunks_sent += len(batch)
        batch.clear()

    for i, data in iter_chunks(root, blob):
        if i in needed:
            batch.append({"i": i, "cid": m.chunks[i], "data_b64": b64encode(data)})
            if len(batch) >= PUT_BATCH:
                send()
        tick(len(data))
    if batch:
        send()
    outcome.complete = not remaining
    return outcome


def _needed(reply: dict[str, Any]) -> list[int]:
    needed = reply.get("needed")
    if not isinstance(needed, list) or not all(isinstance(i, int) for i in needed):
        raise HearthNetError("bad_response", "file.put answered without a list of needed chunks")
    return needed


def _summarise(result: ImportResult, node: NodeClient, store: BlobView, kp: KeyPair, community_id: str) -> None:
    """The importer's have/ summary in the bundle dir; a read-only stick is no failure."""
    try:
        result.have = write_have(result.bundle.root, build_have(node, store, kp, community_id))
    except OSError as exc:
        result.have_error = f"could not write the have summary: {exc.strerror or exc}"
