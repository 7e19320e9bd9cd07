"""Blob manifests (spec §3.1; DESIGN.md: every file is addressed by its manifest CID).

The manifest CID is the BLAKE3 of the canonical JSON of exactly
`{"chunk_size_bytes", "chunks": [cid, ...], "size_bytes"}`; `mime_type` and `filename`
are advisory and not hashed. Wire form: `{cid, size_bytes, chunk_size_bytes,
chunks: [{i, cid}], mime_type, filename}`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, BlobError, check_cid, hash_bytes
from hearthnet.identity.canonical import canonical_json

MAX_BLOB_BYTES = 1 << 40  # 1 TiB: bounds the chunk list a peer can make us hold
MAX_NAME_CHARS = 255
MAX_MIME_CHARS = 127


def manifest_cid(chunks: list[str], size_bytes: int, chunk_size_bytes: int = CHUNK_SIZE_BYTES) -> str:
    return hash_bytes(canonical_json({"chunk_size_bytes": chunk_size_bytes, "chunks": list(chunks),
                                      "size_bytes": size_bytes}))


def chunk_count(size_bytes: int, chunk_size_bytes: int = CHUNK_SIZE_BYTES) -> int:
    return -(-size_bytes // chunk_size_bytes)


@dataclass(frozen=True)
class BlobManifest:
    cid: str
    size_bytes: int
    chunks: tuple[str, ...]
    chunk_size_bytes: int = CHUNK_SIZE_BYTES
    mime_type: str | None = None
    filename: str | None = field(default=None, compare=False)

    @classmethod
    def build(cls, chunks: list[str], size_bytes: int, *, mime_type: str | None = None,
              filename: str | None = None) -> "BlobManifest":
        return cls(manifest_cid(chunks, size_bytes), size_bytes, tuple(chunks), CHUNK_SIZE_BYTES,
                   mime_type, filename)

    def chunk_size(self, i: int) -> int:
        """Bytes in chunk `i` (the last one may be short)."""
        if i < len(self.chunks) - 1:
            return self.chunk_size_bytes
        return self.size_bytes - self.chunk_size_bytes * (len(self.chunks) - 1)

    def to_wire(self) -> dict[str, Any]:
        return {"cid": self.cid, "size_bytes": self.size_bytes, "chunk_size_bytes": self.chunk_size_bytes,
                "chunks": [{"i": i, "cid": c} for i, c in enumerate(self.chunks)],
                "mime_type": self.mime_type, "filename": self.filename}

    def with_names(self, *, filename: str | None, mime_type: str | None) -> "BlobManifest":
        return BlobManifest(self.cid, self.size_bytes, self.chunks, self.chunk_size_bytes,
                            mime_type or self.mime_type, filename or self.filename)

    @classmethod
    def from_wire(cls, doc: Any, expected_cid: str | None = None) -> "BlobManifest":
        """Checked: shapes, bounds, chunk count, and the CID recomputed (bad_request)."""
        if not isinstance(doc, dict):
            raise BlobError("bad_request", "manifest must be an object")
        size, csize = doc.get("size_bytes"), doc.get("chunk_size_bytes", CHUNK_SIZE_BYTES)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_BYTES:
            raise BlobError("bad_request", f"manifest.size_bytes must be an integer 0..{MAX_BLOB_BYTES}")
        if csize != CHUNK_SIZE_BYTES or isinstance(csize, bool):
            raise BlobError("bad_request", f"manifest.chunk_size_bytes must be {CHUNK_SIZE_BYTES}")
        chunks = _chunk_list(doc.get("chunks"))
        if len(chunks) != chunk_count(size):
            raise BlobError("bad_request", f"manifest lists {len(chunks)} chunks; {size} bytes need "
                                           f"{chunk_count(size)}")
        cid = manifest_cid(chunks, size)
        claimed = doc.get("cid", cid)
        if claimed != cid or (expected_cid is not None and expected_cid != cid):
            raise BlobError("bad_request", "the manifest does not hash to its CID")
        return cls(cid, size, tuple(chunks), CHUNK_SIZE_BYTES, _text(doc.get("mime_type"), MAX_MIME_CHARS),
                   _text(doc.get("filename"), MAX_NAME_CHARS))


def _chunk_list(raw: Any) -> list[str]:
    if not isinstance(raw, list) or len(raw) > chunk_count(MAX_BLOB_BYTES):
        raise BlobError("bad_request", "manifest.chunks must be a list")
    out = []
    for i, entry in enumerate(raw):
        if isinstance(entry, dict):  # wire form {i, cid}
            if entry.get("i", i) != i:
                raise BlobError("bad_request", f"manifest.chunks[{i}].i must be {i}")
            entry = entry.get("cid")
        out.append(check_cid(entry, f"manifest.chunks[{i}].cid"))
    return out


def _text(value: Any, limit: int) -> str | None:
    """Advisory names: kept only when they are plain short strings (no path parts)."""
    if not isinstance(value, str) or not value or len(value) > limit:
        return None
    if any(ch in value for ch in "/\\\x00") or value in (".", ".."):
        return None
    return value
