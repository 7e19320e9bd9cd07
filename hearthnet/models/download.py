"""A resumable download with a checksum: `<dest>.part` grows until it is whole, then it
is checked and renamed.

An interrupted transfer (dropped connection, Ctrl-C, a reboot) leaves the `.part` file;
the next attempt asks for the rest with an HTTP Range request and appends to it (a server
that ignores Range answers 200 and the file restarts from zero). Inside one run a dropped
connection is retried a few times, resuming each time. The sha256 is computed over the
whole file at the end; a mismatch deletes it (a corrupt prefix must not be resumed).
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hearthnet.errors import HearthNetError

CHUNK = 1 << 16
TIMEOUT_SECONDS = 30.0
ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.5
MAX_REDIRECTS = 5

# progress(done_bytes, total_bytes_or_None)
Progress = Callable[[int, "int | None"], None]


@dataclass
class Downloaded:
    path: Path
    size: int
    sha256: str
    resumed_from: int  # bytes already on disk when this run started (0: a fresh download)
    attempts: int


class _Dropped(Exception):
    """The connection ended before the body did: resume."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _open(url: str, offset: int, timeout: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET with Range from `offset`, following redirects (Hugging Face sends a few)."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=timeout)
        headers = {"User-Agent": "hearthnet-model-pull", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            url = urllib.parse.urljoin(url, resp.getheader("Location"))
            conn.close()
            continue
        return conn, resp
    raise HearthNetError("bad_request", f"{url}: too many redirects")


def _total(resp: http.client.HTTPResponse, offset: int) -> int | None:
    if resp.status == 206:
        rng = resp.getheader("Content-Range") or ""  # bytes a-b/total
        tail = rng.rpartition("/")[2]
        return int(tail) if tail.isdigit() else None
    length = resp.getheader("Content-Length")
    return int(length) if length and length.isdigit() else None


def _attempt(url: str, part: Path, progress: Progress | None, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    conn, resp = _open(url, offset, timeout)
    try:
        if resp.status == 416 and offset:  # nothing after offset: the .part is whole (or wrong)
            return
        if resp.status not in (200, 206):
            raise HearthNetError("bad_request" if resp.status == 404 else "internal_error",
                                 f"{url}: HTTP {resp.status} {resp.reason}")
        if resp.status == 200:
            offset = 0  # the server ignored Range: start over
        total = _total(resp, offset)
        done = offset
        with open(part, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.truncate()
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Dropped(str(exc)) from exc
                if not block:
                    break
                f.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
            f.flush()
            os.fsync(f.fileno())
        if total is not None and done < total:
            raise _Dropped(f"the server sent {done} of {total} bytes")
    finally:
        conn.close()


def download(url: str, dest: Path, sha256: str | None, *, progress: Progress | None = None,
             attempts: int = ATTEMPTS, timeout: float = TIMEOUT_SECONDS) -> Downloaded:
    """Fetch `url` to `dest` through `dest.part`, resuming what is there. With `sha256`,
    a mismatch deletes the file and raises `checksum_mismatch` (exit 1)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    resumed_from = part.stat().st_size if part.exists() else 0
    tries = 0
    while True:
        tries += 1
        try:
            _attempt(url, part, progress, timeout)
            break
        except ConnectionRefusedError as exc:
            raise HearthNetError("internal_error", f"{url}: cannot download: {exc}") from exc
        except (_Dropped, ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            if tries >= attempts:
                raise HearthNetError("internal_error", f"{url}: download interrupted ({exc}); "
                                     f"{part} is kept: run the same command again to resume",
                                     hint="run the same command again to resume") from exc
            time.sleep(RETRY_PAUSE_SECONDS)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise  # the CLI boundary says "disk full" (exit 5)
            raise HearthNetError("internal_error", f"{url}: cannot download: {exc}") from exc
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise HearthNetError("checksum_mismatch", f"{url}: sha256 {digest} does not match the "
                             f"catalogue's {sha256}; the file was deleted", expected=sha256, got=digest)
    part.replace(dest)
    return Downloaded(dest, dest.stat().st_size, digest, resumed_from, tries)
