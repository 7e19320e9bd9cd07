"""A throw-away PKI for the https probe tests (the `cryptography` package, a runtime
dependency already): a test CA, server certificates it signs (valid, expired, for another
name), a self-signed one, and a small threaded HTTPS server whose certificate can be swapped
while it runs (what a captive portal taking over the path looks like to a node).
Nothing here touches the system trust store: tests hand `Pki.ca_file` to the probe."""
from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOCAL_NAMES = ("localhost", "127.0.0.1")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(out)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Pki:
    dir: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    def server(self, label: str, hosts: Sequence[str] = LOCAL_NAMES, *, expired: bool = False,
               self_signed: bool = False) -> tuple[Path, Path]:
        """(cert.pem, key.pem) for `hosts`, signed by the test CA unless self_signed."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else \
            (now - dt.timedelta(minutes=5), now + dt.timedelta(days=1))
        issuer, signer = (_name(hosts[0]), key) if self_signed else (self.ca_cert.subject, self.ca_key)
        cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(_san(hosts), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))
        cert_path, key_path = self.dir / f"{label}.pem", self.dir / f"{label}.key"
        _write_cert(cert, cert_path)
        _write_key(key, key_path)
        return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    """A fresh CA in `directory` (ca.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("HearthNet test CA")).issuer_name(_name("HearthNet test CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    pki = Pki(directory, key, cert)
    _write_cert(cert, pki.ca_file)
    return pki


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


class _Ok(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's naming
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class TlsServer(ThreadingHTTPServer):
    """HEAD -> 200 over TLS on host:0, served from a thread; `use()` swaps the certificate
    for the next connections. Close with `close()`."""

    daemon_threads = True

    def __init__(self, cert: Path, key: Path, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Ok)
        self.tls = server_context(cert, key)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def use(self, cert: Path, key: Path) -> None:
        self.tls = server_context(cert, key)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        sock.settimeout(5)  # a client that stalls the handshake cannot hold the accept loop
        try:
            return self.tls.wrap_socket(sock, server_side=True), addr
        except (OSError, ssl.SSLError):
            sock.close()
            raise  # handle_request drops this connection and goes on

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
