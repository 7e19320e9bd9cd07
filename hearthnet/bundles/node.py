"""What bundle export and import need from the running node.

`NodeClient` is the node's local API (capability calls as its owner, so `self` and
`trusted` capabilities are open to us); tests pass a fake. `StoreReader` reads the
node's blob store straight from disk, strictly read-only: the file worker is the only
writer of `<DATA>/blobs`, so unlike `BlobStore` this never creates, touches, deletes or
cleans anything (a corrupt chunk is reported, not removed). The layout is the one
`hearthnet/blobs/store.py` documents: `<aa>/<rest>.bin`, `<aa>/<rest>.manifest.json`,
`pinned.txt`. When this user cannot read the store, `NodeBlobs` offers the same view
through the file worker (`file.ls`, `file.read` streams), every chunk verified here too.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from hearthnet.blobs.cids import CID_PREFIX, BlobError, check_cid, hash_bytes, is_cid, short
from hearthnet.blobs.manifest import BlobManifest

MANIFEST_SUFFIX = ".manifest.json"


class NodeClient(Protocol):
    def call(self, capability: str, inp: dict[str, Any]) -> dict[str, Any]:
        """A unary call's `output`; raises HearthNetError with the wire code."""
        ...

    def local_capabilities(self) -> set[str]:
        """Names of the capabilities this node's own workers serve."""
        ...


class BlobView(Protocol):
    """What export and the have summary read about blobs (StoreReader, NodeBlobs)."""

    def manifest(self, cid: str) -> BlobManifest: ...
    def is_complete(self, cid: str) -> bool: ...
    def chunks(self, manifest: BlobManifest) -> Iterator[bytes]: ...
    def complete_cids(self) -> list[str]: ...
    def pinned(self) -> list[str]: ...


class LocalNode:
    """NodeClient over the local API (hearthnet/localapi.py)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def call(self, capability: str, inp: dict[str, Any]) -> dict[str, Any]:
        return self.api.output(capability, inp)

    def stream(self, capability: str, inp: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        """A streamed call's (event, data) frames; an `error` frame raises."""
        return self.api.call(capability, "1.0", {"params": {}, "input": inp}, stream=True)

    def local_capabilities(self) -> set[str]:
        doc = self.api.get("/api/v1/capabilities")
        entries = doc.get("capabilities", doc) if isinstance(doc, dict) else doc
        if not isinstance(entries, list):
            return set()
        return {e["name"] for e in entries
                if isinstance(e, dict) and isinstance(e.get("name"), str) and e.get("local", True)}


class StoreReader:
    """A read-only view of a blob store directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, cid: str, suffix: str) -> Path:
        hexed = check_cid(cid)[len(CID_PREFIX):]
        return self.root / hexed[:2] / f"{hexed[2:]}{suffix}"

    def manifest(self, cid: str) -> BlobManifest:
        try:
            doc = json.loads(self._path(cid, MANIFEST_SUFFIX).read_bytes())
        except FileNotFoundError:
            raise BlobError("not_found", f"blob {cid} is not in this node's store") from None
        except (OSError, ValueError) as exc:
            raise BlobError("not_found", f"the manifest of {short(cid)} cannot be read: {exc}") from None
        return BlobManifest.from_wire(doc, expected_cid=cid)

    def has_chunk(self, cid: str) -> bool:
        return self._path(cid, ".bin").is_file()

    def is_complete(self, cid: str) -> bool:
        try:
            manifest = self.manifest(cid)
        except BlobError:
            return False
        return all(self.has_chunk(c) for c in manifest.chunks)

    def chunks(self, manifest: BlobManifest) -> Iterator[bytes]:
        """The blob's chunks in order, each verified (never repaired: not our store)."""
        for i, cid in enumerate(manifest.chunks):
            try:
                data = self._path(cid, ".bin").read_bytes()
            except OSError:
                raise BlobError("not_found", f"chunk {i} of {short(manifest.cid)} is not in the store") from None
            if hash_bytes(data) != cid:
                raise BlobError("not_found", f"chunk {i} of {short(manifest.cid)} is corrupt in the store "
                                             f"(`hearthnet file gc`/doctor repairs it)")
            yield data

    def manifest_cids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for shard in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not (shard.is_dir() and len(shard.name) == 2):
                continue
            for entry in os.scandir(shard.path):
                if entry.name.endswith(MANIFEST_SUFFIX) and not entry.name.startswith("."):
                    cid = f"{CID_PREFIX}{shard.name}{entry.name[:-len(MANIFEST_SUFFIX)]}"
                    if is_cid(cid):
                        found.append(cid)
        return sorted(found)

    def complete_cids(self) -> list[str]:
        return [cid for cid in self.manifest_cids() if self.is_complete(cid)]

    def pinned(self) -> list[str]:
        try:
            lines = (self.root / "pinned.txt").read_text(encoding="utf-8").split()
        except OSError:
            return []
        return sorted({line for line in lines if is_cid(line)})


class NodeBlobs:
    """StoreReader's interface through the running file worker, for a store this user
    cannot read: `file.ls` for what is held, `file.read` streams for the bytes."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._files: list[dict[str, Any]] | None = None

    def _ls(self) -> list[dict[str, Any]]:
        if self._files is None:
            files = self.node.call("file.ls", {}).get("files")
            self._files = [f for f in files if isinstance(f, dict) and is_cid(f.get("cid"))] \
                if isinstance(files, list) else []
        return self._files

    def complete_cids(self) -> list[str]:
        return sorted(f["cid"] for f in self._ls() if f.get("complete"))

    def pinned(self) -> list[str]:
        return sorted(f["cid"] for f in self._ls() if f.get("pinned"))

    def is_complete(self, cid: str) -> bool:
        return cid in self.complete_cids()

    def manifest(self, cid: str) -> BlobManifest:
        for event, data in self.node.stream("file.read", {"cid": check_cid(cid), "chunks": []}):
            if event == "manifest":
                return BlobManifest.from_wire(data, expected_cid=cid)
        raise BlobError("not_found", f"the node sent no manifest for {short(cid)}")

    def chunks(self, manifest: BlobManifest) -> Iterator[bytes]:
        from hearthnet.blobs.cids import b64decode

        expected = 0
        for event, data in self.node.stream("file.read", {"cid": manifest.cid}):
            if event != "chunk":
                continue
            raw = b64decode(data.get("data_b64"))
            if data.get("i") != expected or hash_bytes(raw) != manifest.chunks[expected]:
                raise BlobError("internal_error", f"the file worker sent a wrong chunk {data.get('i')} "
                                                  f"of {short(manifest.cid)}")
            expected += 1
            yield raw
        if expected != len(manifest.chunks):
            raise BlobError("not_found", f"the file worker sent {expected} of {len(manifest.chunks)} chunks "
                                         f"of {short(manifest.cid)}")


def blob_view(blobs_dir: Path, node: Any) -> "StoreReader | NodeBlobs":
    """The store read from disk when this user may read it, else through the file worker."""
    root = Path(blobs_dir)
    if not root.exists() or os.access(root, os.R_OK | os.X_OK):
        return StoreReader(root)
    return NodeBlobs(node)
