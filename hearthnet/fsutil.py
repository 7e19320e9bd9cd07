"""Crash-safe file writes shared by config, manifests and keys."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_temp_beside(path: Path, data: bytes, mode: int) -> Path:
    """A complete, fsynced temp file next to `path`, ready to be renamed or linked."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:  # full disk, Ctrl-C ...: no half-written temp file stays; re-raised
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a temp file in the same directory + fsync + os.replace, so readers see
    the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp_beside(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        # Any failure (including Ctrl-C) must not leave a stray temp file behind.
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
