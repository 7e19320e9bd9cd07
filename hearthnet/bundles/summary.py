""""What I have" summaries, and what `bundle export --since` may assume the receiver holds.

A summary is `have/<SHORT-ID>.json` in a bundle directory, written by `hearthnet bundle
have DIR` or at the end of `bundle import`, signed by the node it describes:

    {format: "hearthnet-have", format_version: 1, community_id, node_id, created_at,
     head, event_count, event_ids: [every event id it holds, sorted], blobs: [manifest
     CIDs it holds complete, sorted], signature}

Event ids rather than heads: two nodes apart for a week each hold events the other lacks
below its head, and a set difference is the only exact answer (the same choice as the
sync rounds' id exchange).

`--since` takes a summary file, a bundle directory, or a lamport number:
* a directory with summaries: what ALL of them hold (the intersection), so the next
  bundle carries what any of those nodes lacks;
* a bundle directory without summaries: what that bundle carried (it was delivered);
* a number N: the events with lamport <= N (blobs: none known).
A summary that does not verify, or is for another community, is ignored (and reported):
assuming less only makes the bundle bigger, never wrong.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hearthnet import jsonbound
from hearthnet.blobs.cids import is_cid
from hearthnet.bundles.format import (BUNDLE_FILE, EVENTS_FILE, HAVE_DIR, BundleError, check_signature,
                                      have_name, parse_manifest, read_bundle_doc)
from hearthnet.bundles.node import BlobView, NodeClient
from hearthnet.identity.keys import KeyPair, verify_payload_with_node_id
from hearthnet.identity.manifest import rfc3339

HAVE_FORMAT = "hearthnet-have"
HAVE_VERSION = 1
MAX_HAVE_BYTES = 256 * 1024 * 1024


@dataclass
class Known:
    """What the receiver is assumed to hold already."""

    kind: str  # "none" | "have" | "bundle" | "lamport"
    event_ids: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    since_lamport: int = 0
    nodes: list[str] = field(default_factory=list)  # whose summaries were used
    ignored: list[str] = field(default_factory=list)  # summaries that did not verify

    def describe(self) -> dict[str, Any] | None:
        """The `since` field of bundle.json (null for a full bundle)."""
        if self.kind == "none":
            return None
        return {"kind": self.kind, "known_events": len(self.event_ids), "known_blobs": len(self.blobs),
                "since_lamport": self.since_lamport, "nodes": list(self.nodes)}


# --------------------------------------------------------------------------- writing


def build_have(node: NodeClient, store: BlobView, kp: KeyPair, community_id: str) -> dict[str, Any]:
    heads = node.call("community.log.heads", {})
    ids = node.call("community.log.ids", {"since_lamport": 0}).get("ids") or []
    body = {"format": HAVE_FORMAT, "format_version": HAVE_VERSION, "community_id": community_id,
            "node_id": kp.node_id_full, "created_at": rfc3339(datetime.now(timezone.utc)),
            "head": heads.get("head"), "event_count": len(ids), "event_ids": sorted(ids),
            "blobs": store.complete_cids()}
    return kp.sign(body)


def write_have(root: Path, doc: dict[str, Any]) -> Path:
    """Write (replace) this node's summary in a bundle dir: temp file + rename."""
    path = root / have_name(doc["node_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- reading


def read_have(path: Path, community_id: str) -> dict[str, Any]:
    """A verified summary of our community; BundleError otherwise."""
    if not path.is_file():
        raise BundleError("not_a_bundle", f"{path} is not a regular file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_HAVE_BYTES + 1)
        doc = jsonbound.loads(raw, 8)
    except (OSError, ValueError) as exc:
        raise BundleError("not_a_bundle", f"{path} is not a readable have summary: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != HAVE_FORMAT or doc.get("format_version") != HAVE_VERSION:
        raise BundleError("not_a_bundle", f"{path} is not a HearthNet have summary")
    if not isinstance(doc.get("node_id"), str) or not verify_payload_with_node_id(doc, doc["node_id"]):
        raise BundleError("invalid_signature", f"{path} is not signed by the node it names")
    if doc.get("community_id") != community_id:
        raise BundleError("community_mismatch", f"{path} describes a node of another community")
    ids, blobs = doc.get("event_ids"), doc.get("blobs")
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)
            and isinstance(blobs, list) and all(is_cid(c) for c in blobs)):
        raise BundleError("not_a_bundle", f"{path}: event_ids and blobs must be lists of ids")
    return doc


def known_from(since: str | None, community_id: str) -> Known:
    if since is None:
        return Known("none")
    path = Path(since).expanduser()
    if since.isdigit() and not path.exists():
        return Known("lamport", since_lamport=int(since))
    if path.is_file():
        doc = read_have(path, community_id)
        return Known("have", set(doc["event_ids"]), set(doc["blobs"]), nodes=[doc["node_id"]])
    if path.is_dir():
        return _known_from_dir(path, community_id)
    raise BundleError("usage", f"--since {since}: no such file or directory (give a bundle directory, "
                               f"a have summary or a lamport number)")


def _known_from_dir(root: Path, community_id: str) -> Known:
    known: Known | None = None
    ignored: list[str] = []
    for path in sorted((root / HAVE_DIR).glob("*.json")) if (root / HAVE_DIR).is_dir() else []:
        try:
            doc = read_have(path, community_id)
        except BundleError as exc:
            ignored.append(f"{path.name}: {exc.message}")
            continue
        ids, blobs = set(doc["event_ids"]), set(doc["blobs"])
        if known is None:
            known = Known("have", ids, blobs, nodes=[doc["node_id"]])
        else:
            known.event_ids &= ids
            known.blobs &= blobs
            known.nodes.append(doc["node_id"])
    if known is None:
        if not (root / BUNDLE_FILE).is_file():
            raise BundleError("usage", f"--since {root}: neither a bundle nor a have/ summary in it")
        known = _carried(root, community_id)
    known.ignored = ignored
    return known


def _carried(root: Path, community_id: str) -> Known:
    """What a delivered bundle carried: its event ids and blob CIDs."""
    doc = read_bundle_doc(root)
    check_signature(doc)
    manifest = parse_manifest(doc)
    if manifest.community_id != community_id:
        raise BundleError("community_mismatch", f"{root} is a bundle of another community")
    ids: set[str] = set()
    try:
        with (root / EVENTS_FILE).open("rb") as fh:
            for line in fh:
                ev = json.loads(line) if line.strip() else None
                if isinstance(ev, dict) and isinstance(ev.get("event_id"), str):
                    ids.add(ev["event_id"])
    except (OSError, ValueError) as exc:
        raise BundleError("not_a_bundle", f"cannot read {root / EVENTS_FILE}: {exc}") from None
    return Known("bundle", ids, {b.manifest.cid for b in manifest.blobs})
