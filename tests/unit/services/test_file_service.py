"""FileService with a real BlobStore and a fake bus (the ledger's append/events): read
streams and chunk subsets, list and prefixes, the advertise index, the two-step put
(resumable, idempotent, every bad input refused), add/get/import, pin/unpin/gc, status
and verify."""
from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, b64decode, b64encode, hash_bytes
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.blobs.store import BlobStore
from hearthnet.bus.service import Request
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.services.file.service import PUT_BATCH, FileService

ME = keys.generate().node_id_full
PEER = keys.generate().node_id_full
OTHER = keys.generate().node_id_full


class FakeBus:
    """The ledger's append and events, kept in a list; any other call is not_found."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.ledger_down = False
        self.remote: list[dict[str, Any]] = []  # the broker's remote capability entries
        self.told: list[tuple[str | None, Any]] = []  # file.advertise calls to peers

    async def admin(self, op: str, **args: Any) -> dict[str, Any]:
        assert op == "caps"
        return {"capabilities": self.remote}

    async def call(self, cap: str, version: str, body: Any, *, caller: str = "", trace: str = "",
                   timeout: float | None = None, local_only: bool = False,
                   node: str | None = None) -> dict[str, Any]:
        if cap == "community.log.append":
            assert node == ME and caller == ME, "our events are appended on this node, as itself"
        if self.ledger_down:
            raise HearthNetError("timeout", "the ledger did not answer")
        inp = body["input"]
        if cap == "community.log.append":
            ev = {"event_type": inp["event_type"], "data": inp["data"], "author": ME}
            self.events.append(ev)
            return {"output": {"event": ev}}
        if cap == "file.advertise" and node != ME:
            self.told.append((node, inp["cids"]))
            if node == OTHER:
                raise HearthNetError("timeout", "that peer did not answer")
            return {"output": {"recorded": len(inp["cids"])}}
        if cap == "community.log.events":
            wanted = set(inp.get("event_types") or [])
            return {"output": {"events": [e for e in self.events if e["event_type"] in wanted]}}
        raise HearthNetError("not_found", f"no {cap}")

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["event_type"] == event_type]


class Harness:
    def __init__(self, root: Path, **store_kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = BlobStore(root / "blobs", **{"min_free_bytes": 0, **store_kw})
        self.bus = FakeBus()
        self.svc = FileService(self.store, ME, self.bus)
        self.caps = {c.name: c for c in self.svc.capabilities()}

    def _req(self, cap: str, inp: Any, stream: bool, caller: str) -> Request:
        return Request(capability=cap, version="1.0", body={"params": {}, "input": inp}, stream=stream,
                       caller=caller)

    def call(self, cap: str, inp: Any, *, caller: str = ME) -> dict[str, Any]:
        result = self.loop.run_until_complete(self.caps[cap].handler(self._req(cap, inp, False, caller)))
        assert isinstance(result, dict)
        return result["output"]

    def stream(self, cap: str, inp: Any, *, caller: str = ME) -> tuple[list[tuple[str, Any]], HearthNetError | None]:
        """The frames a stream call yields, and the error that ended it (if one did)."""
        async def go() -> tuple[list[tuple[str, Any]], HearthNetError | None]:
            frames: list[tuple[str, Any]] = []
            try:
                result = await self.caps[cap].handler(self._req(cap, inp, True, caller))
                if isinstance(result, dict):
                    return [("done", result)], None
                async for frame in result:
                    frames.append(frame)
            except HearthNetError as exc:
                return frames, exc
            return frames, None

        return self.loop.run_until_complete(go())

    def error(self, cap: str, inp: Any, *, caller: str = ME) -> HearthNetError:
        with pytest.raises(HearthNetError) as err:
            self.call(cap, inp, caller=caller)
        return err.value

    def close(self) -> None:
        self.loop.run_until_complete(self.svc.stop())
        self.loop.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def data_of(n: int) -> bytes:
    return os.urandom(n)


def wire_manifest(data: bytes, filename: str | None = "f.bin") -> dict[str, Any]:
    chunks = [hash_bytes(data[i:i + CHUNK_SIZE_BYTES]) for i in range(0, len(data), CHUNK_SIZE_BYTES)]
    return BlobManifest.build(chunks, len(data), filename=filename).to_wire()


def chunk_entry(data: bytes, i: int, *, std_alphabet: bool = False) -> dict[str, Any]:
    piece = data[i * CHUNK_SIZE_BYTES:(i + 1) * CHUNK_SIZE_BYTES]
    b64 = base64.b64encode(piece).decode() if std_alphabet else b64encode(piece)
    return {"i": i, "cid": hash_bytes(piece), "data_b64": b64}


# --------------------------------------------------------------------------- descriptors


def test_capabilities_trust_limits_and_streams(h: Harness) -> None:
    d = {name: c.descriptor() for name, c in h.caps.items()}
    peers = {n: x["trust_required"] for n, x in d.items() if x["trust_required"] != "self"}
    assert peers == {"file.read": "member", "file.list": "member", "file.advertise": "member", "file.put": "trusted"}
    assert {n for n, x in d.items() if x["trust_required"] == "self"} == {
        "file.add", "file.get", "file.ls", "file.pin", "file.unpin", "file.gc", "file.status", "file.verify",
        "file.import"}
    spec = {"file.read": (8, 300), "file.list": (4, 5), "file.advertise": (16, 5), "file.put": (2, 600)}
    assert {n: (d[n]["max_concurrent"], d[n]["timeout_seconds"]) for n in spec} == spec
    assert all(d[n]["idempotent"] for n in spec)
    assert {n for n, x in d.items() if x["streams"]} == {"file.read", "file.add", "file.get", "file.import"}


# --------------------------------------------------------------------------- file.read


def test_read_a_manifest_streams_manifest_chunks_done(h: Harness) -> None:
    data = data_of(2 * CHUNK_SIZE_BYTES + 10)
    m = h.store.add_bytes(data, filename="map.pdf")
    frames, err = h.stream("file.read", {"cid": m.cid})
    assert err is None
    assert [f[0] for f in frames] == ["manifest", "chunk", "chunk", "chunk", "done"]
    assert frames[0][1] == m.to_wire() and frames[0][1]["filename"] == "map.pdf"
    body = b"".join(b64decode(f[1]["data_b64"]) for f in frames if f[0] == "chunk")
    assert body == data
    assert [(f[1]["i"], f[1]["cid"], f[1]["size_bytes"]) for f in frames[1:4]] == \
        [(i, m.chunks[i], m.chunk_size(i)) for i in range(3)]
    assert "=" not in frames[1][1]["data_b64"] and frames[-1][1]["chunks"] == 3


def test_read_a_subset_of_chunks_in_the_order_asked(h: Harness) -> None:
    m = h.store.add_bytes(data_of(3 * CHUNK_SIZE_BYTES))
    frames, _ = h.stream("file.read", {"cid": m.cid, "chunks": [2, 0]})
    assert [(e, d.get("i")) for e, d in frames] == [("manifest", None), ("chunk", 2), ("chunk", 0), ("done", None)]
    frames, _ = h.stream("file.read", {"cid": m.cid, "chunks": []})
    assert [e for e, _ in frames] == ["manifest", "done"]


def test_read_a_chunk_cid_is_unary(h: Harness) -> None:
    m = h.store.add_bytes(b"hello")
    out = h.call("file.read", {"cid": m.chunks[0]})
    assert out == {"cid": m.chunks[0], "size_bytes": 5, "data_b64": b64encode(b"hello")}


def test_read_a_manifest_without_a_stream(h: Harness) -> None:
    m = h.store.add_bytes(data_of(CHUNK_SIZE_BYTES + 1))
    assert h.call("file.read", {"cid": m.cid}) == {"manifest": m.to_wire()}
    out = h.call("file.read", {"cid": m.cid, "chunks": [1]})
    assert [c["i"] for c in out["chunks"]] == [1]
    big = h.store.add_bytes(data_of(17 * CHUNK_SIZE_BYTES))
    assert h.error("file.read", {"cid": big.cid, "chunks": list(range(17))}).code == "bad_request"


def test_read_refuses_bad_input_and_unknown_cids(h: Harness) -> None:
    m = h.store.add_bytes(data_of(10))
    assert h.error("file.read", {"cid": "blake3:" + "0" * 64}).code == "not_found"
    for bad in ({}, {"cid": "nope"}, {"cid": m.cid.upper()}, {"cid": 5}):
        assert h.error("file.read", bad).code == "bad_request", bad
    for chunks in ([1], [-1], [0, 0], ["0"], [True], "0"):
        frames, err = h.stream("file.read", {"cid": m.cid, "chunks": chunks})
        assert frames == [] and err is not None and err.code == "bad_request", chunks


def test_a_chunk_we_lack_ends_the_stream_with_not_found(h: Harness) -> None:
    m = h.store.add_bytes(data_of(3 * CHUNK_SIZE_BYTES))
    h.store.chunk_path(m.chunks[1]).unlink()
    frames, err = h.stream("file.read", {"cid": m.cid})
    assert [e for e, _ in frames] == ["manifest", "chunk"] and err is not None and err.code == "not_found"
    path = h.store.chunk_path(m.chunks[2])
    path.write_bytes(b"x" + path.read_bytes()[1:])  # corrupt on disk: refused, never served
    frames, err = h.stream("file.read", {"cid": m.cid, "chunks": [2]})
    assert [e for e, _ in frames] == ["manifest"] and err.code == "not_found"


# --------------------------------------------------------------------------- file.list / advertise


def test_list_complete_blobs_by_prefix(h: Harness) -> None:
    a, b = h.store.add_bytes(b"a" * 10, filename="a.txt"), h.store.add_bytes(b"b" * 10)
    assert set(h.call("file.list", {})["cids"]) == {a.cid, b.cid}
    out = h.call("file.list", {"prefix": a.cid})
    assert out == {"cids": [a.cid], "entries": [{"cid": a.cid, "size_bytes": 10, "filename": "a.txt"}]}
    assert h.call("file.list", {"prefix": a.cid[7:13]})["cids"] == [a.cid]
    assert h.call("file.list", {"prefix": "blake3:" + b.cid[7:11]})["cids"] == [b.cid]
    for bad in ("abc", "ABCD", "blake3:", "xyz1", 12, "a" * 65):
        assert h.error("file.list", {"prefix": bad}).code == "bad_request", bad


def test_list_leaves_out_incomplete_and_evicted_blobs(h: Harness) -> None:
    data = data_of(2 * CHUNK_SIZE_BYTES)
    h.call("file.put", {"manifest": wire_manifest(data)})  # a put in progress: not complete
    done = h.store.add_bytes(b"done")
    assert h.call("file.list", {})["cids"] == [done.cid]
    h.store.delete_blob(done.cid)  # evicted behind the index's back
    assert h.call("file.list", {})["cids"] == []


def test_advertise_records_the_caller_as_a_holder(h: Harness) -> None:
    cid = "blake3:" + "ab" * 32
    assert h.call("file.advertise", {"cids": [cid, cid]}, caller=PEER) == {"recorded": 1}
    h.call("file.advertise", {"cids": [cid]}, caller=OTHER)
    assert h.svc.holders.holders(cid) == [OTHER, PEER]
    assert h.call("file.advertise", {"cids": [cid]}) == {"recorded": 0}  # ourselves: nothing to learn
    for bad in ({}, {"cids": "x"}, {"cids": ["nope"]}, {"cids": [cid] * 1001}):
        assert h.error("file.advertise", bad, caller=PEER).code == "bad_request"


def test_ls_shows_holders_from_the_index_and_the_log(h: Harness) -> None:
    m = h.store.add_bytes(b"shared", filename="s.txt")
    h.call("file.advertise", {"cids": [m.cid]}, caller=PEER)
    h.bus.events.append({"event_type": "file.cid.advertised", "data": {"cid": m.cid, "sizes_bytes": 6},
                         "author": OTHER})
    h.call("file.pin", {"cid": m.cid})
    out = h.call("file.ls", {})
    (f,) = out["files"]
    assert f["cid"] == m.cid and f["filename"] == "s.txt" and f["size_bytes"] == 6 and f["pinned"]
    assert f["complete"] and f["chunks_missing"] == 0 and set(f["holders"]) == {PEER, OTHER}
    assert f["last_used"].endswith("Z")
    assert {"capacity_bytes", "free_bytes", "store_bytes", "fraction"} <= set(out["usage"])


# --------------------------------------------------------------------------- file.put


def test_put_two_steps_resumable_and_idempotent(h: Harness) -> None:
    data = data_of(3 * CHUNK_SIZE_BYTES + 5)
    wire = wire_manifest(data)
    first = h.call("file.put", {"manifest": wire}, caller=PEER)
    assert first == {"manifest_cid": wire["cid"], "needed": [0, 1, 2, 3]}
    assert h.call("file.put", {"manifest": wire}, caller=PEER) == first  # step 1 again: same answer
    out = h.call("file.put", {"manifest_cid": wire["cid"], "chunks": [chunk_entry(data, 2), chunk_entry(data, 0)]})
    assert out == {"manifest_cid": wire["cid"], "received": 2, "needed": [1, 3]}
    # the connection dropped: a resumed upload asks again and sends the rest (one twice)
    assert h.call("file.put", {"manifest": wire})["needed"] == [1, 3]
    assert h.bus.of("file.cid.advertised") == []
    out = h.call("file.put", {"manifest_cid": wire["cid"],
                              "chunks": [chunk_entry(data, 0), chunk_entry(data, 1, std_alphabet=True),
                                         chunk_entry(data, 3)]})
    assert out["needed"] == [] and h.store.read_blob_bytes(wire["cid"]) == data
    assert h.bus.of("file.cid.advertised") == [{"cid": wire["cid"], "sizes_bytes": len(data)}]
    again = h.call("file.put", {"manifest_cid": wire["cid"], "chunks": [chunk_entry(data, 3)]})
    assert again["needed"] == [] and h.call("file.put", {"manifest": wire})["needed"] == []
    assert len(h.bus.of("file.cid.advertised")) == 1  # advertised once
    assert h.call("file.list", {"prefix": wire["cid"]})["cids"] == [wire["cid"]]


def test_put_refuses_a_bad_chunk_and_stores_nothing_of_it(h: Harness) -> None:
    data = data_of(2 * CHUNK_SIZE_BYTES)
    wire = wire_manifest(data)
    h.call("file.put", {"manifest": wire})
    tampered = chunk_entry(data, 1)
    raw = bytearray(b64decode(tampered["data_b64"]))
    raw[7] ^= 1
    tampered["data_b64"] = b64encode(bytes(raw))
    err = h.error("file.put", {"manifest_cid": wire["cid"], "chunks": [tampered]})
    assert err.code == "bad_request" and "chunk 1" in err.message
    assert not h.store.has_chunk(tampered["cid"])
    short = dict(chunk_entry(data, 0), data_b64=b64encode(b"tiny"))
    swapped = dict(chunk_entry(data, 0), i=1)
    for entry in (short, swapped, {"i": 5, "cid": tampered["cid"], "data_b64": ""}, "x",
                  dict(chunk_entry(data, 0), data_b64="not base64!")):
        assert h.error("file.put", {"manifest_cid": wire["cid"], "chunks": [entry]}).code == "bad_request", entry
    too_many = [chunk_entry(data, 0)] * (PUT_BATCH + 1)
    for chunks in (too_many, [], None):
        assert h.error("file.put", {"manifest_cid": wire["cid"], "chunks": chunks}).code == "bad_request"
    assert h.call("file.put", {"manifest": wire})["needed"] == [0, 1]


def test_put_refuses_a_manifest_whose_cid_does_not_match(h: Harness) -> None:
    data = data_of(CHUNK_SIZE_BYTES + 1)
    wire = wire_manifest(data)
    for bad in (dict(wire, cid="blake3:" + "0" * 64), dict(wire, size_bytes=wire["size_bytes"] + 1),
                dict(wire, chunks=wire["chunks"][:1]), "manifest", {}):
        assert h.error("file.put", {"manifest": bad}).code == "bad_request", bad
    assert list(h.store.manifests()) == []
    assert h.error("file.put", {}).code == "bad_request"


def test_put_chunks_before_the_manifest_is_not_found(h: Harness) -> None:
    data = data_of(10)
    wire = wire_manifest(data)
    err = h.error("file.put", {"manifest_cid": wire["cid"], "chunks": [chunk_entry(data, 0)]})
    assert err.code == "not_found" and "manifest first" in err.message


def test_put_without_room_for_the_whole_blob_is_capacity_exceeded(tmp_path: Path) -> None:
    h = Harness(tmp_path, capacity_bytes=4 * CHUNK_SIZE_BYTES, min_free_bytes=CHUNK_SIZE_BYTES)
    try:
        h.store.pin(h.store.add_bytes(data_of(CHUNK_SIZE_BYTES)).cid)  # pinned: GC cannot free it
        data = data_of(3 * CHUNK_SIZE_BYTES)
        err = h.error("file.put", {"manifest": wire_manifest(data)}, caller=PEER)
        assert err.code == "capacity_exceeded"
        assert not h.store.has_manifest(wire_manifest(data)["cid"])  # nothing of it stored
        assert h.call("file.put", {"manifest": wire_manifest(data[:CHUNK_SIZE_BYTES])})["needed"] == [0]
    finally:
        h.close()


# --------------------------------------------------------------------------- file.add / get / import


def test_add_streams_progress_then_done_and_advertises(h: Harness, tmp_path: Path) -> None:
    src = tmp_path / "flood-map.pdf"
    data = data_of(5 * CHUNK_SIZE_BYTES + 3)
    src.write_bytes(data)
    frames, err = h.stream("file.add", {"path": str(src), "pin": True, "mime_type": "application/pdf"})
    assert err is None and frames[-1][0] == "done"
    assert all(e == "progress" and d["stage"] == "hashing" and d["total"] == len(data) for e, d in frames[:-1])
    done = frames[-1][1]
    cid = done["manifest"]["cid"]
    assert done["pinned"] is True and done["added"] is True
    assert done["manifest"]["filename"] == "flood-map.pdf" and done["manifest"]["mime_type"] == "application/pdf"
    assert h.store.read_blob_bytes(cid) == data and h.store.is_pinned(cid)
    assert h.bus.of("file.cid.advertised") == [{"cid": cid, "sizes_bytes": len(data)}]
    again = h.call("file.add", {"path": str(src)})  # without a stream: the done frame is the output
    assert again["added"] is False and again["manifest"]["cid"] == cid
    assert h.svc.health()["note"].startswith("1 blobs")


def test_add_refuses_relative_missing_and_odd_paths(h: Harness, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    cases = {"relative.txt": "bad_request", str(tmp_path / "missing"): "not_found",
             str(tmp_path / "d"): "bad_request"}
    for path, code in cases.items():
        frames, err = h.stream("file.add", {"path": path})
        assert err is not None and err.code == code, path
    f = tmp_path / "f"
    f.write_bytes(b"x")
    assert h.error("file.add", {"path": str(f), "pin": "yes"}).code == "bad_request"
    assert h.error("file.add", {"path": str(f), "mime_type": 3}).code == "bad_request"


def test_add_that_does_not_fit_leaves_nothing_behind(tmp_path: Path) -> None:
    h = Harness(tmp_path, capacity_bytes=2 * CHUNK_SIZE_BYTES, min_free_bytes=0)
    try:
        src = tmp_path / "big"
        src.write_bytes(data_of(3 * CHUNK_SIZE_BYTES))
        frames, err = h.stream("file.add", {"path": str(src)})
        assert err is not None and err.code == "capacity_exceeded"
        assert list(h.store.manifests()) == [] and h.store.store_bytes() == 0
        assert h.bus.of("file.cid.advertised") == []
    finally:
        h.close()


def test_get_of_a_blob_held_complete_exports_without_fetching(h: Harness, tmp_path: Path) -> None:
    data = data_of(2 * CHUNK_SIZE_BYTES + 1)
    m = h.store.add_bytes(data, filename="shelters.csv")
    out = tmp_path / "out" / "copy.csv"
    frames, err = h.stream("file.get", {"cid": m.cid, "out": str(out)})
    assert err is None and frames[-1][0] == "done"
    assert all(d["stage"] == "exporting" for e, d in frames[:-1])
    done = frames[-1][1]
    assert done["out"] == str(out) and done["from"] == {} and done["manifest"]["cid"] == m.cid
    assert out.read_bytes() == data
    into_dir = h.call("file.get", {"cid": m.cid, "out": str(tmp_path / "out")})
    assert into_dir["out"] == str(tmp_path / "out" / "shelters.csv")
    again = h.call("file.get", {"cid": m.cid, "out": str(tmp_path / "out")})  # the name came from a manifest:
    assert again["out"] == str(tmp_path / "out" / "shelters (1).csv")          # nothing there is replaced
    assert (tmp_path / "out" / "shelters.csv").read_bytes() == data
    assert h.call("file.get", {"cid": m.cid})["out"] is None  # no --out: it is in the store already


def test_an_empty_file_is_a_manifest_without_chunks(h: Harness, tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    m = h.call("file.add", {"path": str(src)})["manifest"]
    assert (m["size_bytes"], m["chunks"]) == (0, [])
    frames, err = h.stream("file.read", {"cid": m["cid"]})
    assert err is None and [e for e, _ in frames] == ["manifest", "done"]
    assert h.call("file.list", {})["cids"] == [m["cid"]]
    h.call("file.get", {"cid": m["cid"], "out": str(tmp_path / "copy")})
    assert (tmp_path / "copy").read_bytes() == b""


def test_get_refuses_bad_input(h: Harness) -> None:
    cid = h.store.add_bytes(b"x").cid
    for bad in ({"cid": "x"}, {"cid": cid, "out": "rel/path"}, {"cid": cid, "sources": "node"},
                {"cid": cid, "sources": ["ed25519:nope"]}):
        assert h.error("file.get", bad).code == "bad_request", bad


def test_get_of_an_unknown_cid_with_no_holders_is_not_found(h: Harness) -> None:
    pytest.importorskip("hearthnet.blobs.transfer")

    class NoHolders(FakeBus):  # no advertisements in the log, no peer offers file.list
        async def admin(self, op: str, **args: Any) -> dict[str, Any]:
            return {"caps": [], "workers": [], "peers": []}

        async def stream(self, *args: Any, **kw: Any) -> Any:
            raise HearthNetError("not_found", "no such node")
            yield  # an async generator

    h.svc.bus = NoHolders()
    err = h.error("file.get", {"cid": "blake3:" + "7" * 64})
    assert err.code == "not_found"


def test_import_verifies_every_chunk_before_writing(h: Harness, tmp_path: Path) -> None:
    data = data_of(3 * CHUNK_SIZE_BYTES + 99)
    wire = wire_manifest(data, filename="bridge.jpg")
    p1, p2 = tmp_path / "part1", tmp_path / "part2"
    p1.write_bytes(data[:CHUNK_SIZE_BYTES + 7])  # parts need not end on chunk boundaries
    p2.write_bytes(data[CHUNK_SIZE_BYTES + 7:])
    tampered = tmp_path / "part2.bad"
    tampered.write_bytes(p2.read_bytes()[:-1] + b"\x00")
    frames, err = h.stream("file.import", {"manifest": wire, "parts": [str(p1), str(tampered)]})
    assert err is not None and err.code == "bad_request"
    assert h.store.store_bytes() == 0  # nothing written
    assert h.error("file.import", {"manifest": wire, "parts": [str(p1)]}).code == "bad_request"  # too short
    assert h.error("file.import", {"manifest": wire, "parts": ["rel"]}).code == "bad_request"
    assert h.error("file.import", {"manifest": wire, "parts": [str(p1), str(tmp_path / "gone")]}).code == "not_found"
    frames, err = h.stream("file.import", {"manifest": wire, "parts": [str(p1), str(p2)]})
    assert err is None and frames[-1] == ("done", {"cid": wire["cid"], "added": True})
    assert {d["stage"] for e, d in frames[:-1]} <= {"verifying", "writing"}
    assert h.store.read_blob_bytes(wire["cid"]) == data
    assert h.call("file.import", {"manifest": wire, "parts": [str(p1), str(p2)]}) == {"cid": wire["cid"],
                                                                                      "added": False}
    assert h.bus.of("file.cid.advertised") == [{"cid": wire["cid"], "sizes_bytes": len(data)}]


# --------------------------------------------------------------------------- pins, gc, status, verify


def test_pin_unpin_and_the_unpinned_event(h: Harness) -> None:
    m = h.store.add_bytes(b"keep me")
    assert h.call("file.pin", {"cid": m.cid}) == {"cid": m.cid, "pinned": True}
    assert h.store.is_pinned(m.cid)
    assert h.call("file.unpin", {"cid": m.cid}) == {"cid": m.cid, "pinned": False}
    assert h.bus.of("file.cid.unpinned") == [{"cid": m.cid}]
    h.call("file.unpin", {"cid": m.cid})  # not pinned any more: no second event
    assert len(h.bus.of("file.cid.unpinned")) == 1
    unknown = "blake3:" + "1" * 64
    assert h.error("file.pin", {"cid": unknown}).code == "not_found"
    assert h.error("file.unpin", {"cid": unknown}).code == "not_found"
    assert h.error("file.pin", {"cid": "zz"}).code == "bad_request"


def test_a_completed_blob_is_told_to_the_peers_that_take_advertisements(h: Harness, tmp_path: Path) -> None:
    h.bus.remote = [{"name": "file.advertise", "local": False, "node_id": PEER},
                    {"name": "file.advertise", "local": False, "node_id": OTHER},  # fails: no harm
                    {"name": "file.read", "local": False, "node_id": keys.generate().node_id_full},
                    {"name": "file.advertise", "local": True, "node_id": ME}]
    src = tmp_path / "f"
    src.write_bytes(b"news")
    cid = h.call("file.add", {"path": str(src)})["manifest"]["cid"]
    h.loop.run_until_complete(asyncio.gather(*h.svc._telling))
    assert sorted(h.bus.told) == sorted([(PEER, [cid]), (OTHER, [cid])])
    h.call("file.add", {"path": str(src)})  # already advertised: nobody is told twice
    assert len(h.bus.told) == 2


def test_an_event_the_ledger_cannot_take_does_not_fail_the_add(h: Harness, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"data")
    h.bus.ledger_down = True
    assert h.call("file.add", {"path": str(src)})["added"] is True


def test_gc_evicts_unpinned_lru_blobs_above_the_threshold(tmp_path: Path) -> None:
    h = Harness(tmp_path, capacity_bytes=10 * CHUNK_SIZE_BYTES, gc_high=0.9, gc_low=0.3)
    try:
        old = h.store.add_bytes(data_of(2 * CHUNK_SIZE_BYTES))
        os.utime(h.store.manifest_path(old.cid), (1, 1))
        kept = h.store.add_bytes(data_of(2 * CHUNK_SIZE_BYTES))
        h.store.pin(kept.cid)
        os.utime(h.store.manifest_path(kept.cid), (0, 0))
        newer = h.store.add_bytes(data_of(CHUNK_SIZE_BYTES))
        h.loop.run_until_complete(h.svc.ready())
        h.store.gc_high = 0.4  # 5 of 10 chunks used: now above the threshold
        out = h.call("file.gc", {})
        assert old.cid in out["evicted"] and kept.cid not in out["evicted"] and out["freed_bytes"] > 0
        assert h.store.has_blob(kept.cid) and not h.store.has_manifest(old.cid)
        assert old.cid not in h.call("file.list", {})["cids"] and newer.cid
    finally:
        h.close()


def test_status_counts_the_store(h: Harness) -> None:
    a = h.store.add_bytes(b"a")
    h.store.pin(a.cid)
    h.call("file.put", {"manifest": wire_manifest(data_of(10))})  # incomplete
    out = h.call("file.status", {})
    assert set(out) == {"blobs", "complete", "pinned", "store_bytes", "capacity_bytes", "free_bytes", "fraction",
                        "transfers"}
    assert out["transfers"]["yielding"] is False  # no detector: online behaviour
    assert (out["blobs"], out["complete"], out["pinned"]) == (2, 1, 1)
    assert out["store_bytes"] == h.store.store_bytes() > 0
    h.call("file.put", {"manifest": wire_manifest(b"second")})  # a change is counted at once
    h.call("file.put", {"manifest_cid": wire_manifest(b"second")["cid"], "chunks": [chunk_entry(b"second", 0)]})
    assert (h.call("file.status", {})["blobs"], h.call("file.status", {})["complete"]) == (3, 2)


def test_verify_rehashes_a_sample_and_finds_a_corrupt_chunk(h: Harness) -> None:
    m = h.store.add_bytes(data_of(4 * CHUNK_SIZE_BYTES))
    assert h.call("file.verify", {"sample": 8}) == {"checked": 4, "bad": 0, "corrupt": []}
    path = h.store.chunk_path(m.chunks[3])
    path.write_bytes(path.read_bytes()[:-1] + b"?")
    out = h.call("file.verify", {"sample": 4})
    assert out == {"checked": 4, "bad": 1, "corrupt": [m.chunks[3]]}
    assert not h.store.has_blob(m.cid) and m.cid not in h.call("file.list", {})["cids"]
    for bad in (0, 5000, "3"):
        assert h.error("file.verify", {"sample": bad}).code == "bad_request"


def test_a_caller_leaving_an_add_stops_the_hashing_thread(h: Harness, tmp_path: Path) -> None:
    """Closing the stream (the caller went away) makes the work's next progress call
    raise, so the store's add stops and cleans up after itself."""
    import threading

    src = tmp_path / "f"
    src.write_bytes(b"x" * 10)
    step, stopped = threading.Event(), threading.Event()

    def slow_add(path: Path, *, mime_type: Any = None, progress: Any = None) -> Any:
        try:
            for n in range(1, 1000):
                progress(n)  # the first value reaches the stream at once
                step.wait()
        except Exception:
            stopped.set()
            raise
        raise AssertionError("the add was not stopped")

    h.store.add_file = slow_add  # type: ignore[method-assign]

    async def go() -> None:
        frames = await h.caps["file.add"].handler(h._req("file.add", {"path": str(src)}, True, ME))
        assert (await frames.__anext__())[0] == "progress"
        await frames.aclose()
        step.set()
        await asyncio.to_thread(stopped.wait)

    h.loop.run_until_complete(go())
    assert stopped.is_set() and h.bus.of("file.cid.advertised") == []


def test_a_completed_put_collects_garbage_above_the_threshold(tmp_path: Path) -> None:
    h = Harness(tmp_path, capacity_bytes=10 * CHUNK_SIZE_BYTES, gc_high=0.5, gc_low=0.4)
    try:
        old = h.store.add_bytes(data_of(2 * CHUNK_SIZE_BYTES))
        os.utime(h.store.manifest_path(old.cid), (1, 1))
        h.loop.run_until_complete(h.svc.ready())
        data = data_of(3 * CHUNK_SIZE_BYTES)
        wire = wire_manifest(data)
        h.call("file.put", {"manifest": wire})
        h.call("file.put", {"manifest_cid": wire["cid"], "chunks": [chunk_entry(data, i) for i in range(3)]})
        assert not h.store.has_manifest(old.cid) and h.store.has_blob(wire["cid"])  # 5 of 10 > 0.5: LRU out
        assert h.call("file.list", {})["cids"] == [wire["cid"]]
    finally:
        h.close()


def test_from_config_names_a_store_it_cannot_open(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from hearthnet.identity.keys import save

    kp = keys.generate()
    save(kp, tmp_path / "keys")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = SimpleNamespace(identity=SimpleNamespace(keys_dir=tmp_path / "keys"),
                          file=SimpleNamespace(blobs_dir=blocker / "blobs", gc_threshold=0.8, gc_target=0.7,
                                               min_free_bytes=0, capacity_bytes=0),
                          paths=SimpleNamespace(broker_clients_endpoint="ipc:///nonexistent"))
    with pytest.raises(HearthNetError) as err:
        FileService.from_config(cfg)
    assert str(blocker / "blobs") in err.value.message
