"""The node's own TLS certificate and key in DER/PEM, without the cryptography package.

Why: importing cryptography's X.509 layer costs a process about 3 MiB of private memory
(bench/memory.py), and the gateway and discovery only ever need two fixed structures: a
self-signed Ed25519 certificate (RFC 5280 with RFC 8410 keys) and the PKCS#8 form of the
device key. Both are written here with PyNaCl signing, and read back just far enough to
tell whether the stored files still hold the device key. Anything this reader does not
recognise is left to the cryptography-based check in hearthnet/transport/tls.py, so an odd
file is judged exactly as before. tests/unit/transport/test_tls.py reads what is written
here with cryptography and OpenSSL.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from datetime import datetime

from hearthnet.identity.keys import KeyPair

SEQUENCE, SET, INTEGER, BIT_STRING, OCTET_STRING, OID, UTF8_STRING, BOOLEAN = (
    0x30, 0x31, 0x02, 0x03, 0x04, 0x06, 0x0C, 0x01)
UTC_TIME, GENERALIZED_TIME = 0x17, 0x18
ED25519 = "1.3.101.112"
COMMON_NAME = "2.5.4.3"
SUBJECT_KEY_ID, KEY_USAGE, SUBJECT_ALT_NAME, BASIC_CONSTRAINTS, EXT_KEY_USAGE = (
    "2.5.29.14", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.37")
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
DNS_NAME, IP_ADDRESS = 0x82, 0x87  # GeneralName [2] IA5String, [7] OCTET STRING


# --------------------------------------------------------------------------- writing


def tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return tlv(OID, bytes(out))


def integer(value: int) -> bytes:
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))  # room for the sign bit


def seq(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def _time(when: datetime) -> bytes:
    # RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
    if when.year < 2050:
        return tlv(UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(GENERALIZED_TIME, when.strftime("%Y%m%d%H%M%SZ").encode())


def _name(cn: str) -> bytes:
    return seq(tlv(SET, seq(oid(COMMON_NAME), tlv(UTF8_STRING, cn.encode("utf-8")))))


def _extension(ext_oid: str, value: bytes, critical: bool = False) -> bytes:
    flag = tlv(BOOLEAN, b"\xff") if critical else b""
    return seq(oid(ext_oid), flag, tlv(OCTET_STRING, value))


def _general_name(name: str) -> bytes:
    try:
        return tlv(IP_ADDRESS, ipaddress.ip_address(name).packed)
    except ValueError:
        return tlv(DNS_NAME, name.encode("ascii") if name.isascii() else name.encode("idna"))  # A-labels


def self_signed_certificate(kp: KeyPair, cn: str, alt_names: list[str], not_before: datetime,
                            not_after: datetime) -> bytes:
    """DER of a self-signed end-entity certificate for the device key, with the
    extensions a TLS server certificate carries (SAN, basic constraints, key usage
    digitalSignature, extended key usage serverAuth, subject key id)."""
    algorithm = seq(oid(ED25519))  # RFC 8410: no parameters
    public = kp.public_bytes
    serial = int.from_bytes(os.urandom(20), "big") >> 1  # positive, < 2^159 (RFC 5280 §4.1.2.2)
    extensions = [
        _extension(SUBJECT_ALT_NAME, seq(*(_general_name(n) for n in alt_names))),
        _extension(BASIC_CONSTRAINTS, seq(), critical=True),  # cA FALSE is the default
        _extension(KEY_USAGE, tlv(BIT_STRING, b"\x07\x80"), critical=True),  # digitalSignature
        _extension(EXT_KEY_USAGE, seq(oid(SERVER_AUTH))),
        _extension(SUBJECT_KEY_ID, tlv(OCTET_STRING, hashlib.sha1(public).digest())),
    ]
    tbs = seq(
        tlv(0xA0, integer(2)),  # [0] version v3
        integer(serial),
        algorithm,
        _name(cn),
        seq(_time(not_before), _time(not_after)),
        _name(cn),
        seq(algorithm, tlv(BIT_STRING, b"\x00" + public)),
        tlv(0xA3, seq(*extensions)),  # [3] extensions
    )
    signature = kp.signing_key.sign(tbs).signature
    return seq(tbs, algorithm, tlv(BIT_STRING, b"\x00" + signature))


def pkcs8_private_key(kp: KeyPair) -> bytes:
    """DER of the device key as PKCS#8 (RFC 8410 §7): the 32-byte seed."""
    return seq(integer(0), seq(oid(ED25519)), tlv(OCTET_STRING, tlv(OCTET_STRING, bytes(kp.signing_key))))


def pem(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode("ascii")


# --------------------------------------------------------------------------- reading


def pem_body(data: bytes, label: str) -> bytes | None:
    """The DER inside the first `label` PEM block, or None."""
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    start = data.find(begin)
    stop = data.find(end, start + len(begin)) if start >= 0 else -1
    if stop < 0:
        return None
    try:
        return base64.b64decode(b"".join(data[start + len(begin):stop].split()), validate=True)
    except ValueError:
        return None


def _read(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the element at `at`."""
    if at + 2 > len(der):
        raise ValueError("truncated")
    tag, first = der[at], der[at + 1]
    at += 2
    if first & 0x80:
        size = first & 0x7F
        if size == 0 or size > 4 or at + size > len(der):
            raise ValueError("bad length")
        length = int.from_bytes(der[at:at + size], "big")
        at += size
    else:
        length = first
    if at + length > len(der):
        raise ValueError("truncated")
    return tag, at, at + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, start of the element, start of its value, end) of each element in a value."""
    out, at = [], start
    while at < end:
        tag, s, e = _read(der, at)
        out.append((tag, at, s, e))
        at = e
    return out


def ed25519_subject_key(cert_der: bytes) -> bytes | None:
    """The raw 32-byte subject key of a certificate whose key is Ed25519; None for any
    other certificate or anything that does not parse."""
    try:
        tag, s, e = _read(cert_der, 0)
        if tag != SEQUENCE or e != len(cert_der):
            return None
        tbs_tag, _, ts, te = _children(cert_der, s, e)[0]
        fields = _children(cert_der, ts, te)
        if tbs_tag != SEQUENCE or not fields:
            return None
        if fields[0][0] == 0xA0:
            fields = fields[1:]  # explicit version
        spki_tag, at, _, pe = fields[5]  # serial, signature, issuer, validity, subject, SPKI
        if spki_tag != SEQUENCE:
            return None
        spki = cert_der[at:pe]
    except (ValueError, IndexError):
        return None
    prefix = seq(seq(oid(ED25519)), tlv(BIT_STRING, b"\x00" + bytes(32)))[:-32]
    if len(spki) != len(prefix) + 32 or not spki.startswith(prefix):
        return None
    return spki[len(prefix):]


def ed25519_seed(key_der: bytes) -> bytes | None:
    """The 32-byte seed of a PKCS#8 Ed25519 key in the form written here; None else."""
    prefix = seq(integer(0), seq(oid(ED25519)), tlv(OCTET_STRING, tlv(OCTET_STRING, bytes(32))))[:-32]
    if len(key_der) != len(prefix) + 32 or not key_der.startswith(prefix):
        return None
    return key_der[len(prefix):]
