from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import stat
from datetime import datetime, timezone

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hearthnet.identity.keys import generate
from hearthnet.transport import tls


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def load_cert(identity) -> x509.Certificate:
    return x509.load_pem_x509_certificate(identity.cert_path.read_bytes())


def test_identity_files_modes_and_fields(tmp_path):
    kp = generate()
    ident = tls.ensure_tls_identity(kp, tmp_path / "tls", host="192.168.1.20")
    assert ident.cert_path == tmp_path / "tls" / "server.crt"
    assert mode(ident.key_path) == 0o600 and mode(tmp_path / "tls") == 0o700
    cert = load_cert(ident)
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == kp.node_id_short.removeprefix("ed25519:").lower() + ".hearthnet.local"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.168.1.20") in san.get_values_for_type(x509.IPAddress)
    assert 3650 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 3653
    assert cert.not_valid_before_utc < datetime.now(timezone.utc) < cert.not_valid_after_utc
    # The certificate key and the key file ARE the device key.
    raw = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == kp.public_bytes
    key = serialization.load_pem_private_key(ident.key_path.read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption()) == bytes(kp.signing_key)
    assert ident.fingerprint == tls.fingerprint(cert.public_bytes(serialization.Encoding.DER))
    assert tls.FINGERPRINT_RE.match(ident.fingerprint)


def test_all_interfaces_host_has_no_ip_san(tmp_path):
    cert = load_cert(tls.ensure_tls_identity(generate(), tmp_path / "tls"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == []
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_reused_not_rewritten(tmp_path):
    kp = generate()
    first = tls.ensure_tls_identity(kp, tmp_path / "tls")
    before = first.cert_path.stat().st_mtime_ns, first.cert_path.read_bytes()
    again = tls.ensure_tls_identity(kp, tmp_path / "tls", host="10.0.0.9")  # host change: keep the pin
    assert again == first
    assert (first.cert_path.stat().st_mtime_ns, first.cert_path.read_bytes()) == before


def test_regenerated_when_missing_corrupt_or_for_another_key(tmp_path):
    kp = generate()
    first = tls.ensure_tls_identity(kp, tmp_path / "tls")
    first.cert_path.unlink()
    second = tls.ensure_tls_identity(kp, tmp_path / "tls")
    assert second.fingerprint != first.fingerprint and second.cert_path.exists()
    second.key_path.write_bytes(b"garbage")
    third = tls.ensure_tls_identity(kp, tmp_path / "tls")
    assert third.fingerprint != second.fingerprint and mode(third.key_path) == 0o600
    other = generate()
    fourth = tls.ensure_tls_identity(other, tmp_path / "tls")
    raw = load_cert(fourth).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == other.public_bytes


def test_loose_key_mode_is_tightened_on_reuse(tmp_path):
    kp = generate()
    ident = tls.ensure_tls_identity(kp, tmp_path / "tls")
    os.chmod(ident.key_path, 0o644)
    assert tls.ensure_tls_identity(kp, tmp_path / "tls") == ident
    assert mode(ident.key_path) == 0o600


def test_add_tls_fields_resigns_manifest(tmp_path):
    from hearthnet.identity.manifest import build_node_manifest, verify_node_manifest
    from tests.unit.transport.peer_server import HARDWARE, LOAD

    kp = generate()
    ident = tls.ensure_tls_identity(kp, tmp_path / "tls")
    m = build_node_manifest(kp, display_name="n", community_id=kp.node_id_full, profile="hearth",
                            endpoints=[], hardware=HARDWARE, capabilities=[], uptime_seconds=0, load=LOAD)
    signed = tls.add_tls_fields(m, ident, kp)
    assert signed["tls_fingerprint"] == ident.fingerprint == tls.manifest_tls_fields(ident)["tls_fingerprint"]
    verify_node_manifest(signed)


def test_tls13_with_ed25519_certificate_between_aiohttp_server_and_client(tmp_path):
    """The evidence for the TLS key decision: this stack negotiates TLS 1.3 with the
    device's Ed25519 key as the certificate key; a TLS 1.2-only client is refused."""
    ident = tls.ensure_tls_identity(generate(), tmp_path / "tls", host="127.0.0.1")
    seen: list[tuple[str, str]] = []

    async def hello(request: web.Request) -> web.Response:
        sslobj = request.transport.get_extra_info("ssl_object")
        seen.append((sslobj.version(), sslobj.cipher()[0]))
        return web.json_response({"ok": True})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_ssl_context(ident)).start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client_ssl_context())) as s:
                async with s.get(url) as resp:
                    assert resp.status == 200 and await resp.json() == {"ok": True}
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
            old.maximum_version = ssl.TLSVersion.TLSv1_2
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=old)) as s:
                try:
                    async with s.get(url):
                        raise AssertionError("TLS 1.2 must be refused")
                except aiohttp.ClientConnectorError:
                    pass  # expected: the server only speaks TLS 1.3
        finally:
            await runner.cleanup()

    asyncio.run(main())
    assert seen == [("TLSv1.3", seen[0][1])] and seen[0][1].startswith("TLS_")


# ---- the certificate is written and read without cryptography (x509der) -----------------


def test_written_certificate_is_a_valid_self_signed_server_certificate(tmp_path):
    kp = generate()
    cert = load_cert(tls.ensure_tls_identity(kp, tmp_path / "tls", host="fe80::1"))
    cert.verify_directly_issued_by(cert)  # the Ed25519 signature over the TBS checks out
    assert cert.issuer == cert.subject and cert.version == x509.Version.v3
    assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ED25519
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("fe80::1")]
    assert 0 < cert.serial_number < 2 ** 159
    assert cert.not_valid_before_utc.year < 2050 < (cert.not_valid_before_utc + tls.VALIDITY * 3).year


def test_der_writer_handles_long_lengths_and_generalized_time(tmp_path):
    from hearthnet.transport import x509der

    kp = generate()
    names = [f"host-{i}.example" for i in range(40)]  # SAN over 255 bytes: multi-byte lengths
    later = datetime(2051, 1, 2, 3, 4, 5, tzinfo=timezone.utc)  # GeneralizedTime from 2050
    der = x509der.self_signed_certificate(kp, "n.hearthnet.local", names, later, later + tls.VALIDITY)
    cert = x509.load_der_x509_certificate(der)
    cert.verify_directly_issued_by(cert)
    assert cert.not_valid_before_utc == later
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == names
    assert x509der.ed25519_subject_key(der) == kp.public_bytes
    assert x509der.ed25519_subject_key(der[:-1]) is None and x509der.ed25519_subject_key(b"\x30") is None


def test_reader_recognises_only_ed25519_certificates_and_our_key_form(tmp_path):
    from hearthnet.transport import x509der

    from hearthnet.testing.tlscerts import make_pki

    cert_pem, key_pem = make_pki(tmp_path / "pki").server("other", self_signed=True)
    assert x509der.ed25519_subject_key(x509der.pem_body(cert_pem.read_bytes(), "CERTIFICATE")) is None
    key_text = key_pem.read_bytes()
    key_der = x509der.pem_body(key_text, "PRIVATE KEY") or x509der.pem_body(key_text, "EC PRIVATE KEY")
    assert key_der is not None and x509der.ed25519_seed(key_der) is None
    assert x509der.pem_body(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n", "CERTIFICATE") is None


def test_files_written_by_cryptography_are_still_taken_as_ours(tmp_path):
    """A node whose tls dir predates x509der (certificate written by cryptography, key in
    OpenSSL's PKCS#8 form) keeps its certificate, and so its pin."""
    kp = generate()
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(kp.signing_key))
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, tls.common_name(kp))])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + tls.VALIDITY).sign(key, None))
    d = tmp_path / "tls"
    d.mkdir(mode=0o700)
    (d / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    os.chmod(d / "server.key", 0o600)
    ident = tls.ensure_tls_identity(kp, d)
    assert ident.fingerprint == tls.fingerprint(cert.public_bytes(serialization.Encoding.DER))
    assert (d / "server.crt").read_bytes() == cert.public_bytes(serialization.Encoding.PEM)  # not rewritten
