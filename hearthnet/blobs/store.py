"""The blob store on disk (spec §3.2–3.3). Layout under `file.blobs_dir`:

    <aa>/<rest>.bin             chunk bytes; aa = the first 2 hex digits after `blake3:`
    <aa>/<rest>.manifest.json   a blob manifest (wire form, advisory names included)
    pinned.txt                  pinned manifest CIDs, one per line, exempt from GC

Every chunk is verified against its CID when written and when read; a chunk that fails
on read is deleted (it is as good as absent) and reported `not_found`, so a fetcher
turns to another source. Writes go to a temp file beside the target and are renamed
into place, so a crash leaves either the whole chunk or no chunk under its name (and a
torn temp file, removed at the next open). A blob is complete when its manifest and
every chunk are present; a manifest with missing chunks is a fetch in progress, which is
how an interrupted fetch resumes.

Room: the store's "disk" is the filesystem it lives on, or `capacity_bytes` when set
(tests and small nodes cap the store that way). A write that would leave less than
`min_free_bytes` free first evicts unpinned blobs, least recently used first (a manifest's
mtime is its LRU stamp, refreshed on every read), and is refused `capacity_exceeded` if
that is not enough. After each blob is stored, usage above `gc_high` of the disk evicts
down to `gc_low`.
"""
from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, CID_PREFIX, BlobError, check_cid, hash_bytes, short
from hearthnet.blobs.manifest import BlobManifest
from hearthnet.fsutil import atomic_write

log = logging.getLogger("hearthnet.blobs")

GC_HIGH = 0.80
GC_LOW = 0.70
MIN_FREE_BYTES = 1_000_000_000
ORPHAN_AGE_SECONDS = 3600.0  # a chunk with no manifest this old is left over, not in use
READ_ALL_LIMIT = 100 * 1024 * 1024
Progress = Callable[[int], None]  # bytes done so far


@dataclass(frozen=True)
class Usage:
    capacity_bytes: int  # the disk, or file.capacity_bytes
    used_bytes: int  # of that disk (the store's own bytes when capacity_bytes is set)
    free_bytes: int
    store_bytes: int  # chunks + manifests in the store

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes else 0.0


@dataclass
class GcResult:
    freed_bytes: int = 0
    evicted: list[str] | None = None


class BlobStore:
    def __init__(self, root: Path, *, gc_high: float = GC_HIGH, gc_low: float = GC_LOW,
                 min_free_bytes: int = MIN_FREE_BYTES, capacity_bytes: int = 0, read_only: bool = False) -> None:
        if not 0 < gc_low <= gc_high <= 1:
            raise ValueError("need 0 < gc_low <= gc_high <= 1")
        self.root = Path(root)
        self.gc_high, self.gc_low = gc_high, gc_low
        self.min_free_bytes, self.capacity_bytes = min_free_bytes, capacity_bytes
        self._lock = threading.RLock()
        self._store_bytes: int | None = None  # counted at first need, then kept up to date
        self._shards_made: set[str] = set()
        self._temp_ids = itertools.count()
        # read_only: another process (the file worker) owns the store; this view creates,
        # touches, repairs and cleans nothing (a corrupt file is reported, not removed).
        self.read_only = read_only
        if not read_only:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pins = self._load_pins()
        if not read_only:
            self._remove_torn_temps()

    # ------------------------------------------------------------------ paths

    def _path(self, cid: str, suffix: str) -> Path:
        hexed = check_cid(cid)[len(CID_PREFIX):]
        return self.root / hexed[:2] / f"{hexed[2:]}{suffix}"

    def chunk_path(self, cid: str) -> Path:
        return self._path(cid, ".bin")

    def manifest_path(self, cid: str) -> Path:
        return self._path(cid, ".manifest.json")

    # ------------------------------------------------------------------ chunks

    def has_chunk(self, cid: str) -> bool:
        return self.chunk_path(cid).is_file()

    def read_chunk(self, cid: str) -> bytes:
        path = self.chunk_path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobError("not_found", f"chunk {short(cid)} is not in this store") from None
        if hash_bytes(data) != cid:
            if self.read_only:
                raise BlobError("not_found", f"chunk {short(cid)} is corrupt in the store "
                                             "(the file worker removes it: `hearthnet doctor`)")
            self._drop(path)
            log.warning("removed a corrupt chunk", extra={"cid": cid})
            raise BlobError("not_found", f"chunk {short(cid)} was corrupt on disk and has been removed")
        return data

    def write_chunk(self, cid: str, data: bytes | memoryview) -> bool:
        """Store verified bytes under `cid`; False when it was there already."""
        if hash_bytes(data) != check_cid(cid):
            raise BlobError("bad_request", f"chunk does not hash to {short(cid)}")
        return self._put_chunk(cid, data)

    def _put_chunk(self, cid: str, data: bytes | memoryview, *, room_checked: bool = False) -> bool:
        """`write_chunk` for bytes this process just hashed to `cid`."""
        path = self.chunk_path(cid)
        if path.is_file():
            return False
        if not room_checked:
            self.ensure_room(len(data))
        self._write_new(path, data)
        return True

    # ------------------------------------------------------------------ manifests

    def has_manifest(self, cid: str) -> bool:
        return self.manifest_path(cid).is_file()

    def read_manifest(self, cid: str, *, touch: bool = True) -> BlobManifest:
        """The stored manifest, re-verified; `touch` refreshes its LRU stamp."""
        path = self.manifest_path(cid)
        try:
            doc = json.loads(path.read_bytes())
            manifest = BlobManifest.from_wire(doc, expected_cid=cid)
        except FileNotFoundError:
            raise BlobError("not_found", f"blob {short(cid)} is not in this store") from None
        except (OSError, ValueError, BlobError) as exc:
            if self.read_only or isinstance(exc, OSError):
                raise BlobError("not_found", f"the manifest of {short(cid)} cannot be read: {exc}") from None
            self._drop(path)
            log.warning("removed a corrupt manifest", extra={"cid": cid})
            raise BlobError("not_found", f"the manifest of {short(cid)} was corrupt and has been removed") from None
        if touch and not self.read_only:
            try:
                os.utime(path)
            except OSError:
                pass
        return manifest

    def write_manifest(self, manifest: BlobManifest) -> bool:
        """Store a (verified) manifest; a known one keeps its file but takes names it lacked."""
        path = self.manifest_path(manifest.cid)
        data = json.dumps(manifest.to_wire(), separators=(",", ":")).encode()
        if path.is_file():
            held = self.read_manifest(manifest.cid, touch=True)
            if (held.filename or not manifest.filename) and (held.mime_type or not manifest.mime_type):
                return False
            data = json.dumps(held.with_names(filename=manifest.filename, mime_type=manifest.mime_type).to_wire(),
                              separators=(",", ":")).encode()
            with self._lock:
                self._count(-path.stat().st_size)
            self._drop(path)
        self.ensure_room(len(data))
        self._write_new(path, data)
        return True

    def missing(self, manifest: BlobManifest) -> list[int]:
        """Indexes of the chunks not yet stored (what a put or fetch still needs)."""
        return [i for i, c in enumerate(manifest.chunks) if not self.has_chunk(c)]

    def has_blob(self, cid: str) -> bool:
        if not self.has_manifest(cid):
            return False
        try:
            return not self.missing(self.read_manifest(cid, touch=False))
        except BlobError:
            return False

    # ------------------------------------------------------------------ whole blobs

    def add_file(self, path: Path, *, mime_type: str | None = None, progress: Progress | None = None) -> BlobManifest:
        """Chunk, hash and store a local file (constant memory); returns its manifest."""
        try:
            size = path.stat().st_size
            fh = path.open("rb")
        except FileNotFoundError:
            raise BlobError("not_found", f"{path} does not exist") from None
        except IsADirectoryError:
            raise BlobError("bad_request", f"{path} is a directory") from None
        except PermissionError:
            raise BlobError("unauthorized", f"{path} cannot be read (permission denied)") from None
        self.ensure_room(size)
        with fh:
            return self._add_stream(fh, filename=path.name, mime_type=mime_type, progress=progress,
                                    room_checked=True)

    def add_bytes(self, data: bytes, *, filename: str | None = None, mime_type: str | None = None) -> BlobManifest:
        import io

        return self._add_stream(io.BytesIO(data), filename=filename, mime_type=mime_type)

    def _add_stream(self, fh: BinaryIO, *, filename: str | None, mime_type: str | None,
                    progress: Progress | None = None, room_checked: bool = False) -> BlobManifest:
        chunks, size, new = [], 0, []
        try:
            while True:
                data = fh.read(CHUNK_SIZE_BYTES)
                if not data:
                    break
                cid = hash_bytes(data)
                if self._put_chunk(cid, data, room_checked=room_checked):
                    new.append(cid)
                chunks.append(cid)
                size += len(data)
                if progress is not None:
                    progress(size)
            manifest = BlobManifest.build(chunks, size, filename=filename, mime_type=mime_type)
            self.write_manifest(manifest)
        except BaseException:  # a full disk or Ctrl-C: leave nothing of this add behind
            in_use = self._chunks_in_use()
            for cid in set(new) - in_use:
                self._drop(self.chunk_path(cid))
            raise
        self.collect_if_needed()
        return manifest

    def iter_chunks(self, manifest: BlobManifest, start: int = 0) -> Iterator[tuple[int, bytes]]:
        for i in range(start, len(manifest.chunks)):
            yield i, self.read_chunk(manifest.chunks[i])

    def read_blob_bytes(self, cid: str, limit: int = READ_ALL_LIMIT) -> bytes:
        manifest = self.read_manifest(cid)
        if manifest.size_bytes > limit:
            raise BlobError("capacity_exceeded", f"blob {short(cid)} is {manifest.size_bytes} bytes; "
                                                 f"read it as a stream")
        return b"".join(data for _, data in self.iter_chunks(manifest))

    def export(self, cid: str, out: Path, *, progress: Progress | None = None) -> BlobManifest:
        """Write the verified blob to `out` (via a temp file beside it, renamed at the end)."""
        manifest = self.read_manifest(cid)
        missing = self.missing(manifest)
        if missing:
            raise BlobError("not_found", f"blob {short(cid)} lacks {len(missing)} of {len(manifest.chunks)} chunks")
        def fill(fh: BinaryIO) -> None:
            done = 0
            for _, data in self.iter_chunks(manifest):
                fh.write(data)
                done += len(data)
                if progress is not None:
                    progress(done)

        out.parent.mkdir(parents=True, exist_ok=True)
        _replace_via_temp(out, out.parent / f".{out.name}.{os.getpid()}.{next(self._temp_ids)}.tmp", fill)
        return manifest

    def delete_blob(self, cid: str) -> int:
        """Remove a blob and the chunks no other stored manifest uses; bytes freed."""
        with self._lock:
            manifest = self.read_manifest(cid, touch=False)
            keep = self._chunks_in_use(exclude=cid)
            freed = self._drop(self.manifest_path(cid))
            for c in set(manifest.chunks) - keep:
                freed += self._drop(self.chunk_path(c))
            self._pins.discard(cid)
            return freed

    # ------------------------------------------------------------------ listing

    def manifests(self) -> Iterator[tuple[str, float]]:
        """(manifest CID, LRU stamp) of every stored manifest."""
        for shard in self._shards():
            for entry in os.scandir(shard):
                if entry.name.endswith(".manifest.json") and not entry.name.startswith("."):
                    yield f"{CID_PREFIX}{shard.name}{entry.name[:-len('.manifest.json')]}", entry.stat().st_mtime

    def blobs(self) -> list[dict[str, Any]]:
        out = []
        for cid, stamp in sorted(self.manifests()):
            try:
                m = self.read_manifest(cid, touch=False)
            except BlobError:
                continue
            missing = len(self.missing(m))
            out.append({"cid": cid, "filename": m.filename, "mime_type": m.mime_type, "size_bytes": m.size_bytes,
                        "chunks": len(m.chunks), "chunks_missing": missing, "complete": missing == 0,
                        "pinned": cid in self._pins, "last_used": stamp})
        return out

    # ------------------------------------------------------------------ pins

    def pin(self, cid: str) -> bool:
        with self._lock:
            if check_cid(cid) in self._pins:
                return False
            self._pins.add(cid)
            self._save_pins()
            return True

    def unpin(self, cid: str) -> bool:
        with self._lock:
            if check_cid(cid) not in self._pins:
                return False
            self._pins.discard(cid)
            self._save_pins()
            return True

    def is_pinned(self, cid: str) -> bool:
        return cid in self._pins

    def pinned(self) -> list[str]:
        return sorted(self._pins)

    def _load_pins(self) -> set[str]:
        try:
            lines = (self.root / "pinned.txt").read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return set()
        return {line for line in lines if CID_PREFIX in line and _valid(line)}

    def _save_pins(self) -> None:
        self._writable()
        atomic_write(self.root / "pinned.txt", "".join(f"{c}\n" for c in sorted(self._pins)).encode())

    # ------------------------------------------------------------------ room and GC

    def usage(self) -> Usage:
        store = self.store_bytes()
        disk = shutil.disk_usage(self.root)
        if self.capacity_bytes:
            free = max(0, min(self.capacity_bytes - store, disk.free))
            return Usage(self.capacity_bytes, store, free, store)
        return Usage(disk.total, disk.total - disk.free, disk.free, store)

    def store_bytes(self) -> int:
        with self._lock:
            if self._store_bytes is None:
                self._store_bytes = sum(e.stat().st_size for shard in self._shards() for e in os.scandir(shard)
                                        if e.is_file() and not e.name.startswith("."))
            return self._store_bytes

    def ensure_room(self, incoming: int) -> None:
        """Make room for `incoming` bytes (evicting LRU unpinned blobs if need be) so that
        at least `min_free_bytes` stay free; else capacity_exceeded."""
        with self._lock:
            if self.usage().free_bytes - incoming >= self.min_free_bytes:
                return
            self._evict(lambda u: u.free_bytes - incoming >= self.min_free_bytes)
            free = self.usage().free_bytes
            if free - incoming < self.min_free_bytes:
                raise BlobError("capacity_exceeded", f"storing {incoming} bytes would leave {max(free - incoming, 0)} "
                                                     f"bytes free; the store keeps {self.min_free_bytes} free",
                                retry_after_seconds=60)

    def collect_if_needed(self) -> GcResult:
        """Above gc_high of the disk: evict down to gc_low."""
        with self._lock:
            if self.usage().fraction <= self.gc_high:
                return GcResult(0, [])
            return self._evict(lambda u: u.fraction <= self.gc_low)

    def gc(self) -> GcResult:
        """`file gc`: orphaned chunks always; blobs only above the threshold."""
        with self._lock:
            result = self._drop_orphans(ORPHAN_AGE_SECONDS)
            more = self.collect_if_needed()
            return GcResult(result.freed_bytes + more.freed_bytes, (result.evicted or []) + (more.evicted or []))

    def _evict(self, enough: Callable[[Usage], bool]) -> GcResult:
        result = self._drop_orphans(ORPHAN_AGE_SECONDS)
        for cid, _ in sorted(self.manifests(), key=lambda item: (item[1], item[0])):
            if enough(self.usage()):
                break
            if cid in self._pins:
                continue
            try:
                result.freed_bytes += self.delete_blob(cid)
            except BlobError:
                continue
            result.evicted = (result.evicted or []) + [cid]
            log.info("evicted a blob (LRU)", extra={"cid": cid})
        return result

    def _chunks_in_use(self, exclude: str | None = None) -> set[str]:
        used: set[str] = set()
        for cid, _ in self.manifests():
            if cid == exclude:
                continue
            try:
                used.update(self.read_manifest(cid, touch=False).chunks)
            except BlobError:
                continue
        return used

    def _drop_orphans(self, min_age: float) -> GcResult:
        in_use, now, result = self._chunks_in_use(), time.time(), GcResult(0, [])
        for shard in self._shards():
            for entry in os.scandir(shard):
                if not entry.name.endswith(".bin") or entry.name.startswith("."):
                    continue
                cid = f"{CID_PREFIX}{shard.name}{entry.name[:-4]}"
                if cid not in in_use and now - entry.stat().st_mtime >= min_age:
                    result.freed_bytes += self._drop(Path(entry.path))
        return result

    # ------------------------------------------------------------------ files

    def _shards(self) -> Iterator[Path]:
        if not self.root.is_dir():  # a read-only view of a store not made yet
            return
        for entry in os.scandir(self.root):
            if entry.is_dir() and len(entry.name) == 2:
                yield Path(entry.path)

    def _write_new(self, path: Path, data: bytes | memoryview) -> None:
        self._writable()
        if path.parent.name not in self._shards_made:
            path.parent.mkdir(exist_ok=True, mode=0o700)
            self._shards_made.add(path.parent.name)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{next(self._temp_ids)}.tmp"
        _replace_via_temp(path, tmp, lambda fh: fh.write(data))
        with self._lock:
            self._count(len(data))

    def _writable(self) -> None:
        if self.read_only:
            raise BlobError("internal_error", f"{self.root} is opened read-only; only the file worker writes it")

    def _drop(self, path: Path) -> int:
        self._writable()
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        with self._lock:
            self._count(-size)
        return size

    def _count(self, delta: int) -> None:
        if self._store_bytes is not None:
            self._store_bytes += delta

    def _remove_torn_temps(self) -> None:
        """Temp files are only ever in use by a running writer; at open there is none."""
        for shard in self._shards():
            for entry in os.scandir(shard):
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    Path(entry.path).unlink(missing_ok=True)


def _replace_via_temp(path: Path, tmp: Path, fill: Callable[[BinaryIO], Any]) -> None:
    """Write `tmp` (new, 0600) with `fill`, then rename it to `path`: readers see the whole
    file or none. No fsync: what is stored is verified when read, so a torn file after a
    crash is caught then, and fsync per 256 KiB chunk would halve the add rate. Any
    failure removes the temp file; OS errors become BlobErrors (a full disk:
    capacity_exceeded)."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _os_error(exc, path) from None
    except BaseException:  # Ctrl-C or a failed read mid-export: no temp file left behind
        tmp.unlink(missing_ok=True)
        raise


def _valid(cid: str) -> bool:
    try:
        check_cid(cid)
    except BlobError:
        return False
    return True


def _os_error(exc: OSError, path: Path) -> BlobError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BlobError("capacity_exceeded", f"disk full while writing {path}", retry_after_seconds=60)
    return BlobError("internal_error", f"cannot write {path}: {exc.strerror or exc}")


def open_store(cfg: Any) -> BlobStore:
    """The node's store, as `[file]` in config.toml sets it up."""
    f = cfg.file
    return BlobStore(f.blobs_dir, gc_high=f.gc_threshold, gc_low=f.gc_target,
                     min_free_bytes=f.min_free_bytes, capacity_bytes=f.capacity_bytes)
