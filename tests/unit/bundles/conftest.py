"""A fake node for bundle tests: a ledger of signed events (ids/events/heads/ingest/
members.get with de-duplication) and `file.put` over a real BlobStore."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hearthnet.blobs.cids import b64decode
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.blobs.store import BlobStore
from hearthnet.bundles.node import StoreReader
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair
from hearthnet.ledger.events import build_event, sort_key, verify_event_signature


class FakeNode:
    def __init__(self, kp: KeyPair, community: KeyPair, store: BlobStore, members: list[str],
                 revoked: list[str] = ()) -> None:
        self.kp, self.community, self.store = kp, community, store
        self.members, self.revoked = list(members), list(revoked)
        self.events: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.file_worker = True

    @property
    def community_id(self) -> str:
        return self.community.node_id_full

    @property
    def reader(self) -> StoreReader:
        return StoreReader(self.store.root)

    def append(self, body: str, lamport: int | None = None) -> dict[str, Any]:
        lamport = lamport or max([e["lamport"] for e in self.events.values()] or [0]) + 1
        ev = build_event(self.kp, self.community_id, lamport, "chat.message.sent",
                         {"client_id": os.urandom(4).hex(), "recipient": self.community_id, "body": body,
                          "attachments": []})
        self.events[ev["event_id"]] = ev
        return ev

    def ordered(self) -> list[dict[str, Any]]:
        return sorted(self.events.values(), key=sort_key)

    def local_capabilities(self) -> set[str]:
        return {"community.log.ingest"} | ({"file.put"} if self.file_worker else set())

    def call(self, capability: str, inp: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(capability)
        handler = getattr(self, "_" + capability.replace(".", "_"))
        return handler(inp)

    def _community_log_ids(self, inp: dict[str, Any]) -> dict[str, Any]:
        return {"ids": [e["event_id"] for e in self.ordered() if e["lamport"] > inp.get("since_lamport", 0)]}

    def _community_log_heads(self, inp: dict[str, Any]) -> dict[str, Any]:
        return {"head": max([e["lamport"] for e in self.events.values()] or [0]), "count": len(self.events)}

    def _community_log_events(self, inp: dict[str, Any]) -> dict[str, Any]:
        wanted = set(inp["ids"])
        return {"events": [dict(e) for e in self.ordered() if e["event_id"] in wanted]}

    def _community_log_ingest(self, inp: dict[str, Any]) -> dict[str, Any]:
        out = {"accepted": 0, "rejected": 0, "duplicates": 0, "rejected_reasons": []}
        for ev in inp["events"]:
            if ev["event_id"] in self.events:
                out["duplicates"] += 1
            elif not verify_event_signature(ev):
                out["rejected"] += 1
                out["rejected_reasons"].append({"event_id": ev["event_id"], "reason": "invalid_signature"})
            elif ev["author"] not in self.members:
                out["rejected"] += 1
                out["rejected_reasons"].append({"event_id": ev["event_id"], "reason": "unknown_author"})
            else:
                self.events[ev["event_id"]] = ev
                out["accepted"] += 1
        return out

    def _community_members_get(self, inp: dict[str, Any]) -> dict[str, Any]:
        return {"members": [{"node_id": n, "level": "member"} for n in self.members],
                "revoked": [{"node_id": n} for n in self.revoked]}

    def _file_put(self, inp: dict[str, Any]) -> dict[str, Any]:
        if "manifest" in inp:
            m = BlobManifest.from_wire(inp["manifest"])
            self.store.write_manifest(m)
            return {"manifest_cid": m.cid, "needed": self.store.missing(m)}
        m = self.store.read_manifest(inp["manifest_cid"])
        if len(inp["chunks"]) > 16:
            raise HearthNetError("bad_request", "at most 16 chunks a call")
        for c in inp["chunks"]:
            assert m.chunks[c["i"]] == c["cid"]
            self.store.write_chunk(c["cid"], b64decode(c["data_b64"]))
        return {"manifest_cid": m.cid, "received": len(inp["chunks"]), "needed": self.store.missing(m)}


@pytest.fixture
def community() -> KeyPair:
    return keys.generate()


@pytest.fixture
def pair(tmp_path: Path, community: KeyPair) -> tuple[FakeNode, FakeNode]:
    """Two members A and B of one community, each with its own store."""
    a_kp, b_kp = keys.generate(), keys.generate()
    ids = [community.node_id_full, a_kp.node_id_full, b_kp.node_id_full]
    a = FakeNode(a_kp, community, BlobStore(tmp_path / "a-blobs", min_free_bytes=0), ids)
    b = FakeNode(b_kp, community, BlobStore(tmp_path / "b-blobs", min_free_bytes=0), ids)
    return a, b
