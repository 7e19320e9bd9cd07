"""The blob store: layout, verification on read and write, atomic writes, pins, LRU GC,
free-space refusal."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, BlobError, hash_bytes
from hearthnet.blobs.store import BlobStore

MB = 1024 * 1024


def blob_data(n: int, seed: int = 0) -> bytes:
    """`n` bytes no other call returns (every chunk distinct): `seed` only names the call."""
    return os.urandom(n)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", min_free_bytes=0)


def test_layout_is_sharded_and_every_file_has_a_manifest(store: BlobStore) -> None:
    m = store.add_bytes(b"hello", filename="h.txt")
    chunk = hash_bytes(b"hello")
    hexed = chunk.split(":")[1]
    assert (store.root / hexed[:2] / f"{hexed[2:]}.bin").read_bytes() == b"hello"
    assert store.manifest_path(m.cid).is_file() and m.chunks == (chunk,)
    assert store.has_blob(m.cid) and store.read_blob_bytes(m.cid) == b"hello"
    assert store.read_manifest(m.cid).filename == "h.txt"


def test_file_round_trip_in_chunks(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = blob_data(3 * CHUNK_SIZE_BYTES + 17)
    src.write_bytes(data)
    seen: list[int] = []
    m = store.add_file(src, progress=seen.append)
    assert len(m.chunks) == 4 and m.size_bytes == len(data) and seen[-1] == len(data)
    out = tmp_path / "out" / "copy.bin"
    store.export(m.cid, out)
    assert out.read_bytes() == data
    again = store.add_file(src)
    assert again.cid == m.cid  # idempotent


def test_a_wrong_chunk_is_refused_on_write(store: BlobStore) -> None:
    with pytest.raises(BlobError) as err:
        store.write_chunk(hash_bytes(b"a"), b"b")
    assert err.value.code == "bad_request" and not store.has_chunk(hash_bytes(b"a"))


def test_a_corrupt_chunk_on_disk_is_removed_when_read(store: BlobStore) -> None:
    m = store.add_bytes(b"precious bytes")
    path = store.chunk_path(m.chunks[0])
    raw = bytearray(path.read_bytes())
    raw[3] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobError) as err:
        store.read_chunk(m.chunks[0])
    assert err.value.code == "not_found" and not path.exists()
    assert not store.has_blob(m.cid) and store.missing(store.read_manifest(m.cid)) == [0]


def test_a_torn_write_never_passes_as_a_chunk(store: BlobStore) -> None:
    """What a crash mid-write leaves: a temp file (removed at the next open), never a
    half chunk under its CID; a truncated file under the name fails verification."""
    data = blob_data(CHUNK_SIZE_BYTES)
    cid = hash_bytes(data)
    path = store.chunk_path(cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / ".abc.tmp").write_bytes(data[:1000])
    reopened = BlobStore(store.root, min_free_bytes=0)
    assert not list(path.parent.glob(".*.tmp")) and not reopened.has_chunk(cid)
    path.write_bytes(data[:1000])  # even if a half file got the name (it cannot: rename)
    with pytest.raises(BlobError):
        reopened.read_chunk(cid)


def test_pins_persist_and_survive_gc(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "b", capacity_bytes=10 * MB, min_free_bytes=0)
    pinned = store.add_bytes(blob_data(3 * MB, 1))
    store.pin(pinned.cid)
    assert BlobStore(tmp_path / "b").pinned() == [pinned.cid]
    for seed in range(2, 6):
        store.add_bytes(blob_data(2 * MB, seed))
    assert store.usage().fraction <= 0.8 and store.has_blob(pinned.cid)


def test_lru_eviction_at_80_percent_down_to_70(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "b", capacity_bytes=10 * MB + 64 * 1024, min_free_bytes=0)  # room for manifests
    blobs = [store.add_bytes(blob_data(2 * MB, seed)) for seed in range(4)]  # 8 MB: 80 %, not above
    assert all(store.has_blob(b.cid) for b in blobs)
    for n, b in enumerate(blobs):  # make the LRU order explicit: blobs[1] used least recently
        os.utime(store.manifest_path(b.cid), (1000 + n, 1000 + n))
    os.utime(store.manifest_path(blobs[1].cid), (10, 10))
    store.read_manifest(blobs[0].cid)  # a read refreshes the stamp: now the newest
    extra = store.add_bytes(blob_data(2 * MB, 9))  # 10 MB: above 80 % -> two evicted, down to <= 70 %
    kept = {b.cid for b in blobs if store.has_blob(b.cid)}
    assert blobs[1].cid not in kept and blobs[2].cid not in kept and blobs[0].cid in kept
    assert store.has_blob(extra.cid) and store.usage().fraction <= 0.7


def test_chunks_shared_by_two_blobs_stay_for_the_other(store: BlobStore) -> None:
    a = store.add_bytes(b"shared")
    b = store.add_bytes(b"shared", filename="other")  # same content, same CID
    assert a.cid == b.cid
    c = store.add_bytes(blob_data(CHUNK_SIZE_BYTES, 3) + b"shared")
    store.delete_blob(c.cid)
    assert store.has_blob(a.cid)


def test_a_put_that_would_leave_too_little_free_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "b", capacity_bytes=4 * MB, min_free_bytes=MB)
    pinned = store.add_bytes(blob_data(2 * MB, 1))
    store.pin(pinned.cid)
    before = store.store_bytes()
    src = tmp_path / "big"
    src.write_bytes(blob_data(2 * MB, 2))
    with pytest.raises(BlobError) as err:
        store.add_file(src)
    assert err.value.code == "capacity_exceeded"
    assert store.store_bytes() == before and [b["cid"] for b in store.blobs()] == [pinned.cid]


def test_room_is_made_by_evicting_unpinned_blobs_first(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "b", capacity_bytes=4 * MB, min_free_bytes=MB, gc_high=1.0, gc_low=1.0)
    old = store.add_bytes(blob_data(2 * MB, 1))
    new = store.add_bytes(blob_data(MB, 2))  # needs old gone
    assert store.has_blob(new.cid) and not store.has_blob(old.cid)


def test_disk_full_mid_add_leaves_nothing(store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "f"
    src.write_bytes(blob_data(3 * CHUNK_SIZE_BYTES, 4))
    calls = {"n": 0}
    real = store._write_new

    def fill(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise BlobError("capacity_exceeded", "disk full while writing")
        real(path, data)

    monkeypatch.setattr(store, "_write_new", fill)
    with pytest.raises(BlobError) as err:
        store.add_file(src)
    assert err.value.code == "capacity_exceeded"
    assert store.store_bytes() == 0 and not list(store.root.glob("*/*.bin"))


def test_missing_paths_are_clear_errors(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(BlobError) as err:
        store.add_file(tmp_path / "nope.pdf")
    assert err.value.code == "not_found" and "nope.pdf" in err.value.message
    with pytest.raises(BlobError) as err:
        store.read_manifest(hash_bytes(b"unknown"))
    assert err.value.code == "not_found"


def test_orphan_chunks_are_collected_by_gc(store: BlobStore) -> None:
    data = blob_data(1000, 7)
    store.write_chunk(hash_bytes(data), data)
    os.utime(store.chunk_path(hash_bytes(data)), (1, 1))
    kept = store.add_bytes(b"kept")
    result = store.gc()
    assert result.freed_bytes == 1000 and not store.has_chunk(hash_bytes(data)) and store.has_blob(kept.cid)


def test_a_read_only_view_creates_repairs_and_writes_nothing(store: BlobStore, tmp_path: Path) -> None:
    assert not BlobStore(tmp_path / "absent", read_only=True).blobs() and not (tmp_path / "absent").exists()
    m = store.add_bytes(b"the worker's bytes")
    store.pin(m.cid)
    view = BlobStore(store.root, read_only=True)
    assert view.has_blob(m.cid) and view.pinned() == [m.cid] and view.read_blob_bytes(m.cid) == b"the worker's bytes"
    path = store.chunk_path(m.chunks[0])
    raw = bytearray(path.read_bytes())
    raw[0] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobError) as err:
        view.read_chunk(m.chunks[0])
    assert err.value.code == "not_found" and path.exists()  # reported, not removed
    for write in (lambda: view.add_bytes(b"x"), lambda: view.pin(hash_bytes(b"y")), lambda: view.delete_blob(m.cid)):
        with pytest.raises(BlobError):
            write()
    assert view.blobs()[0]["cid"] == m.cid
