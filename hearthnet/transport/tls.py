"""The node's TLS identity (spec core-bus-transport §12; core-identity-config §5).

Decision: the certificate key IS the device Ed25519 key. It was verified on this stack
(Python 3.11, OpenSSL 3.0, aiohttp 3.14) that an aiohttp HTTPS server with an Ed25519
certificate and an aiohttp client negotiate TLS 1.3 (TLS_AES_256_GCM_SHA384); the test
suite keeps asserting it (tests/unit/transport/test_tls.py). So there is no second private
key to protect, and a peer can tell from the certificate alone which node it belongs to.

Files, written once under `<DATA>/tls` (0700) and reused afterwards:
    server.key  PKCS#8 PEM of the device key, 0600
    server.crt  self-signed X.509 PEM, 0644

The certificate is regenerated only when a file is missing or unreadable, or its key is
not the device key. A new certificate has a new fingerprint, and peers that pinned the
old one refuse it until they forget the pin. For that reason it is *not* regenerated when
`transport.host` changes (the SAN is informational: peers never verify hostnames) nor
when it expires after 10 years (peers never check validity dates; they pin).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from hearthnet.errors import HearthNetError
from hearthnet.fsutil import atomic_write
from hearthnet.identity.keys import KeyPair
from hearthnet.paths import ensure_private_dir
from hearthnet.transport import x509der

# The certificate is written and read by x509der (no cryptography import: ~3 MiB per
# process, README "Lean processes"); cryptography is imported only to judge files
# x509der does not recognise and for operator-supplied certificates.

log = logging.getLogger("hearthnet.transport.tls")

CERT_FILE = "server.crt"
KEY_FILE = "server.key"
VALIDITY = timedelta(days=3652)  # 10 years incl. leap days
BACKDATE = timedelta(days=1)  # tolerate peers whose clock runs behind
FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
ALL_INTERFACES = {"", "0.0.0.0", "::"}


@dataclass(frozen=True)
class TlsIdentity:
    cert_path: Path
    key_path: Path
    fingerprint: str  # "sha256:<hex of the DER certificate>"


# --------------------------------------------------------------------------- fingerprints


def fingerprint(cert_der: bytes) -> str:
    """`sha256:<lowercase hex>` of the DER certificate: the form carried in manifests."""
    return "sha256:" + hashlib.sha256(cert_der).hexdigest()


def fingerprint_digest(fp: str) -> bytes:
    """The raw 32-byte SHA-256 of a `sha256:<hex>` fingerprint (for aiohttp.Fingerprint)."""
    check_fingerprint_format(fp)
    return bytes.fromhex(fp[len("sha256:"):])


def check_fingerprint_format(fp: Any) -> str:
    if not isinstance(fp, str) or not FINGERPRINT_RE.match(fp):
        raise HearthNetError("bad_request", f"{fp!r} is not a sha256:<64 hex> certificate fingerprint")
    return fp


# --------------------------------------------------------------------------- manifest fields


def manifest_tls_fields(identity: TlsIdentity) -> dict[str, str]:
    """Extra node-manifest fields so peers can pin this node's certificate."""
    return {"tls_fingerprint": identity.fingerprint}


def add_tls_fields(manifest: Mapping[str, Any], identity: TlsIdentity, kp: KeyPair) -> dict[str, Any]:
    """A re-signed copy of a node manifest with `tls_fingerprint` added: usable until
    `build_node_manifest` takes the extra fields itself (the signature covers every
    field but `signature`, so adding one means signing again)."""
    if manifest.get("node_id") != kp.node_id_full:
        raise HearthNetError("bad_request", "only this node's own manifest can carry its TLS fingerprint")
    return kp.sign({**manifest, **manifest_tls_fields(identity)})


# --------------------------------------------------------------------------- certificate


def common_name(kp: KeyPair) -> str:
    """`<short id>.hearthnet.local`, with the `ed25519:` tag dropped and lower-cased
    because a colon is not valid in a DNS name: `abcd-efgh-ijkl-mnop.hearthnet.local`."""
    return kp.node_id_short.removeprefix("ed25519:").lower() + ".hearthnet.local"


def _alt_names(cn: str, host: str) -> list[str]:
    if host in ALL_INTERFACES:
        return [cn, "localhost"]  # "all interfaces" has no single address
    return [cn, host]  # an IP address becomes an iPAddress entry, anything else a dNSName


def build_certificate_der(kp: KeyPair, host: str = "0.0.0.0", now: datetime | None = None) -> bytes:
    """The self-signed certificate of the device key (DER)."""
    cn = common_name(kp)
    start = ((now or datetime.now(timezone.utc)) - BACKDATE).replace(microsecond=0)
    return x509der.self_signed_certificate(kp, cn, _alt_names(cn, host), start, start + VALIDITY)


def _existing_cert_der(cert_path: Path, key_path: Path, kp: KeyPair) -> bytes | None:
    """The stored certificate's DER if both files are readable and hold the device key;
    None means "(re)generate"."""
    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("TLS files unreadable; generating a new certificate", extra={"reason": str(exc)})
        return None
    der = x509der.pem_body(cert_pem, "CERTIFICATE")
    key_der = x509der.pem_body(key_pem, "PRIVATE KEY")
    if (der is not None and key_der is not None and x509der.ed25519_subject_key(der) == kp.public_bytes
            and x509der.ed25519_seed(key_der) == bytes(kp.signing_key)):
        return der  # the files this module writes, for this device: the usual case
    return _judged_by_cryptography(cert_pem, key_pem, kp)


def _judged_by_cryptography(cert_pem: bytes, key_pem: bytes, kp: KeyPair) -> bytes | None:
    """Files x509der does not take as ours: parsed in full, as before x509der existed."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    def raw_public(key: Any) -> bytes | None:
        if not isinstance(key, ed25519.Ed25519PublicKey):
            return None
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        log.warning("TLS files unreadable; generating a new certificate", extra={"reason": str(exc)})
        return None
    if raw_public(cert.public_key()) != kp.public_bytes or raw_public(key.public_key()) != kp.public_bytes:
        log.warning("TLS certificate is not for this device key; generating a new one")
        return None
    return cert.public_bytes(serialization.Encoding.DER)


def _write_identity(kp: KeyPair, cert_path: Path, key_path: Path, host: str) -> bytes:
    der = build_certificate_der(kp, host)
    # Key first: a crash in between leaves no certificate, so the next start regenerates both.
    atomic_write(key_path, x509der.pem("PRIVATE KEY", x509der.pkcs8_private_key(kp)), 0o600)
    atomic_write(cert_path, x509der.pem("CERTIFICATE", der), 0o644)
    return der


def ensure_tls_identity(kp: KeyPair, tls_dir: Path, host: str = "0.0.0.0") -> TlsIdentity:
    """Reuse `<tls_dir>/server.{crt,key}` if they hold the device key, else write new ones."""
    ensure_private_dir(tls_dir)
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    der = _existing_cert_der(cert_path, key_path, kp)
    if der is None:
        der = _write_identity(kp, cert_path, key_path, host)
        log.info("wrote TLS certificate", extra={"path": str(cert_path), "fingerprint": fingerprint(der)})
    elif key_path.stat().st_mode & 0o077:
        os.chmod(key_path, 0o600)  # our own file with loose bits: tighten rather than fail
    return TlsIdentity(cert_path, key_path, fingerprint(der))


def load_tls_identity(cert_path: Path, key_path: Path) -> TlsIdentity:
    """An operator-supplied cert/key (`transport.tls_cert` / `tls_key`): used as is, its
    fingerprint still goes into the signed manifest so peers can pin it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise HearthNetError("bad_request", f"cannot read TLS certificate {cert_path}: {exc}") from exc
    if not Path(key_path).is_file():
        raise HearthNetError("bad_request", f"TLS key {key_path} does not exist")
    return TlsIdentity(Path(cert_path), Path(key_path), fingerprint(cert.public_bytes(serialization.Encoding.DER)))


# --------------------------------------------------------------------------- ssl contexts


def server_ssl_context(identity: TlsIdentity) -> ssl.SSLContext:
    """TLS 1.3 only; no client certificates (peers authenticate by signed headers)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_ssl_context() -> ssl.SSLContext:
    """No CA and no hostname check: peers are self-signed and addressed by IP, and are
    authenticated by pinning the certificate fingerprint from their signed manifest."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
