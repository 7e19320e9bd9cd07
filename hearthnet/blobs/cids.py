"""CIDs and chunk bytes on the wire (spec §3.1, §3.6).

A CID is `blake3:` + the 64 lowercase hex digits of a 32-byte BLAKE3 digest. Binary
travels as Base64-URL without padding (CONTRACT §1.1); input in either alphabet, padded
or not, is accepted.
"""
from __future__ import annotations

import base64
import binascii
import re

import blake3

from hearthnet.errors import HearthNetError

CHUNK_SIZE_BYTES = 256 * 1024
CID_PREFIX = "blake3:"
CID_RE = re.compile(r"^blake3:[0-9a-f]{64}$")
SHORT_HEX = 16  # display form: the first 16 hex digits


class BlobError(HearthNetError):
    """A blob store or CID problem; `code` is a wire code (not_found, bad_request,
    capacity_exceeded, disk_full, internal_error)."""


def hash_bytes(data: bytes | memoryview) -> str:
    return CID_PREFIX + blake3.blake3(data).hexdigest()


def is_cid(text: object) -> bool:
    return isinstance(text, str) and CID_RE.match(text) is not None


def check_cid(text: object, what: str = "cid") -> str:
    if not is_cid(text):
        raise BlobError("bad_request", f"{what} must be blake3: and 64 lowercase hex digits")
    return text  # type: ignore[return-value]


def short(cid: str) -> str:
    return cid[len(CID_PREFIX):len(CID_PREFIX) + SHORT_HEX]


def verify_chunk(data: bytes | memoryview, expected_cid: str) -> None:
    if hash_bytes(data) != expected_cid:
        raise BlobError("bad_request", f"chunk does not hash to {short(expected_cid)}")


def b64encode(data: bytes | memoryview) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: object, what: str = "data_b64") -> bytes:
    """Either alphabet, with or without padding."""
    if not isinstance(text, str):
        raise BlobError("bad_request", f"{what} must be a base64 string")
    s = text.strip().rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BlobError("bad_request", f"{what} is not base64") from None
