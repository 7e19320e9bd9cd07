"""Device identity (spec core-identity-config §1, §4, §5; M01; DESIGN.md §5).

One Ed25519 key per device, never rotated: the full NodeID *is* the public key
(`ed25519:<base64url-nopad>`), so a signature check needs nothing but the id.

On disk, under `<DATA>/keys` (0700):
    device.ed25519  raw 32-byte seed, 0600, written once and never overwritten
    device.pub      raw 32-byte public key, 0644
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from hearthnet.errors import IdentityError
from hearthnet.fsutil import atomic_write, write_temp_beside
from hearthnet.identity.canonical import canonical_json
from hearthnet.paths import ensure_private_dir

PREFIX = "ed25519:"
PRIVATE_KEY_FILE = "device.ed25519"
PUBLIC_KEY_FILE = "device.pub"
KEY_BYTES = 32
SIG_BYTES = 64
SHORT_ID_RE = re.compile(r"^ed25519:[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$")


# --------------------------------------------------------------------------- encodings


def b64url_nopad(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url-without-padding decode: raises ValueError on padding, foreign
    characters or non-canonical trailing bits (so one value has exactly one text form)."""
    if "=" in text:
        raise ValueError("base64url must not be padded")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from None
    if b64url_nopad(data) != text:
        raise ValueError("not canonical base64url")
    return data


def full_node_id(pub: bytes) -> str:
    if len(pub) != KEY_BYTES:
        raise IdentityError("bad_node_id", f"a public key has {KEY_BYTES} bytes, got {len(pub)}")
    return PREFIX + b64url_nopad(pub)


def short_node_id(pub: bytes | str) -> str:
    """Display form (DESIGN.md §5): base32 of the first 10 key bytes, 4 groups of 4.
    Accepts the raw key or a full NodeID (the short community id is the same function
    applied to the root key)."""
    raw = parse_node_id(pub) if isinstance(pub, str) else pub
    if len(raw) != KEY_BYTES:
        raise IdentityError("bad_node_id", f"a public key has {KEY_BYTES} bytes, got {len(raw)}")
    b32 = base64.b32encode(raw[:10]).decode("ascii")  # 10 bytes -> 16 chars, no padding
    return PREFIX + "-".join(b32[i : i + 4] for i in range(0, 16, 4))


def parse_node_id(node_id: str) -> bytes:
    """Full NodeID -> 32-byte public key. The short form is display-only and refused."""
    if not isinstance(node_id, str) or not node_id.startswith(PREFIX):
        raise IdentityError("bad_node_id", f"{node_id!r} is not an ed25519: node id")
    if SHORT_ID_RE.match(node_id):
        raise IdentityError("bad_node_id", f"{node_id} is a short (display) id; protocols need the full id")
    try:
        raw = b64url_decode(node_id[len(PREFIX):])
    except ValueError as exc:
        raise IdentityError("bad_node_id", f"{node_id!r} is not a node id: {exc}") from None
    if len(raw) != KEY_BYTES:
        raise IdentityError("bad_node_id", f"{node_id!r} holds {len(raw)} bytes, not {KEY_BYTES}")
    return raw


def verify_key_from_full(node_id: str) -> VerifyKey:
    return VerifyKey(parse_node_id(node_id))


# --------------------------------------------------------------------------- key pair


@dataclass(frozen=True)
class KeyPair:
    signing_key: SigningKey = field(repr=False)  # never print the private key
    verify_key: VerifyKey = field(repr=False)
    node_id_full: str
    node_id_short: str

    @classmethod
    def from_seed(cls, seed: bytes) -> "KeyPair":
        sk = SigningKey(seed)
        pub = bytes(sk.verify_key)
        return cls(sk, sk.verify_key, full_node_id(pub), short_node_id(pub))

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.verify_key)

    def sign_bytes(self, data: bytes) -> str:
        """Detached signature as `ed25519:<b64url-nopad>`."""
        return PREFIX + b64url_nopad(self.signing_key.sign(data).signature)

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return sign_payload(payload, self)


def generate() -> KeyPair:
    return KeyPair.from_seed(os.urandom(KEY_BYTES))


# --------------------------------------------------------------------------- signing


def sign_payload(obj: dict[str, Any], kp: KeyPair) -> dict[str, Any]:
    """A copy of `obj` with `signature` over the canonical JSON of everything else."""
    body = {k: v for k, v in obj.items() if k != "signature"}
    try:
        sig = kp.sign_bytes(canonical_json(body))
    except (TypeError, ValueError) as exc:
        raise IdentityError("sign_failed", f"cannot sign payload: {exc}") from exc
    return {**body, "signature": sig}


def _as_verify_key(key: VerifyKey | bytes) -> VerifyKey:
    return key if isinstance(key, VerifyKey) else VerifyKey(bytes(key))


def verify_bytes(data: bytes, signature: str, verify_key: VerifyKey | bytes) -> bool:
    """Check a detached `ed25519:` signature; any malformation is simply False."""
    if not isinstance(signature, str) or not signature.startswith(PREFIX):
        return False
    try:
        sig = b64url_decode(signature[len(PREFIX):])
        if len(sig) != SIG_BYTES:
            return False
        _as_verify_key(verify_key).verify(data, sig)
        return True
    except (ValueError, TypeError, BadSignatureError, CryptoError):
        return False


def verify_payload(obj: dict[str, Any], verify_key: VerifyKey | bytes) -> bool:
    if not isinstance(obj, dict):
        return False
    body = {k: v for k, v in obj.items() if k != "signature"}
    try:
        data = canonical_json(body)
    except (TypeError, ValueError):
        return False
    return verify_bytes(data, obj.get("signature", ""), verify_key)


def verify_payload_with_node_id(obj: dict[str, Any], node_id: str) -> bool:
    try:
        key = verify_key_from_full(node_id)
    except IdentityError:
        return False
    return verify_payload(obj, key)


# --------------------------------------------------------------------------- disk


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `data`, atomically and never replacing an existing file: the
    temp file is complete and fsynced before a hard link publishes it (link fails if the
    name exists). Filesystems without hard links fall back to O_EXCL."""
    tmp = write_temp_beside(path, data, mode)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise  # the caller turns this into keys_exist
        except OSError:
            _write_exclusive(path, data, mode)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save(kp: KeyPair, keys_dir: Path) -> None:
    """Write the key pair; refuses (keys_exist) to overwrite an existing private key,
    because that would silently change this device's identity."""
    ensure_private_dir(keys_dir)
    priv = keys_dir / PRIVATE_KEY_FILE
    try:
        _write_new_file(priv, bytes(kp.signing_key), 0o600)
    except FileExistsError:
        raise IdentityError("keys_exist", f"{priv} already exists; refusing to overwrite this device's key") from None
    # The public key is derived data, so replacing it is safe.
    atomic_write(keys_dir / PUBLIC_KEY_FILE, kp.public_bytes, 0o644)


def load(keys_dir: Path) -> KeyPair:
    priv = keys_dir / PRIVATE_KEY_FILE
    try:
        st = priv.stat()
    except FileNotFoundError:
        raise IdentityError("keys_missing", f"no device key at {priv}; run `hearthnet init`") from None
    # Any group/other access to the private key is unsafe (0600 or stricter is fine).
    if os.name == "posix" and st.st_mode & 0o077:
        raise IdentityError(
            "keys_permissions",
            f"{priv} has mode {st.st_mode & 0o777:04o}; it must be 0600: chmod 600 {priv}",
        )
    try:
        seed = priv.read_bytes()
    except OSError as exc:
        raise IdentityError("keys_invalid", f"cannot read {priv}: {exc.strerror}") from exc
    if len(seed) != KEY_BYTES:
        raise IdentityError("keys_invalid", f"{priv} holds {len(seed)} bytes, expected a {KEY_BYTES}-byte Ed25519 seed")
    kp = KeyPair.from_seed(seed)
    _check_public_file(keys_dir / PUBLIC_KEY_FILE, kp)
    return kp


def _check_public_file(pub_path: Path, kp: KeyPair) -> None:
    # A missing device.pub is tolerated (it is derivable); a different one is not.
    try:
        pub = pub_path.read_bytes()
    except FileNotFoundError:
        return
    if pub != kp.public_bytes:
        raise IdentityError("keys_invalid", f"{pub_path} does not match the private key")


def load_or_generate(keys_dir: Path) -> KeyPair:
    if (keys_dir / PRIVATE_KEY_FILE).exists():
        return load(keys_dir)
    kp = generate()
    try:
        save(kp, keys_dir)
    except IdentityError as exc:
        if exc.code != "keys_exist":
            raise
        return load(keys_dir)  # another process created it first: use theirs
    return kp


def own_node_id(keys_dir: Path) -> str:
    """This device's full NodeID from the public key alone (no private key read), or ""
    when there is no key yet."""
    try:
        pub = (keys_dir / PUBLIC_KEY_FILE).read_bytes()
    except OSError:
        return ""
    return full_node_id(pub) if len(pub) == 32 else ""
