"""What bundle export and import need from the running node.

`NodeClient` is the node's local API (capability calls as its owner, so `self` and
`trusted` capabilities are open to us); tests pass a fake. `StoreReader` reads the
node's blob store straight from disk through `BlobStore(read_only=True)`: the file
worker is the only writer of `<DATA>/blobs`, so this never creates, touches, deletes or
cleans anything (a corrupt chunk is reported, not removed). When this user cannot read the store, `NodeBlobs` offers the same view
through the file worker (`file.ls`, `file.read` streams), every chunk verified here too.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from hearthnet.blobs.cids import BlobError, check_cid, hash_bytes, is_cid, short
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.blobs.store import BlobStore


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
    """A read-only view of a blob store directory: `BlobStore(read_only=True)` (it
    creates, touches, repairs and cleans nothing), in the BlobView shape."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.store = BlobStore(self.root, read_only=True, min_free_bytes=0)

    def manifest(self, cid: str) -> BlobManifest:
        return self.store.read_manifest(cid, touch=False)

    def has_chunk(self, cid: str) -> bool:
        return self.store.has_chunk(cid)

    def is_complete(self, cid: str) -> bool:
        return self.store.has_blob(cid)

    def chunks(self, manifest: BlobManifest) -> Iterator[bytes]:
        """The blob's chunks in order, each verified (never repaired: not our store)."""
        for _, data in self.store.iter_chunks(manifest):
            yield data

    def manifest_cids(self) -> list[str]:
        return sorted(cid for cid, _ in self.store.manifests())

    def complete_cids(self) -> list[str]:
        return [cid for cid in self.manifest_cids() if self.is_complete(cid)]

    def pinned(self) -> list[str]:
        return self.store.pinned()


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
