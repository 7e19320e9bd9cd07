"""A blob's bytes as FAT32-safe pieces: written with a hash per piece, read back as
chunks that are each checked against the blob manifest before anyone sees them.

Pieces split the byte stream at `piece_size` whatever the chunk boundaries, so a chunk
may span two pieces; the reader reassembles chunks across them.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import blake3

from hearthnet.blobs.cids import CHUNK_SIZE_BYTES, hash_bytes, short
from hearthnet.bundles.format import BundleBlob, Piece, piece_name, tampered

READ_BLOCK = CHUNK_SIZE_BYTES
Progress = Callable[[int], None]  # bytes just handled


class PieceWriter:
    """Writes one blob's bytes into `<root>/blobs/<hex>.partNNN` files of at most
    `piece_size` bytes, each fsynced (a USB stick is pulled the moment we say done)."""

    def __init__(self, root: Path, manifest_cid: str, piece_size: int) -> None:
        self.root, self.cid, self.piece_size = root, manifest_cid, piece_size
        self.pieces: list[Piece] = []
        self._fh: BinaryIO | None = None
        self._hasher = blake3.blake3()
        self._size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._fh is None:
                self._open()
            room = self.piece_size - self._size
            part, view = view[:room], view[room:]
            assert self._fh is not None
            self._fh.write(part)
            self._hasher.update(part)
            self._size += len(part)
            if self._size == self.piece_size:
                self._finish()

    def close(self) -> list[Piece]:
        if self._fh is not None:
            self._finish()
        return list(self.pieces)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _open(self) -> None:
        name = piece_name(self.cid, len(self.pieces))
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("wb")
        self._hasher, self._size = blake3.blake3(), 0

    def _finish(self) -> None:
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        self.pieces.append(Piece(piece_name(self.cid, len(self.pieces)), self._size,
                                 "blake3:" + self._hasher.hexdigest()))


def write_blob(root: Path, manifest_cid: str, chunks: Iterable[bytes], piece_size: int,
               progress: Progress | None = None) -> list[Piece]:
    writer = PieceWriter(root, manifest_cid, piece_size)
    try:
        for data in chunks:
            writer.write(data)
            if progress is not None:
                progress(len(data))
    except BaseException:  # a read error, a full stick or Ctrl-C: no half piece left on the stick
        writer.abort()
        raise
    return writer.close()


def check_piece_files(root: Path, blob: BundleBlob) -> None:
    """Every piece is there with the size the manifest says (cheap; before any hashing)."""
    for piece in blob.pieces:
        check_regular_file(root / piece.name, piece.name, piece.size_bytes)


def check_regular_file(path: Path, name: str, size_bytes: int) -> None:
    """A plain file of exactly that size: a FIFO or device (which could block or never
    end a read) or a file of another size is refused before it is opened."""
    try:
        st = path.stat()
    except OSError:
        raise tampered(f"{name} is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise tampered(f"{name} is not a regular file")
    if st.st_size != size_bytes:
        raise tampered(f"{name} has {st.st_size} bytes; the bundle says {size_bytes}")


def _piece_bytes(root: Path, blob: BundleBlob) -> Iterator[bytes]:
    """The blob's bytes in blocks; each piece's size and hash checked as it ends."""
    for piece in blob.pieces:
        hasher, seen = blake3.blake3(), 0
        try:
            fh = (root / piece.name).open("rb")
        except OSError:
            raise tampered(f"{piece.name} is missing") from None
        with fh:
            while block := fh.read(min(READ_BLOCK, piece.size_bytes + 1 - seen)):
                seen += len(block)
                if seen > piece.size_bytes:
                    raise tampered(f"{piece.name} is longer than the bundle says")
                hasher.update(block)
                yield block
        if seen != piece.size_bytes:
            raise tampered(f"{piece.name} is shorter than the bundle says")
        if "blake3:" + hasher.hexdigest() != piece.hash:
            raise tampered(f"{piece.name} does not match its hash in bundle.json")


def iter_chunks(root: Path, blob: BundleBlob, progress: Progress | None = None) -> Iterator[tuple[int, bytes]]:
    """(i, bytes) of every chunk, each verified against the blob manifest before it is
    yielded; any piece or chunk that does not match raises bundle_tampered."""
    manifest, buf, i = blob.manifest, bytearray(), 0
    for block in _piece_bytes(root, blob):
        buf += block
        while i < len(manifest.chunks) and len(buf) >= manifest.chunk_size(i):
            size = manifest.chunk_size(i)
            data = bytes(buf[:size])
            del buf[:size]
            if hash_bytes(data) != manifest.chunks[i]:
                raise tampered(f"chunk {i} of blob {short(manifest.cid)} does not match its manifest")
            if progress is not None:
                progress(size)
            yield i, data
            i += 1
    if buf or i != len(manifest.chunks):
        raise tampered(f"the pieces of blob {short(manifest.cid)} do not hold its chunks")


def verify_blob(root: Path, blob: BundleBlob, progress: Progress | None = None) -> None:
    for _ in iter_chunks(root, blob, progress):
        pass
