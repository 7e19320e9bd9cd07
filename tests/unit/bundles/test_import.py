"""Import: everything verified before anything is imported, events through the ledger's
ingest, blobs through file.put, idempotent; have summaries and `--since` differences."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES
from hearthnet.bundles.export import ExportOptions, export_bundle
from hearthnet.bundles.format import BUNDLE_FILE, EVENTS_FILE, BundleError, have_name, piece_name
from hearthnet.bundles.importer import import_bundle
from hearthnet.bundles.summary import build_have, known_from, write_have
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys

from tests.unit.bundles.conftest import FakeNode

PIECE = 300_000


def export(node: FakeNode, out: Path, **kw: Any) -> Any:
    return export_bundle(node, node.reader, node.kp, node.community_id,
                         ExportOptions(out=out, piece_size=kw.pop("piece_size", PIECE), **kw))


def do_import(node: FakeNode, root: Path, **kw: Any) -> Any:
    return import_bundle(root, node, community_id=node.community_id, kp=node.kp, store=node.reader, **kw)


def snapshot(node: FakeNode) -> tuple[set[str], list[dict[str, Any]]]:
    return set(node.events), node.store.blobs()


def test_round_trip_then_idempotent(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    for n in range(3):
        a.append(f"shelter list v{n}")
    data = os.urandom(40 * CHUNK_SIZE_BYTES + 99)  # 41 chunks: three put batches
    cid = a.store.add_bytes(data, filename="shelters.pdf").cid
    root = tmp_path / "bundle"
    export(a, root)

    first = do_import(b, root).to_dict()
    assert first["events"] == {"in_bundle": 3, "accepted": 3, "rejected": 0, "duplicates": 0,
                               "rejected_reasons": []}
    assert first["blobs"] == [{"cid": cid, "filename": "shelters.pdf", "size_bytes": len(data), "added": True,
                               "chunks_sent": 41, "complete": True}]
    assert first["blobs_added"] == 1 and first["exporter"] == a.kp.node_id_full
    assert set(b.events) == set(a.events)
    assert b.store.read_blob_bytes(cid) == data and b.store.read_manifest(cid).filename == "shelters.pdf"
    assert b.calls.count("file.put") == 1 + 3  # the manifest, then 16 + 16 + 9 chunks

    second = do_import(b, root).to_dict()
    assert second["events"]["accepted"] == 0 and second["events"]["duplicates"] == 3
    assert second["blobs"][0]["added"] is False and second["blobs"][0]["chunks_sent"] == 0
    assert second["blobs_added"] == 0


def test_resumes_a_half_stored_blob(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    data = os.urandom(5 * CHUNK_SIZE_BYTES)
    m = a.store.add_bytes(data)
    for i in (0, 3):  # B already has two of the chunks
        b.store.write_chunk(m.chunks[i], data[i * CHUNK_SIZE_BYTES:(i + 1) * CHUNK_SIZE_BYTES])
    export(a, tmp_path / "b")
    out = do_import(b, tmp_path / "b").to_dict()
    assert out["blobs"][0]["chunks_sent"] == 3 and b.store.read_blob_bytes(m.cid) == data


@pytest.mark.parametrize("attack", ["piece", "events", "signature", "stranger"])
def test_a_bad_bundle_imports_nothing(pair: tuple[FakeNode, FakeNode], tmp_path: Path, attack: str) -> None:
    a, b = pair
    for n in range(4):
        a.append(f"m{n}")
    cid = a.store.add_bytes(os.urandom(2 * CHUNK_SIZE_BYTES)).cid
    root = tmp_path / "b"
    export(a, root)
    if attack == "piece":  # the last byte of the last piece: only found at the very end
        path = root / piece_name(cid, 1)
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 1
        path.write_bytes(bytes(raw))
    elif attack == "events":
        (root / EVENTS_FILE).write_bytes((root / EVENTS_FILE).read_bytes().replace(b"m3", b"m9"))
    else:
        doc = json.loads((root / BUNDLE_FILE).read_text())
        if attack == "stranger":
            stranger = keys.generate()
            doc["exporter"] = stranger.node_id_full
            doc = stranger.sign(doc)
        else:
            doc["since"] = {"kind": "lamport"}
        (root / BUNDLE_FILE).write_text(json.dumps(doc))
    before = snapshot(b)
    with pytest.raises(HearthNetError) as exc:
        do_import(b, root)
    assert exc.value.exit_code == 4
    assert snapshot(b) == before
    assert "community.log.ingest" not in b.calls and "file.put" not in b.calls
    assert not (root / "have").exists()


def test_refused_events_are_reported(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    """A validly signed event by someone B does not know: the ledger refuses it, the rest lands."""
    a, b = pair
    a.append("ok")
    stranger = FakeNode(keys.generate(), a.community, a.store, a.members)
    ev = stranger.append("who am I")
    a.events[ev["event_id"]] = ev
    out = do_import(b, export(a, tmp_path / "b").out).to_dict()["events"]
    assert out["accepted"] == 1 and out["rejected"] == 1
    assert out["rejected_reasons"] == [{"event_id": ev["event_id"], "reason": "unknown_author"}]


def test_no_file_worker_means_nothing_imported(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    a.append("x")
    a.store.add_bytes(b"some file")
    export(a, tmp_path / "b")
    b.file_worker = False
    with pytest.raises(HearthNetError) as exc:
        do_import(b, tmp_path / "b")
    assert exc.value.code == "not_implemented" and not b.events


# --------------------------------------------------------------------------- have / since


def test_have_summary_then_export_since_carries_only_the_difference(pair: tuple[FakeNode, FakeNode],
                                                                   tmp_path: Path) -> None:
    a, b = pair
    old = [a.append(f"old {n}") for n in range(3)]
    first_cid = a.store.add_bytes(os.urandom(1000), filename="one").cid
    root = tmp_path / "stick"
    export(a, root)
    result = do_import(b, root)
    have = root / have_name(b.kp.node_id_full)
    assert result.have == have and ":" not in have.name
    doc = json.loads(have.read_text())
    assert doc["node_id"] == b.kp.node_id_full and set(doc["event_ids"]) == {e["event_id"] for e in old}
    assert doc["blobs"] == [first_cid]

    b_only = b.append("B wrote this meanwhile")  # B has events A lacks: never a reason to resend
    new = [a.append(f"new {n}") for n in range(2)]
    second_cid = a.store.add_bytes(os.urandom(2000), filename="two").cid
    nxt = export(a, tmp_path / "stick2", since=str(root))
    d = nxt.to_dict()
    assert d["events"]["count"] == 2 and d["events"]["skipped"] == 3
    assert [x["cid"] for x in d["blobs"]] == [second_cid] and d["blobs_skipped"] == [first_cid]
    assert d["since"]["kind"] == "have" and d["since"]["nodes"] == [b.kp.node_id_full]
    lines = (tmp_path / "stick2" / EVENTS_FILE).read_bytes().splitlines()
    assert {json.loads(x)["event_id"] for x in lines} == {e["event_id"] for e in new}
    do_import(b, tmp_path / "stick2")
    assert set(a.events) | {b_only["event_id"]} == set(b.events)

    # the same dir as --since and --out: the summary is read before the dir is replaced
    a.append("third")
    again = export(a, root, since=str(root), force=True).to_dict()
    assert again["events"]["count"] == 3 and have.is_file()  # 2 "new" + "third": B's summary is older


def test_since_intersects_several_summaries(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    e1, _ = a.append("1"), a.append("2")
    root = tmp_path / "stick"
    export(a, root)
    do_import(b, root)
    c = FakeNode(keys.generate(), a.community, b.store, a.members)  # C holds only e1
    c.events[e1["event_id"]] = e1
    write_have(root, build_have(c, c.reader, c.kp, c.community_id))
    known = known_from(str(root), a.community_id)
    assert known.event_ids == {e1["event_id"]} and len(known.nodes) == 2
    assert export(a, tmp_path / "next", since=str(root)).manifest.events.count == 1


def test_since_forms(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    for n in range(4):
        a.append(str(n))
    root = tmp_path / "stick"
    export(a, root)
    a.append("later")
    # a bundle nobody summarised: assume it was delivered
    assert export(a, tmp_path / "x", since=str(root)).manifest.events.count == 1
    # a lamport number
    assert export(a, tmp_path / "y", since="3").manifest.events.count == 2
    # a summary file; a forged one is ignored (we send more, never less)
    do_import(b, root)
    have = root / have_name(b.kp.node_id_full)
    assert export(a, tmp_path / "z", since=str(have)).manifest.events.count == 1
    doc = json.loads(have.read_text())
    doc["event_ids"] = sorted(a.events)
    have.write_text(json.dumps(doc))
    r = export(a, tmp_path / "w", since=str(root))
    assert r.manifest.events.count == 1 and r.manifest.since["kind"] == "bundle" and len(r.ignored) == 1
    with pytest.raises(BundleError) as exc:
        export(a, tmp_path / "v", since=str(have))
    assert exc.value.exit_code == 4
    with pytest.raises(HearthNetError) as exc2:
        export(a, tmp_path / "u", since=str(tmp_path / "nowhere"))
    assert exc2.value.exit_code == 2


def test_read_only_bundle_dir_still_imports(pair: tuple[FakeNode, FakeNode], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pair
    a.append("x")
    root = tmp_path / "b"
    export(a, root)

    def read_only(*_: Any) -> None:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr("hearthnet.bundles.importer.write_have", read_only)
    out = do_import(b, root).to_dict()
    assert out["events"]["accepted"] == 1 and out["have"] is None and "could not write" in out["have_error"]


# --------------------------------------------------------------------------- store through the node


class StreamingNode(FakeNode):
    """Adds the file worker's file.ls and file.read stream (for a store we cannot read)."""

    corrupt: int | None = None

    def _file_ls(self, inp: dict[str, Any]) -> dict[str, Any]:
        return {"files": [{"cid": b["cid"], "complete": b["complete"], "pinned": b["pinned"]}
                          for b in self.store.blobs()]}

    def stream(self, capability: str, inp: dict[str, Any]) -> Any:
        from hearthnet.blobs.cids import b64encode

        assert capability == "file.read"
        m = self.store.read_manifest(inp["cid"])
        yield "manifest", m.to_wire()
        for i in range(len(m.chunks)) if inp.get("chunks") is None else inp["chunks"]:
            data = self.store.read_chunk(m.chunks[i])
            if i == self.corrupt:
                data = b"x" + data[1:]
            yield "chunk", {"i": i, "cid": m.chunks[i], "data_b64": b64encode(data)}
        yield "done", {}


def test_export_through_the_file_worker(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    from hearthnet.blobs.cids import BlobError
    from hearthnet.bundles.node import NodeBlobs, blob_view

    a, b = pair
    node = StreamingNode(a.kp, a.community, a.store, a.members)
    data = os.urandom(2 * CHUNK_SIZE_BYTES + 7)
    cid = a.store.add_bytes(data).cid
    a.store.pin(cid)
    view = NodeBlobs(node)
    assert view.complete_cids() == [cid] and view.pinned() == [cid]
    export_bundle(node, view, node.kp, node.community_id, ExportOptions(out=tmp_path / "b", pinned_only=True))
    do_import(b, tmp_path / "b")
    assert b.store.read_blob_bytes(cid) == data

    node.corrupt = 1
    with pytest.raises(BlobError):
        export_bundle(node, NodeBlobs(node), node.kp, node.community_id, ExportOptions(out=tmp_path / "c"))
    assert isinstance(blob_view(a.store.root, node), type(a.reader))


def test_ingest_batches_stay_under_the_body_limit(pair: tuple[FakeNode, FakeNode], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pair
    for n in range(10):
        a.append("x" * 1000)
    export(a, tmp_path / "b")
    monkeypatch.setattr("hearthnet.bundles.importer.INGEST_BATCH_BYTES", 3000)
    out = do_import(b, tmp_path / "b", write_summary=False).to_dict()
    assert out["events"]["accepted"] == 10 and 3 <= b.calls.count("community.log.ingest") <= 5


def test_no_room_for_the_files_ingests_no_event(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    from hearthnet.blobs.store import BlobStore

    a, b = pair
    a.append("x")
    data = os.urandom(3 * CHUNK_SIZE_BYTES)
    a.store.add_bytes(data)
    export(a, tmp_path / "b")
    b.store = BlobStore(b.store.root, min_free_bytes=0, capacity_bytes=CHUNK_SIZE_BYTES)
    with pytest.raises(HearthNetError) as exc:
        do_import(b, tmp_path / "b")
    assert exc.value.exit_code == 5 and not b.events
