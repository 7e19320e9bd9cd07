"""Every check of a bundle, all of them done before anything is imported.

In order (cheap first, so a forged bundle costs no hashing of gigabytes):
1. bundle.json is a bundle manifest of a version we read (not_a_bundle, exit 2);
2. its signature verifies with the exporter's key (invalid_signature, exit 4);
3. its fields are well formed (not_a_bundle), it is for our community
   (community_mismatch, exit 2) and the exporter is a current member by our own ledger
   (`community.members.get`: revoked -> revoked, unknown -> unauthorized; exit 4);
4. events.jsonl and every piece have the sizes bundle.json gives (bundle_tampered, exit 4);
5. events.jsonl hashes to the signed hash, every line is an event whose signature
   verifies with its author's key (invalid_signature) — the ledger checks each again,
   with its membership rules, when it ingests them;
6. every piece hashes to its signed hash and every chunk of every blob to its CID in
   the blob manifest (bundle_tampered).
Files in the directory that bundle.json does not list are ignored (a stick collects
`.Trash-1000/`, `System Volume Information/` ...); they are never imported.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from hearthnet import jsonbound
from hearthnet.bundles.format import (EVENTS_FILE, BundleError, BundleManifest, check_signature, parse_manifest,
                                      read_bundle_doc, tampered)
from hearthnet.bundles.pieces import check_piece_files, check_regular_file, verify_blob
from hearthnet.ledger.events import verify_event_signature

EVENT_DEPTH = 64
MAX_EVENT_LINE = 16 * 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes checked, bytes to check)


@dataclass(frozen=True)
class VerifiedBundle:
    root: Path
    manifest: BundleManifest
    exporter_level: str | None  # None when membership was not checked (`bundle verify` offline)

    @property
    def total_bytes(self) -> int:
        return self.manifest.events.size_bytes + sum(b.manifest.size_bytes for b in self.manifest.blobs)


def verify_bundle(root: Path, *, community_id: str | None, members: dict[str, Any] | None,
                  progress: Progress | None = None) -> VerifiedBundle:
    """The bundle, proven intact and signed by a current member; BundleError (or
    HearthNetError unauthorized/revoked) otherwise. `members` is the answer of
    community.members.get; None skips the membership check (and community_id None the
    community check), for an offline `bundle verify`."""
    root = Path(root)
    doc = read_bundle_doc(root)
    check_signature(doc)
    manifest = parse_manifest(doc)
    if community_id is not None and manifest.community_id != community_id:
        raise BundleError("community_mismatch", f"the bundle is for community {manifest.community_id}, "
                                                f"not this node's {community_id}; nothing was imported")
    level = exporter_level(manifest.exporter, members) if members is not None else None
    _check_sizes(root, manifest)
    done, total = 0, manifest.events.size_bytes + sum(b.manifest.size_bytes for b in manifest.blobs)

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    _check_events_hash(root, manifest)  # first: an altered file is "tampered", whatever line it hits
    for _ in iter_events(root, manifest, tick):
        pass
    for blob in manifest.blobs:
        verify_blob(root, blob, tick)
    return VerifiedBundle(root, manifest, level)


def exporter_level(exporter: str, members: dict[str, Any]) -> str:
    """The exporter's level by our ledger; revoked / unauthorized when it is no member."""
    from hearthnet.errors import HearthNetError

    if any(isinstance(r, dict) and r.get("node_id") == exporter for r in members.get("revoked") or []):
        raise HearthNetError("revoked", f"the bundle was exported by {exporter}, whose membership was revoked; "
                                        f"nothing was imported")
    for m in members.get("members") or []:
        if isinstance(m, dict) and m.get("node_id") == exporter:
            return str(m.get("level") or "member")
    raise HearthNetError("unauthorized", f"the bundle was exported by {exporter}, who is not a member of this "
                                         f"community by this node's log; nothing was imported",
                         hint="a member who joined after this node last synced: import a bundle of a node "
                              "this node already knows first (it carries the join)")


def _check_sizes(root: Path, manifest: BundleManifest) -> None:
    check_regular_file(root / EVENTS_FILE, EVENTS_FILE, manifest.events.size_bytes)
    for blob in manifest.blobs:
        check_piece_files(root, blob)


def _check_events_hash(root: Path, manifest: BundleManifest) -> None:
    hasher = blake3.blake3()
    try:
        with (root / EVENTS_FILE).open("rb") as fh:
            while block := fh.read(1 << 20):
                hasher.update(block)
    except OSError:
        raise tampered(f"{EVENTS_FILE} cannot be read") from None
    if "blake3:" + hasher.hexdigest() != manifest.events.hash:
        raise tampered(f"{EVENTS_FILE} does not match its hash in bundle.json")


def iter_events(root: Path, manifest: BundleManifest,
                progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """The events of events.jsonl, each signature checked; the whole file's hash and
    count are checked when it ends (so a consumer that ingests as it reads must still
    reach the end: only then is the file proven to be the one that was signed)."""
    entry, hasher, count, seen = manifest.events, blake3.blake3(), 0, 0
    try:
        fh = (root / EVENTS_FILE).open("rb")
    except OSError:
        raise tampered(f"{EVENTS_FILE} is missing") from None
    with fh:
        while line := fh.readline(MAX_EVENT_LINE + 1):
            seen += len(line)
            if seen > entry.size_bytes or len(line) > MAX_EVENT_LINE or not line.endswith(b"\n"):
                raise tampered(f"{EVENTS_FILE} is not the file that was signed")
            hasher.update(line)
            count += 1
            if progress is not None:
                progress(len(line))
            yield _event(line, count)
    if seen != entry.size_bytes or "blake3:" + hasher.hexdigest() != entry.hash or count != entry.count:
        raise tampered(f"{EVENTS_FILE} does not match its hash in bundle.json")


def _event(line: bytes, number: int) -> dict[str, Any]:
    try:
        ev = jsonbound.loads(line, EVENT_DEPTH)
    except ValueError:
        raise tampered(f"line {number} of {EVENTS_FILE} is not JSON") from None
    if not isinstance(ev, dict):
        raise tampered(f"line {number} of {EVENTS_FILE} is not an event")
    if not verify_event_signature(ev):
        raise BundleError("invalid_signature", f"event {ev.get('event_id')!r} (line {number} of {EVENTS_FILE}) "
                                               f"is not signed by its author; nothing was imported")
    return ev
