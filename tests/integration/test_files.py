"""Files on real nodes: `file add` / `ls` / `get --out` round trip through the CLI, the
local API and the file worker; exit codes (missing path 2, full store 5 with nothing
half-written); status, doctor and export show the store; `file.put` over the peer API
needs a trusted member; `file.read` streams to a member over the peer API."""
from __future__ import annotations

import asyncio
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, b64decode, b64encode, hash_bytes
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.testing.nodes import Node, join_by_invite
from hearthnet.testing.peer_abuse import wait_until_member
from hearthnet.testing.waiting import wait_for
from hearthnet.transport.client import PeerClient
from hearthnet.transport.pinning import PinStore

pytestmark = pytest.mark.integration

CORE = ("broker", "gateway", "ledger", "governance", "file")
MB = 1_000_000


def local_call(node: Node, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
    status, body = node.call(cap, {"params": {}, "input": inp})
    assert status == 200, body
    return body["output"]


def events_of(node: Node, event_type: str) -> list[dict[str, Any]]:
    return [e["data"] for e in local_call(node, "community.log.events", {"event_types": [event_type]})["events"]]


def chunk_files(node: Node) -> list[Path]:
    return sorted((node.root / "data" / "hearthnet" / "blobs").glob("*/*.bin"))


@pytest.fixture
def alice(make_node) -> Node:
    a = make_node("alice")
    a.env.update({"HEARTHNET_FILE_CAPACITY_BYTES": str(8 * 1024 * 1024), "HEARTHNET_FILE_MIN_FREE_BYTES": "0"})
    a.init()
    a.start(wait_workers=CORE)
    return a


def test_add_ls_get_round_trip_and_the_store_in_status_doctor_export(alice: Node, tmp_path: Path) -> None:
    src = tmp_path / "flood-map.pdf"
    data = os.urandom(3 * MB + 123)
    src.write_bytes(data)
    added = alice.cli_json("file", "add", str(src), "--pin")["files"]
    assert len(added) == 1 and added[0]["added"] is True and added[0]["pinned"] is True
    cid = added[0]["cid"]
    assert added[0]["size_bytes"] == len(data) and added[0]["filename"] == "flood-map.pdf"

    ls = alice.cli_json("file", "ls")
    assert [(f["cid"], f["filename"], f["size_bytes"], f["pinned"], f["complete"], f["holders"])
            for f in ls["files"]] == [(cid, "flood-map.pdf", len(data), True, True, [])]

    out = tmp_path / "copy" / "map.pdf"
    got = alice.cli_json("file", "get", cid, "--out", str(out))
    assert got["out"] == str(out) and got["fetched"] is False
    assert out.read_bytes() == data
    again = alice.cli_json("file", "add", str(src))["files"][0]
    assert again["cid"] == cid and again["added"] is False
    assert events_of(alice, "file.cid.advertised") == [{"cid": cid, "sizes_bytes": len(data)}]

    status = alice.cli_json("status")["blob_store"]
    assert (status["complete"], status["pinned"], status["capacity_bytes"]) == (1, 1, 8 * 1024 * 1024)
    human = alice.cli("status")
    assert "Blob store" in human.stdout and "1 file(s), 3.0 MB" in human.stdout, human.stdout
    (check,) = alice.cli_json("doctor", "--check", "blob_store")["checks"]
    assert check["ok"] is True and "sampled chunks verified" in check["detail"], check

    export = alice.cli_json("export", "--out", str(tmp_path / "export.zip"))
    assert export["counts"]["blobs"] == 1
    with zipfile.ZipFile(tmp_path / "export.zip") as zf:
        assert [b["cid"] for b in json.loads(zf.read("blobs.json"))] == [cid]

    unpinned = alice.cli_json("file", "unpin", cid)
    assert unpinned == {"cid": cid, "pinned": False}
    assert events_of(alice, "file.cid.unpinned") == [{"cid": cid}]


def test_missing_path_exits_2_and_a_full_store_exits_5_leaving_nothing_behind(alice: Node, tmp_path: Path) -> None:
    missing = alice.cli("file", "add", str(tmp_path / "no-such-file.txt"))
    assert missing.returncode == 2 and "no-such-file.txt does not exist" in missing.stderr

    kept = tmp_path / "kept.bin"
    kept.write_bytes(os.urandom(3 * MB))
    cid = alice.cli_json("file", "add", str(kept), "--pin")["files"][0]["cid"]  # pinned: GC cannot free it
    before = chunk_files(alice)

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * MB))
    full = alice.cli("file", "add", str(big), "--json")
    assert full.returncode == 5, full.stdout + full.stderr
    assert json.loads(full.stdout)["error"]["code"] == "capacity_exceeded"
    assert chunk_files(alice) == before  # nothing of the refused file was written
    assert [f["cid"] for f in alice.cli_json("file", "ls")["files"]] == [cid]
    assert not list((alice.root / "data" / "hearthnet" / "blobs").glob("*/.*.tmp"))


def test_get_of_an_unknown_cid_is_not_found(alice: Node) -> None:
    pytest.importorskip("hearthnet.blobs.transfer")
    r = alice.cli("file", "get", "blake3:" + "5" * 64, "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == "not_found"


# --------------------------------------------------------------------------- peers


class Peer:
    """Signed peer-API calls to `node` with another member's device key."""

    def __init__(self, node: Node, kp: keys.KeyPair, pins: Path) -> None:
        status = node.api("/api/v1/status")
        self.node_id, self.community = status["node"]["node_id"], status["community"]["community_id"]
        self.address = ("127.0.0.1", node.port)
        self.kp, self.pins = kp, pins

    def call(self, cap: str, inp: dict[str, Any]) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            async with PeerClient(self.kp, self.community, PinStore(self.pins)) as client:
                return await client.call(self.node_id, self.address, cap, "1.0", {"params": {}, "input": inp})

        return asyncio.run(go())["output"]

    def error(self, cap: str, inp: dict[str, Any]) -> str:
        with pytest.raises(HearthNetError) as err:
            self.call(cap, inp)
        return err.value.code

    def stream(self, cap: str, inp: dict[str, Any]) -> list[tuple[str, Any]]:
        async def go() -> list[tuple[str, Any]]:
            async with PeerClient(self.kp, self.community, PinStore(self.pins)) as client:
                return [f async for f in client.stream(self.node_id, self.address, cap, "1.0",
                                                       {"params": {}, "input": inp})]

        return asyncio.run(go())


def test_put_needs_a_trusted_member_and_read_streams_to_members(make_node, tmp_path: Path) -> None:
    a, b = make_node("alice"), make_node("bob")
    a.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    a.init()
    a.start(wait_workers=CORE)
    bob_id = join_by_invite(a, b)  # bob never runs: the test speaks with his key
    kp = keys.load(b.root / "data" / "hearthnet" / "keys")
    wait_until_member(a, kp)
    peer = Peer(a, kp, tmp_path / "pins.json")

    data = os.urandom(2 * CHUNK_SIZE_BYTES + 99)
    pieces = [data[i:i + CHUNK_SIZE_BYTES] for i in range(0, len(data), CHUNK_SIZE_BYTES)]
    wire = BlobManifest.build([hash_bytes(p) for p in pieces], len(data), filename="shelters.csv").to_wire()
    entries = [{"i": i, "cid": hash_bytes(p), "data_b64": b64encode(p)} for i, p in enumerate(pieces)]

    assert peer.error("file.put", {"manifest": wire}) == "unauthorized"  # a plain member
    promoted = a.cli_json("member", "promote", bob_id, "--yes")
    assert promoted["status"] == "promoted"
    first = wait_for(lambda: _try(peer, wire), timeout=30, interval=0.3, message="put accepted once bob is trusted")
    assert first == {"manifest_cid": wire["cid"], "needed": [0, 1, 2]}
    tampered = dict(entries[1], data_b64=b64encode(b"x" + pieces[1][1:]))
    assert peer.error("file.put", {"manifest_cid": wire["cid"], "chunks": [tampered]}) == "bad_request"
    bad_manifest = dict(wire, cid="blake3:" + "0" * 64)
    assert peer.error("file.put", {"manifest": bad_manifest}) == "bad_request"
    out = peer.call("file.put", {"manifest_cid": wire["cid"], "chunks": entries[:2]})
    assert out == {"manifest_cid": wire["cid"], "received": 2, "needed": [2]}
    out = peer.call("file.put", {"manifest_cid": wire["cid"], "chunks": entries})  # resent: idempotent
    assert out["needed"] == []

    (f,) = a.cli_json("file", "ls")["files"]
    assert f["cid"] == wire["cid"] and f["complete"] and f["filename"] == "shelters.csv"
    assert peer.call("file.list", {"prefix": wire["cid"]})["cids"] == [wire["cid"]]

    frames = peer.stream("file.read", {"cid": wire["cid"], "chunks": [2, 0]})
    assert [e for e, _ in frames] == ["manifest", "chunk", "chunk", "done"]
    assert b64decode(frames[1][1]["data_b64"]) == pieces[2] and b64decode(frames[2][1]["data_b64"]) == pieces[0]
    assert peer.error("file.read", {"cid": "blake3:" + "9" * 64}) == "not_found"
    assert peer.error("file.add", {"path": "/etc/passwd"}) == "unauthorized"  # the owner's alone


def _try(peer: Peer, wire: dict[str, Any]) -> dict[str, Any] | None:
    """The put's step 1 once the gateway's membership view has the promotion."""
    try:
        return peer.call("file.put", {"manifest": wire})
    except HearthNetError as exc:
        if exc.code != "unauthorized":
            raise
        return None


def test_get_fetches_from_a_neighbour_then_advertises(make_node, tmp_path: Path) -> None:
    """Two nodes: bob fetches alice's file by its CID over the peer API (verified chunk
    by chunk), writes it out, and advertises that he holds it too."""
    pytest.importorskip("hearthnet.blobs.transfer")
    a, b = make_node("alice"), make_node("bob")
    for n in (a, b):
        n.env["HEARTHNET_FILE_MIN_FREE_BYTES"] = "0"
    a.init()
    a.start(wait_workers=CORE)
    bob_id = join_by_invite(a, b)
    b.start(wait_workers=CORE)
    alice_id = a.api("/api/v1/status")["node"]["node_id"]
    for x, y in ((a, b), (b, a)):
        r = x.cli("peer", "add", f"127.0.0.1:{y.port}")
        assert r.returncode == 0, r.stderr + r.stdout
    wait_for(lambda: any(c["name"] == "file.read" and not c["local"] and c["node_id"] == alice_id
                         for c in b.api("/api/v1/capabilities")["capabilities"]),
             timeout=60, message="bob to route file.read to alice")

    src = tmp_path / "bridge.jpg"
    data = os.urandom(2 * MB + 77)
    src.write_bytes(data)
    cid = a.cli_json("file", "add", str(src))["files"][0]["cid"]
    out = tmp_path / "fetched"
    out.mkdir()
    got = b.cli_json("file", "get", cid, "--out", str(out), timeout=180)
    assert got["fetched"] is True and got["out"] == str(out / "bridge.jpg")
    assert got["from"] == {alice_id: -(-len(data) // CHUNK_SIZE_BYTES)}  # every chunk, from alice
    assert (out / "bridge.jpg").read_bytes() == data
    assert {"cid": cid, "sizes_bytes": len(data)} in events_of(b, "file.cid.advertised")
    (f,) = b.cli_json("file", "ls")["files"]
    assert f["complete"] and alice_id in f["holders"]
    wait_for(lambda: bob_id in next(x for x in a.cli_json("file", "ls")["files"] if x["cid"] == cid)["holders"],
             timeout=60, interval=0.5, message="alice to learn (through sync) that bob holds the file too")
