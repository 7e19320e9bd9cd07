"""Bundle layout, signing, splitting into pieces, and that any forgery or tampering is
caught by `verify_bundle` before anything could be imported."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, BlobError
from hearthnet.bundles.export import ExportOptions, export_bundle
from hearthnet.bundles.format import BUNDLE_FILE, EVENTS_FILE, BundleError, check_signature, piece_name
from hearthnet.bundles.pieces import iter_chunks
from hearthnet.bundles.verify import verify_bundle
from hearthnet.errors import HearthNetError
from hearthnet.identity import keys
from hearthnet.identity.keys import KeyPair

from tests.unit.bundles.conftest import FakeNode

PIECE = 100_000  # tiny pieces, deliberately not a multiple of the chunk size


def export(node: FakeNode, out: Path, **kw: Any) -> Any:
    return export_bundle(node, node.reader, node.kp, node.community_id,
                         ExportOptions(out=out, piece_size=kw.pop("piece_size", PIECE), **kw))


def verify(node: FakeNode, root: Path) -> Any:
    return verify_bundle(root, community_id=node.community_id, members=node.call("community.members.get", {}))


@pytest.fixture
def bundle(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> tuple[Path, bytes, str]:
    a, _ = pair
    for n in range(5):
        a.append(f"message {n}")
    data = os.urandom(3 * CHUNK_SIZE_BYTES + 1234)
    cid = a.store.add_bytes(data, filename="flood-map.pdf").cid
    (tmp_path / "stick").mkdir()
    export(a, tmp_path / "stick" / "bundle")
    return tmp_path / "stick" / "bundle", data, cid


def resign(root: Path, kp: KeyPair, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads((root / BUNDLE_FILE).read_text())
    change(doc)
    (root / BUNDLE_FILE).write_text(json.dumps(kp.sign(doc)))


def flip(path: Path, offset: int = 10) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def code_of(exc: pytest.ExceptionInfo[HearthNetError]) -> tuple[str, int]:
    return exc.value.code, exc.value.exit_code


# --------------------------------------------------------------------------- layout


def test_layout_pieces_and_signature(bundle: tuple[Path, bytes, str], pair: tuple[FakeNode, FakeNode]) -> None:
    root, data, cid = bundle
    a, b = pair
    doc = json.loads((root / BUNDLE_FILE).read_text())
    assert doc["format"] == "hearthnet-bundle" and doc["format_version"] == 1
    assert doc["exporter"] == a.kp.node_id_full and doc["community_id"] == a.community_id
    assert check_signature(doc) == a.kp.node_id_full
    assert doc["events"]["count"] == 5 and doc["since"] is None
    [blob] = doc["blobs"]
    assert blob["manifest"]["cid"] == cid and blob["manifest"]["filename"] == "flood-map.pdf"
    names = [p["name"] for p in blob["pieces"]]
    assert names == [piece_name(cid, k) for k in range(-(-len(data) // PIECE))]
    for name in [*names, BUNDLE_FILE, EVENTS_FILE]:  # FAT-safe names, no piece over the limit
        assert ":" not in name and (root / name).is_file()
    assert all(p["size_bytes"] <= PIECE for p in blob["pieces"])
    assert b"".join((root / n).read_bytes() for n in names) == data  # `cat *.part*` is the file
    lines = (root / EVENTS_FILE).read_bytes().splitlines()
    assert [json.loads(x)["data"]["body"] for x in lines] == [f"message {n}" for n in range(5)]
    checked = verify(b, root)  # B checks it against its own view of the members
    assert checked.manifest.blobs[0].manifest.cid == cid and checked.exporter_level == "member"


def test_chunks_are_reassembled_across_piece_boundaries(bundle: tuple[Path, bytes, str],
                                                        pair: tuple[FakeNode, FakeNode]) -> None:
    root, data, _ = bundle
    [blob] = verify(pair[1], root).manifest.blobs
    got = list(iter_chunks(root, blob))
    assert [i for i, _ in got] == list(range(4))
    assert b"".join(c for _, c in got) == data


def test_big_pieces_default_and_empty_blob(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    one = a.store.add_bytes(os.urandom(CHUNK_SIZE_BYTES + 5)).cid
    empty = a.store.add_bytes(b"").cid
    result = export(a, tmp_path / "b", piece_size=2 * 1024 ** 3)
    pieces = {x["cid"]: x["pieces"] for x in result.to_dict()["blobs"]}
    assert pieces == {one: 1, empty: 0}
    verify(b, tmp_path / "b")


# --------------------------------------------------------------------------- forgery


def test_altered_manifest_field_breaks_the_signature(bundle: tuple[Path, bytes, str],
                                                     pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, _ = bundle
    doc = json.loads((root / BUNDLE_FILE).read_text())
    doc["created_at"] = "2020-01-01T00:00:00Z"
    (root / BUNDLE_FILE).write_text(json.dumps(doc))
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("invalid_signature", 4)


def test_signed_by_someone_else_in_the_exporters_name(bundle: tuple[Path, bytes, str],
                                                      pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, _ = bundle
    resign(root, keys.generate(), lambda d: None)  # exporter still names A
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("invalid_signature", 4)


def test_stranger_and_revoked_exporters_are_refused(bundle: tuple[Path, bytes, str],
                                                    pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, _ = bundle
    a, b = pair
    stranger = keys.generate()
    resign(root, stranger, lambda d: d.update(exporter=stranger.node_id_full))
    with pytest.raises(HearthNetError) as exc:
        verify(b, root)
    assert code_of(exc) == ("unauthorized", 4)
    resign(root, a.kp, lambda d: d.update(exporter=a.kp.node_id_full))
    verify(b, root)
    b.members.remove(a.kp.node_id_full)
    b.revoked.append(a.kp.node_id_full)
    with pytest.raises(HearthNetError) as exc:
        verify(b, root)
    assert code_of(exc) == ("revoked", 4)


def test_other_community_is_refused(bundle: tuple[Path, bytes, str], pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, _ = bundle
    with pytest.raises(BundleError) as exc:
        verify_bundle(root, community_id=keys.generate().node_id_full, members=None)
    assert code_of(exc) == ("community_mismatch", 2)


# --------------------------------------------------------------------------- tampering


def test_flipped_byte_in_a_piece(bundle: tuple[Path, bytes, str], pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, cid = bundle
    flip(root / piece_name(cid, 2), 777)
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("bundle_tampered", 4)


@pytest.mark.parametrize("how", ["truncate", "extend", "remove"])
def test_piece_of_the_wrong_size_or_missing(bundle: tuple[Path, bytes, str], pair: tuple[FakeNode, FakeNode],
                                             how: str) -> None:
    root, _, cid = bundle
    path = root / piece_name(cid, 0)
    if how == "remove":
        path.unlink()
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[:-1] if how == "truncate" else raw + b"x")
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("bundle_tampered", 4)


def test_flipped_byte_in_events(bundle: tuple[Path, bytes, str], pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, _ = bundle
    flip(root / EVENTS_FILE, 40)
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("bundle_tampered", 4)


def test_events_hash_updated_without_resigning(bundle: tuple[Path, bytes, str], pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, _ = bundle
    flip(root / EVENTS_FILE, 40)
    doc = json.loads((root / BUNDLE_FILE).read_text())
    import blake3

    doc["events"]["hash"] = "blake3:" + blake3.blake3((root / EVENTS_FILE).read_bytes()).hexdigest()
    (root / BUNDLE_FILE).write_text(json.dumps(doc))
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("invalid_signature", 4)


def test_forged_event_in_a_signed_bundle(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    """A member signs a bundle holding an event whose own signature is bad: refused whole."""
    a, b = pair
    good = a.append("fine")
    bad = dict(a.append("forged"))
    bad["data"] = {**bad["data"], "body": "changed after signing"}
    a.events[bad["event_id"]] = bad
    export(a, tmp_path / "b")
    with pytest.raises(BundleError) as exc:
        verify(b, tmp_path / "b")
    assert code_of(exc) == ("invalid_signature", 4)
    assert good["event_id"] not in b.events


def test_pieces_that_match_their_hashes_but_not_the_chunks(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    """The exporter signed piece hashes of bytes that are not the blob: still refused."""
    a, b = pair
    cid = a.store.add_bytes(os.urandom(CHUNK_SIZE_BYTES + 10)).cid
    root = tmp_path / "b"
    export(a, root)
    path = root / piece_name(cid, 0)
    flip(path, 5)
    import blake3

    def fix(doc: dict[str, Any]) -> None:
        doc["blobs"][0]["pieces"][0]["hash"] = "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()

    resign(root, a.kp, fix)
    with pytest.raises(BundleError) as exc:
        verify(b, root)
    assert code_of(exc) == ("bundle_tampered", 4)


@pytest.mark.parametrize("change", [
    lambda d: d["blobs"][0]["pieces"][0].update(name="../../etc/passwd"),
    lambda d: d["blobs"][0]["pieces"][0].update(name="blobs/x:y.part000"),
    lambda d: d["blobs"][0]["pieces"][0].update(size_bytes=-1),
    lambda d: d["blobs"][0]["manifest"].update(size_bytes=5),
    lambda d: d["blobs"].append(d["blobs"][0]),
    lambda d: d.update(events="nope"),
    lambda d: d.update(format_version=2),
])
def test_malformed_manifest_signed_by_a_member(bundle: tuple[Path, bytes, str], pair: tuple[FakeNode, FakeNode],
                                               change: Callable[[dict[str, Any]], None]) -> None:
    root, _, _ = bundle
    resign(root, pair[0].kp, change)
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("not_a_bundle", 2)


@pytest.mark.parametrize("content", [None, b"", b"[1,2]", b"{" * 100, b'{"format": "other"}'])
def test_not_a_bundle(tmp_path: Path, pair: tuple[FakeNode, FakeNode], content: bytes | None) -> None:
    root = tmp_path / "b"
    root.mkdir()
    if content is not None:
        (root / BUNDLE_FILE).write_bytes(content)
    with pytest.raises(BundleError) as exc:
        verify(pair[1], root)
    assert code_of(exc) == ("not_a_bundle", 2)


# --------------------------------------------------------------------------- export side


def test_export_refuses_to_overwrite_without_force(bundle: tuple[Path, bytes, str],
                                                   pair: tuple[FakeNode, FakeNode]) -> None:
    root, _, _ = bundle
    a, b = pair
    with pytest.raises(BundleError) as exc:
        export(a, root)
    assert code_of(exc) == ("bundle_exists", 2)
    a.append("later")
    assert export(a, root, force=True, no_blobs=True).manifest.events.count == 6
    assert not (root / "blobs").exists()
    verify(b, root)


def test_export_of_an_unknown_cid_is_not_found(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    with pytest.raises(BlobError) as exc:
        export(pair[0], tmp_path / "b", cids=["blake3:" + "ab" * 32])
    assert exc.value.code == "not_found" and exc.value.exit_code == 1
    assert not (tmp_path / "b").exists()  # nothing written


def test_export_never_repairs_the_nodes_store(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    """The store is the file worker's: a corrupt chunk fails the export and stays put."""
    a, _ = pair
    m = a.store.add_bytes(os.urandom(1000))
    chunk = a.store.chunk_path(m.chunks[0])
    flip(chunk, 3)
    with pytest.raises(BlobError) as exc:
        export(a, tmp_path / "b")
    assert exc.value.code == "not_found" and chunk.is_file()
    assert not (tmp_path / "b" / BUNDLE_FILE).exists()


def test_a_fifo_for_a_file_is_refused_without_blocking(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    root = tmp_path / "b"
    export(a, root)  # no events, no blobs: events.jsonl is empty
    (root / EVENTS_FILE).unlink()
    os.mkfifo(root / EVENTS_FILE)
    with pytest.raises(BundleError) as exc:
        verify(b, root)
    assert code_of(exc) == ("bundle_tampered", 4)


def test_export_on_a_sticks_root_keeps_other_files(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    a, b = pair
    stick = tmp_path / "usb"
    (stick / "blobs").mkdir(parents=True)
    (stick / "blobs" / "holiday.jpg").write_bytes(b"mine")
    (stick / "notes.txt").write_text("also mine")
    cid = a.store.add_bytes(os.urandom(10)).cid
    export(a, stick)
    export(a, stick, force=True, no_blobs=True)
    assert (stick / "blobs" / "holiday.jpg").read_bytes() == b"mine" and (stick / "notes.txt").is_file()
    assert not (stick / piece_name(cid, 0)).exists()
    verify(b, stick)


def test_export_into_a_missing_folder_is_refused(pair: tuple[FakeNode, FakeNode], tmp_path: Path) -> None:
    with pytest.raises(HearthNetError) as exc:
        export(pair[0], tmp_path / "media" / "usb" / "hn")  # the stick is not mounted
    assert exc.value.exit_code == 2 and str(tmp_path / "media" / "usb") in exc.value.message
    assert not (tmp_path / "media").exists()
