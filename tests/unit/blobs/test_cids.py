"""CIDs, chunk verification, base64 on the wire, and the manifest CID vector."""
from __future__ import annotations

import pytest

from hearthnet.blobs.cids import BlobError, b64decode, b64encode, hash_bytes, is_cid, verify_chunk
from hearthnet.blobs.manifest import BlobManifest, chunk_count, manifest_cid

HELLO = "blake3:ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
# BLAKE3 of {"chunk_size_bytes":262144,"chunks":["<HELLO>"],"size_bytes":5}, computed once
# outside the project (the object is the manifest's whole hashed content).
HELLO_MANIFEST = "blake3:d362c429129989c82de4c67123985d3ec8873e9b0b342ee559c4cd9b5472c3a9"


def test_chunk_cid_is_blake3_hex() -> None:
    assert hash_bytes(b"hello") == HELLO and is_cid(HELLO)
    assert not is_cid(HELLO.upper()) and not is_cid("blake3:abc") and not is_cid(None)


def test_manifest_cid_is_pinned_and_deterministic() -> None:
    assert manifest_cid([HELLO], 5) == HELLO_MANIFEST
    m = BlobManifest.build([HELLO], 5, filename="a.txt", mime_type="text/plain")
    assert m.cid == HELLO_MANIFEST  # names are advisory: not hashed
    assert BlobManifest.build([HELLO], 5).cid == m.cid


def test_one_bit_flip_is_caught() -> None:
    data = bytearray(b"x" * 1000)
    cid = hash_bytes(bytes(data))
    data[500] ^= 1
    with pytest.raises(BlobError) as err:
        verify_chunk(bytes(data), cid)
    assert err.value.code == "bad_request"


def test_base64_is_url_safe_unpadded_and_both_alphabets_are_read() -> None:
    raw = bytes(range(256))
    text = b64encode(raw)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64decode(text) == raw
    import base64

    assert b64decode(base64.b64encode(raw).decode()) == raw  # standard, padded
    with pytest.raises(BlobError):
        b64decode("***")
    with pytest.raises(BlobError):
        b64decode(12)


def test_wire_round_trip_and_checks() -> None:
    chunks = [hash_bytes(bytes([i]) * 262144) for i in range(2)] + [hash_bytes(b"tail")]
    m = BlobManifest.build(chunks, 2 * 262144 + 4, filename="map.pdf")
    wire = m.to_wire()
    assert wire["chunks"][2] == {"i": 2, "cid": chunks[2]}
    assert BlobManifest.from_wire(wire) == m and m.chunk_size(2) == 4 and m.chunk_size(0) == 262144
    for bad in ({**wire, "cid": HELLO}, {**wire, "size_bytes": 5}, {**wire, "chunk_size_bytes": 1024},
                {**wire, "chunks": wire["chunks"][:2]}, {**wire, "size_bytes": -1}, {**wire, "size_bytes": True},
                {**wire, "chunks": [{"i": 1, "cid": c} for c in chunks]}, {**wire, "chunks": "x"}, [], None):
        with pytest.raises(BlobError) as err:
            BlobManifest.from_wire(bad)
        assert err.value.code == "bad_request"
    with pytest.raises(BlobError):
        BlobManifest.from_wire(wire, expected_cid=HELLO)


def test_advisory_names_with_path_parts_are_dropped() -> None:
    wire = BlobManifest.build([HELLO], 5).to_wire()
    for name in ("../etc/passwd", "a/b", "..", "x\x00y", "z" * 300):
        assert BlobManifest.from_wire({**wire, "filename": name}).filename is None
    assert BlobManifest.from_wire({**wire, "filename": "flood map.pdf"}).filename == "flood map.pdf"


def test_empty_blob_has_no_chunks() -> None:
    assert chunk_count(0) == 0 and BlobManifest.from_wire(BlobManifest.build([], 0).to_wire()).size_bytes == 0
