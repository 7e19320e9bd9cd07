"""The bundle layout and its signed manifest (format version 1).

    <DIR>/bundle.json               the bundle manifest, signed by the exporting node
    <DIR>/events.jsonl              signed log envelopes, replay order, one a line
    <DIR>/blobs/<hex>.partNNN       a blob's bytes split into pieces (<hex> = the 64 hex
                                    digits of its manifest CID), concatenated in order
    <DIR>/have/<SHORT-ID>.json      optional "what I have" summaries (summary.py)

Every name is FAT32-safe (no ':'; short ASCII) and no piece is over `piece_size_bytes`
(2 GiB by default; FAT32 refuses files of 4 GiB). `cat blobs/<hex>.part*` gives the file.

bundle.json (canonical JSON is what is signed: every field but `signature`):

    {format: "hearthnet-bundle", format_version: 1, community_id, exporter, created_at,
     piece_size_bytes, since: {kind, ...} | null,
     events: {file: "events.jsonl", count, size_bytes, hash: "blake3:<hex>"},
     blobs: [{manifest: <wire manifest>, pieces: [{name, size_bytes, hash}]}],
     signature: "ed25519:<b64url>"}    # by the exporter's device key (its node id)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearthnet import jsonbound
from hearthnet.blobs.cids import CID_PREFIX, BlobError
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.errors import EXIT_AUTH, EXIT_USAGE, HearthNetError, exit_code_for
from hearthnet.identity.keys import KeyPair, parse_node_id, verify_payload_with_node_id

FORMAT = "hearthnet-bundle"
FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
EVENTS_FILE = "events.jsonl"
BLOBS_DIR = "blobs"
HAVE_DIR = "have"
PIECE_SIZE_BYTES = 2 * 1024 ** 3  # FAT32: a file holds at most 4 GiB - 1
MAX_PIECES = 100_000  # per blob; bounds what a bundle.json can make us track
MAX_BUNDLE_JSON_BYTES = 512 * 1024 * 1024  # a 1 TiB blob's chunk list is ~330 MB of JSON
JSON_DEPTH = 16
PIECE_RE = re.compile(r"^blobs/[0-9a-f]{64}\.part[0-9]{3,6}$")
HASH_RE = re.compile(r"^blake3:[0-9a-f]{64}$")
_RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

# Local codes and their exit codes: a malformed bundle or the wrong one is a usage
# problem (2); anything that does not match what the exporter signed is a failed
# signature check (4), as for `hearthnet export --verify`.
EXIT_FOR = {"not_a_bundle": EXIT_USAGE, "community_mismatch": EXIT_USAGE, "bundle_exists": EXIT_USAGE,
            "bundle_tampered": EXIT_AUTH, "invalid_signature": EXIT_AUTH}


class BundleError(HearthNetError):
    """A bundle that cannot be written, read or trusted; nothing was imported."""

    code = "not_a_bundle"

    @property
    def exit_code(self) -> int:
        return EXIT_FOR.get(self.code, exit_code_for(self.code))


def tampered(message: str) -> BundleError:
    return BundleError("bundle_tampered", f"{message}; the bundle was refused as a whole, nothing was imported")


def malformed(message: str) -> BundleError:
    return BundleError("not_a_bundle", message)


# --------------------------------------------------------------------------- names


def piece_name(manifest_cid: str, index: int) -> str:
    return f"{BLOBS_DIR}/{manifest_cid[len(CID_PREFIX):]}.part{index:03d}"


def have_name(node_id: str) -> str:
    """have/<ABCD-EFGH-IJKL-MNOP>.json: the short id without `ed25519:` (no ':' on FAT)."""
    from hearthnet.identity.keys import short_node_id

    return f"{HAVE_DIR}/{short_node_id(node_id).split(':', 1)[1]}.json"


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Piece:
    name: str
    size_bytes: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size_bytes": self.size_bytes, "hash": self.hash}


@dataclass(frozen=True)
class BundleBlob:
    manifest: BlobManifest
    pieces: tuple[Piece, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest.to_wire(), "pieces": [p.to_dict() for p in self.pieces]}


@dataclass(frozen=True)
class EventsEntry:
    count: int
    size_bytes: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": EVENTS_FILE, "count": self.count, "size_bytes": self.size_bytes, "hash": self.hash}


@dataclass(frozen=True)
class BundleManifest:
    community_id: str
    exporter: str
    created_at: str
    piece_size_bytes: int
    events: EventsEntry
    blobs: tuple[BundleBlob, ...]
    since: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "community_id": self.community_id,
                "exporter": self.exporter, "created_at": self.created_at,
                "piece_size_bytes": self.piece_size_bytes, "since": self.since,
                "events": self.events.to_dict(), "blobs": [b.to_dict() for b in self.blobs]}

    def signed(self, kp: KeyPair) -> dict[str, Any]:
        if kp.node_id_full != self.exporter:
            raise HearthNetError("internal_error", "a bundle is signed by its exporter")
        return kp.sign(self.body())


def read_bundle_doc(root: Path) -> dict[str, Any]:
    """bundle.json as a JSON object (bounded size and depth); not_a_bundle otherwise."""
    path = root / BUNDLE_FILE
    if not root.is_dir():
        raise malformed(f"{root} is not a directory")
    if path.exists() and not path.is_file():
        raise malformed(f"{path} is not a regular file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BUNDLE_JSON_BYTES + 1)
    except FileNotFoundError:
        raise malformed(f"{root} holds no {BUNDLE_FILE}: not a HearthNet bundle") from None
    except OSError as exc:
        raise malformed(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BUNDLE_JSON_BYTES:
        raise malformed(f"{path} is over {MAX_BUNDLE_JSON_BYTES} bytes")
    try:
        doc = jsonbound.loads(raw, JSON_DEPTH)
    except ValueError as exc:
        raise malformed(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise malformed(f"{path} is not a HearthNet bundle manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise malformed(f"{path} is bundle format version {doc.get('format_version')!r}; this node "
                        f"reads version {FORMAT_VERSION}")
    return doc


def check_signature(doc: dict[str, Any]) -> str:
    """The exporter's node id when its key signed `doc`; invalid_signature otherwise."""
    exporter = doc.get("exporter")
    try:
        parse_node_id(exporter)
    except HearthNetError:
        raise malformed("bundle.json names no valid exporter node id") from None
    if not verify_payload_with_node_id(doc, exporter):
        raise BundleError("invalid_signature", "bundle.json is not signed by the node it names as exporter "
                                               "(forged or altered); nothing was imported")
    return exporter


def parse_manifest(doc: dict[str, Any]) -> BundleManifest:
    """The checked fields of a (signature-checked) bundle.json; not_a_bundle on any
    shape problem: unsafe piece names, sizes that do not add up, duplicate blobs."""
    for key in ("community_id", "exporter"):
        try:
            parse_node_id(doc.get(key))
        except HearthNetError:
            raise malformed(f"bundle.json: {key} is not a full node id") from None
    if not isinstance(doc.get("created_at"), str) or not _RFC3339_RE.match(doc["created_at"]):
        raise malformed("bundle.json: created_at is not an RFC 3339 UTC time")
    piece_size = _int(doc.get("piece_size_bytes"), "piece_size_bytes", minimum=1)
    since = doc.get("since")
    if since is not None and not isinstance(since, dict):
        raise malformed("bundle.json: since must be an object or null")
    blobs = doc.get("blobs")
    if not isinstance(blobs, list):
        raise malformed("bundle.json: blobs must be a list")
    parsed = tuple(_blob(entry, n, piece_size) for n, entry in enumerate(blobs))
    if len({b.manifest.cid for b in parsed}) != len(parsed):
        raise malformed("bundle.json lists a blob twice")
    return BundleManifest(doc["community_id"], doc["exporter"], doc["created_at"], piece_size,
                          _events(doc.get("events")), parsed, since)


def _events(raw: Any) -> EventsEntry:
    if not isinstance(raw, dict) or raw.get("file") != EVENTS_FILE:
        raise malformed(f"bundle.json: events must name {EVENTS_FILE}")
    return EventsEntry(_int(raw.get("count"), "events.count"), _int(raw.get("size_bytes"), "events.size_bytes"),
                       _hash(raw.get("hash"), "events.hash"))


def _blob(raw: Any, n: int, piece_size: int) -> BundleBlob:
    if not isinstance(raw, dict):
        raise malformed(f"bundle.json: blobs[{n}] must be an object")
    try:
        manifest = BlobManifest.from_wire(raw.get("manifest"))
    except BlobError as exc:
        raise malformed(f"bundle.json: blobs[{n}].manifest: {exc.message}") from None
    pieces = raw.get("pieces")
    if not isinstance(pieces, list) or len(pieces) > MAX_PIECES:
        raise malformed(f"bundle.json: blobs[{n}].pieces must be a list")
    out = []
    for k, p in enumerate(pieces):
        where = f"blobs[{n}].pieces[{k}]"
        if not isinstance(p, dict) or p.get("name") != piece_name(manifest.cid, k) or not PIECE_RE.match(p["name"]):
            raise malformed(f"bundle.json: {where}.name must be {piece_name(manifest.cid, k)}")
        size = _int(p.get("size_bytes"), f"{where}.size_bytes", minimum=1)
        if size > piece_size:
            raise malformed(f"bundle.json: {where} is larger than piece_size_bytes")
        out.append(Piece(p["name"], size, _hash(p.get("hash"), f"{where}.hash")))
    if sum(p.size_bytes for p in out) != manifest.size_bytes:
        raise malformed(f"bundle.json: the pieces of blobs[{n}] do not add up to its size")
    return BundleBlob(manifest, tuple(out))


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise malformed(f"bundle.json: {what} must be an integer >= {minimum}")
    return value


def _hash(value: Any, what: str) -> str:
    if not isinstance(value, str) or not HASH_RE.match(value):
        raise malformed(f"bundle.json: {what} must be blake3: and 64 hex digits")
    return value
